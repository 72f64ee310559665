"""Arrow data into an Iceberg table's exact Arrow schema (pure, no I/O).

ClickHouse answers with its own Arrow types (``Nullable`` columns as nullable fields,
``Decimal(76, 36)`` as ``decimal256``, ``UInt64`` offsets); pyiceberg refuses a nullable column
for a required field ("Mismatch in fields"). :func:`conform` casts column by column, safely: a
value that would change (a decimal losing digits, an out-of-range integer) or a null in a
required field is an error naming the column, never a silent rounding.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from streamapp.errors import StreamappError


def conform(data: pa.Table, target: pa.Schema, *, what: str = "rows") -> pa.Table:
    """``data`` with exactly ``target``'s columns, in its order, cast to its types."""
    missing = [f.name for f in target if f.name not in data.column_names]
    if missing:
        raise StreamappError(f"{what}: columns {', '.join(missing)} are missing (have {', '.join(data.column_names)})")
    columns = []
    for field in target:
        column = data.column(field.name)
        if not field.nullable and column.null_count:
            raise StreamappError(f"{what}: column {field.name} has {column.null_count} null(s) but is required")
        if column.type != field.type:
            try:
                column = pc.cast(column, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise StreamappError(f"{what}: column {field.name} ({column.type}) does not fit {field.type} "
                                     f"exactly: {exc}") from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)
