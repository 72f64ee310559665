"""Rows as an operator reads them: a rich table, JSON, or CSV (``--format table|json|csv``).

Values are made readable without losing precision: ``Decimal('61701.300000000000000000')``
prints as ``61701.3`` (a string in JSON, never a float), datetimes as ISO 8601 UTC.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")


def cell(value: Any) -> Any:
    """One value for output: Decimal -> plain string without trailing zeros, datetime -> ISO 8601 UTC.

    >>> cell(Decimal("61701.300000000000000000")), cell(Decimal("100.000")), cell(None)
    ('61701.3', '100', None)
    """
    if isinstance(value, Decimal):
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text or "0"
    if isinstance(value, datetime):
        # naive means UTC (clickhouse-connect's default); an aware time in another zone is converted
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): cell(v) for k, v in value.items()}
    return value


def human_bytes(n: int | None) -> str:
    """``1007484`` -> ``983.9 KiB``; None -> ``-``."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


def to_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array of objects, one per row, keyed by column name."""
    return json.dumps([{c: cell(v) for c, v in zip(columns, row)} for row in rows], indent=2)


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV with a header line; None is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _text(cell(v)) for v in row])
    return out.getvalue()


def to_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
             right: Sequence[str] = ()) -> Table:
    """A rich table; ``right`` names the columns to right-align (numbers)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        table.add_column(c, justify="right" if c in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*["-" if v is None else _text(cell(v)) for v in row])
    return table


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, *, title: str | None = None,
           right: Sequence[str] = (), console: Console | None = None) -> str | None:
    """JSON and CSV are returned as text; a table is printed to ``console`` (stdout) and None returned."""
    if fmt == "json":
        return to_json(columns, rows)
    if fmt == "csv":
        return to_csv(columns, rows)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}")
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: as wide as the rows need, never folded
            console = Console(width=100_000)
    if title:  # above the table, not inside it: a table title wraps at the table's width
        console.print(title, style="bold", soft_wrap=True, highlight=False)
    console.print(to_table(columns, rows, None, right))
    if not rows:
        console.print("(no rows)", style="dim")
    return None


def _text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
