"""Times as operators type them: ISO 8601 (``2024-08-08T23:55:00Z``; no zone means UTC) or epoch ms."""

from __future__ import annotations

from datetime import datetime, timezone

from streamapp.errors import StreamappError


def parse_time_ms(text: str, option: str = "time") -> int:
    """Milliseconds since the epoch (UTC) for ``text``.

    >>> parse_time_ms("2024-08-08T23:55:00Z"), parse_time_ms("1723161300000")
    (1723161300000, 1723161300000)
    """
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise StreamappError(
            f"{option} {text!r} is not a time: use ISO 8601 (2024-08-08T23:55:00Z, no zone means UTC) "
            "or epoch milliseconds (1723161300000)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return round(parsed.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """``1723161300000`` -> ``2024-08-08T23:55:00.000Z`` (for messages)."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
