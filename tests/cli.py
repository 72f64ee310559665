"""Running the ``streamapp`` CLI in tests, the way a user's shell would."""

from __future__ import annotations

from click.testing import CliRunner, Result

from streamapp.cli import cli
from streamapp.settings import get_settings


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """``streamapp <args>`` with extra environment variables.

    Settings are read once per process (``get_settings`` caches them), so the cache is
    cleared before and after: the command sees ``env``, and later tests do not.
    """
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, list(args), env=env)
    finally:
        get_settings.cache_clear()
