"""The project's own error type: what went wrong, the value, and what to do next."""


class StreamappError(Exception):
    """An error an operator can act on. The CLI prints its message as one line and exits 1."""
