"""ClickHouse over HTTP (a server, or the local stack's embedded warehouse): one client factory."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from streamapp.errors import StreamappError
from streamapp.settings import Settings


def connect(settings: Settings, **kwargs) -> Client:
    """A clickhouse-connect client for ``settings.clickhouse_url``; a clear error if unreachable.

    Without a session (clickhouse-connect makes one per client by default): streamapp keeps no
    state between requests, and a session would make concurrent use of one client fail with
    "session is locked" (373), on a server as on the local stack's warehouse.
    """
    kwargs.setdefault("autogenerate_session_id", False)
    try:
        return clickhouse_connect.get_client(dsn=settings.clickhouse_url, **kwargs)
    except ClickHouseError as exc:
        host, port = settings.clickhouse_host_port
        raise StreamappError(
            f"cannot reach ClickHouse at {host}:{port} ({root_cause(exc)}); is it running "
            "(`streamapp stack status`), or is STREAMAPP_CLICKHOUSE_URL wrong?"
        ) from exc


def root_cause(exc: BaseException) -> str:
    """The innermost cause, in one line: "[Errno 111] Connection refused" rather than three wrappers."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = f"[Errno {exc.errno}] {exc.strerror}"
    first = text.splitlines()[0] if text else ""
    return first or type(exc).__name__
