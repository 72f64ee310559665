"""Avro schemas for the local schema registry: parse, identify, and check compatibility. No I/O.

Compatibility follows the Avro schema-resolution rules, as Confluent's registry
applies them (``BACKWARD``: the new schema reads data written with the old one)::

    old = parse('{"type":"record","name":"T","fields":[{"name":"a","type":"int"}]}')
    new = parse('{"type":"record","name":"T","fields":[{"name":"a","type":"long"},'
                '{"name":"b","type":"string"}]}')
    check_compatibility(new, [old], "BACKWARD")
    # -> [Violation(... READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1: field 'b' ...)]

The reader/writer rules are Apache Avro's own checker (``avro.compatibility``,
the port of Java Avro's ``SchemaCompatibility``); this module adds the levels
(transitive, forward, full), one message per incompatibility, and what the
checker ignores: a ``decimal`` must keep its precision and scale, two different
logical types on the same field are incompatible (the bytes would be read with
another meaning), and a reader's alias may be relative to its namespace.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

import avro.errors
import avro.schema
import fastavro
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    lookup_writer_field,
)
from fastavro.schema import SchemaParseException, UnknownType

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})

NONE = "NONE"
BACKWARD = "BACKWARD"
BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
FORWARD = "FORWARD"
FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
FULL = "FULL"
FULL_TRANSITIVE = "FULL_TRANSITIVE"
LEVELS = (NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class InvalidSchemaError(ValueError):
    """The text is not a valid Avro schema; the message says where and why."""


@dataclass(frozen=True)
class AvroSchema:
    """A parsed Avro schema: ``text`` as served, ``canonical`` for identity comparison."""

    text: str
    canonical: str
    parsed: Any
    names: dict[str, dict]
    avro: avro.schema.Schema  # Apache Avro's parse, for its compatibility checker


@dataclass(frozen=True)
class Incompatibility:
    """One reason a reader schema cannot read a writer's data (kinds as in Java Avro)."""

    kind: str  # NAME_MISMATCH, TYPE_MISMATCH, READER_FIELD_MISSING_DEFAULT_VALUE, ...
    path: str  # where, in the reader schema, e.g. /fields/1/type
    message: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.path or '/'}: {self.message}"


@dataclass(frozen=True)
class Violation:
    """An incompatibility of the new schema with ``previous[previous_index]``."""

    previous_index: int
    direction: str  # "backward": new reads old data; "forward": old reads new data
    incompatibility: Incompatibility

    def __str__(self) -> str:
        if self.direction == "backward":
            who = "the new schema cannot read data written with the old schema"
        else:
            who = "the old schema cannot read data written with the new schema"
        return f"{self.incompatibility} ({who})"


# --- parsing ---------------------------------------------------------------------------


def parse(text: str) -> AvroSchema:
    """Parse and validate schema text (JSON); raise :class:`InvalidSchemaError` with the reason."""
    try:
        raw = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"Invalid schema: not JSON ({exc})") from exc
    _check_records_have_fields(raw)
    names: dict[str, dict] = {}
    try:
        parsed = fastavro.parse_schema(raw, named_schemas=names, _write_hint=False)
    except (SchemaParseException, UnknownType) as exc:
        raise InvalidSchemaError(f"Invalid schema: {exc}") from exc
    except KeyError as exc:
        raise InvalidSchemaError(f"Invalid schema: missing attribute {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidSchemaError(f"Invalid schema: {exc}") from exc
    parsed = _strip_private(parsed)
    names = {name: _strip_private(node) for name, node in names.items()}
    _validate(parsed, names, "")
    try:
        checked = avro.schema.parse(text)
    except (avro.errors.AvroException, TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"Invalid schema: {exc}") from exc
    return AvroSchema(
        text=json.dumps(raw, separators=(",", ":")),
        canonical=json.dumps(_canonical(parsed), sort_keys=True, separators=(",", ":")),
        parsed=parsed,
        names=names,
        avro=checked,
    )


def _check_records_have_fields(node: Any) -> None:
    """fastavro reads a record without "fields" as an empty record; Avro rejects it."""
    if isinstance(node, list):
        for item in node:
            _check_records_have_fields(item)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "error") and not isinstance(node.get("fields"), list):
            raise InvalidSchemaError(f"Invalid schema: record {node.get('name')!r} needs a list of fields")
        for key in ("type", "items", "values"):
            _check_records_have_fields(node.get(key))
        for f in node.get("fields") or []:
            if isinstance(f, dict):
                _check_records_have_fields(f.get("type"))


def _strip_private(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_private(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_strip_private(v) for v in node]
    return node


def _canonical(node: Any) -> Any:
    """Full names, ``{"type": "int"}`` as ``"int"``; keys get sorted when dumped."""
    if isinstance(node, list):
        return [_canonical(n) for n in node]
    if isinstance(node, dict):
        if set(node) == {"type"}:
            return _canonical(node["type"])
        out = {}
        for key, value in node.items():
            if key == "fields":
                out[key] = [
                    {k: (_canonical(v) if k == "type" else v) for k, v in f.items()} for f in value
                ]
            elif key in ("type", "items", "values"):
                out[key] = _canonical(value)
            else:
                out[key] = value
        return out
    return node


def _validate(node: Any, names: dict[str, dict], path: str, seen: set[str] | None = None) -> None:
    """What fastavro lets through but Avro (and the real registry) rejects."""
    seen = set() if seen is None else seen
    if isinstance(node, str):
        return
    if isinstance(node, list):
        keys = set()
        for i, branch in enumerate(node):
            resolved = _resolve(branch, names)
            if isinstance(resolved, list):
                raise InvalidSchemaError(f"Invalid schema: union at {path or '/'} contains a union")
            key = _branch_key(resolved)
            if key in keys:
                raise InvalidSchemaError(f"Invalid schema: union at {path or '/'} has {key} twice")
            keys.add(key)
            _validate(branch, names, f"{path}/{i}", seen)
        return
    kind = node.get("type")
    if not isinstance(kind, str):
        _validate(kind, names, path, seen)
        return
    if kind in NAMED:
        name = node["name"]
        if name in seen:
            return
        seen.add(name)
        for part in name.split("."):
            if not _NAME.match(part):
                raise InvalidSchemaError(f"Invalid schema: illegal name {name!r} at {path or '/'}")
    if kind in ("record", "error"):
        if not isinstance(node.get("fields"), list):
            raise InvalidSchemaError(f"Invalid schema: record {node['name']!r} needs a list of fields")
        field_names = set()
        for i, field in enumerate(node["fields"]):
            fname = field.get("name")
            if not isinstance(fname, str) or not _NAME.match(fname):
                raise InvalidSchemaError(f"Invalid schema: illegal field name {fname!r} at {path}/fields/{i}")
            if fname in field_names:
                raise InvalidSchemaError(f"Invalid schema: record {node['name']!r} has field {fname!r} twice")
            field_names.add(fname)
            _validate(field["type"], names, f"{path}/fields/{i}/type", seen)
            if "default" in field and not _default_ok(field["default"], field["type"], names):
                raise InvalidSchemaError(
                    f"Invalid schema: default {field['default']!r} of field {fname!r} in record"
                    f" {node['name']!r} does not match its type"
                    " (for a union, the default must match the union's first type)"
                )
    elif kind == "enum":
        if "default" in node and node["default"] not in node["symbols"]:
            raise InvalidSchemaError(
                f"Invalid schema: enum {node['name']!r} default {node['default']!r} is not one of its symbols"
            )
        for symbol in node["symbols"]:
            if not isinstance(symbol, str) or not _NAME.match(symbol):
                raise InvalidSchemaError(f"Invalid schema: illegal enum symbol {symbol!r} in {node['name']!r}")
    elif kind == "array":
        _validate(node["items"], names, f"{path}/items", seen)
    elif kind == "map":
        _validate(node["values"], names, f"{path}/values", seen)


def _branch_key(node: Any) -> str:
    kind = node["type"]
    return node["name"] if kind in NAMED else kind


def _default_ok(value: Any, schema: Any, names: dict[str, dict], depth: int = 0) -> bool:
    if depth > 50:
        return True
    node = _resolve(schema, names)
    if isinstance(node, list):
        return _default_ok(value, node[0], names, depth + 1)
    kind = node["type"]
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("NaN", "Infinity", "-Infinity")
    if kind in ("bytes", "string"):
        return isinstance(value, str)
    if kind == "fixed":
        return isinstance(value, str) and len(value) == node["size"]
    if kind == "enum":
        return value in node["symbols"]
    if kind == "array":
        return isinstance(value, list) and all(_default_ok(v, node["items"], names, depth + 1) for v in value)
    if kind == "map":
        return isinstance(value, dict) and all(
            _default_ok(v, node["values"], names, depth + 1) for v in value.values()
        )
    if kind in ("record", "error"):
        return isinstance(value, dict) and all(
            (f["name"] in value and _default_ok(value[f["name"]], f["type"], names, depth + 1)) or "default" in f
            for f in node["fields"]
        )
    return True


def _resolve(node: Any, names: dict[str, dict]) -> Any:
    """A schema node as a dict (or a list for a union), named references looked up."""
    while True:
        if isinstance(node, list):
            return node
        if isinstance(node, str):
            if node in PRIMITIVES:
                return {"type": node}
            node = names[node]
            continue
        kind = node["type"]
        if isinstance(kind, (dict, list)):
            node = kind
            continue
        if kind in PRIMITIVES or kind in NAMED or kind in ("array", "map"):
            return node
        node = names[kind]


# --- compatibility ---------------------------------------------------------------------


def reader_incompatibilities(reader: AvroSchema, writer: AvroSchema) -> list[Incompatibility]:
    """Why ``reader`` cannot read data written with ``writer``; empty when it can."""
    return _Checker().get_compatibility(reader.avro, writer.avro).incompatibilities


def check_compatibility(new: AvroSchema, previous: Sequence[AvroSchema], level: str) -> list[Violation]:
    """Violations of ``level`` by ``new`` against ``previous`` (oldest first); empty when compatible.

    Non-transitive levels look at the latest previous schema only.
    """
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"unknown compatibility level {level!r}; expected one of {', '.join(LEVELS)}")
    if level == NONE or not previous:
        return []
    indexes = range(len(previous)) if level.endswith("_TRANSITIVE") else [len(previous) - 1]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    violations = []
    for i in reversed(indexes):
        old = previous[i]
        if backward:
            violations += [Violation(i, "backward", inc) for inc in reader_incompatibilities(new, old)]
        if forward:
            violations += [Violation(i, "forward", inc) for inc in reader_incompatibilities(old, new)]
    return violations


def _describe(schema: avro.schema.Schema) -> str:
    if isinstance(schema, avro.schema.NamedSchema):
        return f"{schema.type} {schema.fullname}"
    logical = schema.props.get("logicalType")
    return f"{schema.type} ({logical})" if logical else str(schema.type)


def _names_match(r: avro.schema.NamedSchema, w: avro.schema.NamedSchema) -> bool:
    """Avro spec: a reader's alias may be relative to its namespace (the library compares it as written)."""
    if r.name == w.name:
        return True
    space = f"{r.namespace}." if r.namespace else ""
    aliases = {a if "." in a else space + a for a in r.props.get("aliases") or []}
    return w.fullname in aliases


class _Checker(ReaderWriterCompatibilityChecker):
    """Apache Avro's checker, plus what it lacks: logical types, namespace-relative aliases,
    a path through unions, and one message per incompatibility (the library keeps only sets)."""

    def __init__(self) -> None:
        super().__init__()
        self.locations: list[list[str]] = []

    def calculate_compatibility(self, reader: Any, writer: Any, location: list[str]) -> SchemaCompatibilityResult:
        if location == [self.ROOT_REFERENCE_TOKEN] and self.locations:
            location = self.locations[-1]  # the library drops the location when it descends into a union
        self.locations.append(location)
        try:
            result = super().calculate_compatibility(reader, writer, location)
        finally:
            self.locations.pop()
        path = "/".join(location)[1:]
        missing = iter(_missing_fields(reader, writer, path))
        failed_branches = iter(self._failed_branches(reader, writer))
        found: list[Incompatibility] = []
        for inc in result.incompatibilities:
            if isinstance(inc, Incompatibility):  # already explained one level down
                found.append(inc)
            elif inc is SchemaIncompatibilityType.reader_field_missing_default_value:
                found.append(next(missing))
            elif inc is SchemaIncompatibilityType.missing_union_branch:
                branch = next(failed_branches, writer)
                found.append(
                    Incompatibility(
                        "MISSING_UNION_BRANCH", path, f"the reader's union has no branch for the writer's {_describe(branch)}"
                    )
                )
            elif inc is SchemaIncompatibilityType.name_mismatch:
                if not _names_match(reader, writer):
                    found.append(
                        Incompatibility(
                            "NAME_MISMATCH",
                            f"{path}/name",
                            f"the reader's {reader.type} is named {reader.fullname!r}, the writer's {writer.fullname!r}",
                        )
                    )
            elif inc is SchemaIncompatibilityType.fixed_size_mismatch:
                found.append(
                    Incompatibility(
                        "FIXED_SIZE_MISMATCH",
                        f"{path}/size",
                        f"the reader's fixed {reader.fullname!r} has size {reader.size}, the writer's {writer.size}",
                    )
                )
            elif inc is SchemaIncompatibilityType.missing_enum_symbols:
                lacking = [s for s in writer.symbols if s not in reader.symbols]
                found.append(
                    Incompatibility(
                        "MISSING_ENUM_SYMBOLS",
                        f"{path}/symbols",
                        f"the reader's enum {reader.fullname!r} lacks the writer's symbols {lacking}"
                        " and has no default symbol",
                    )
                )
            else:  # type_mismatch
                found.append(
                    Incompatibility(
                        "TYPE_MISMATCH", path, f"the reader's type {_describe(reader)} cannot read the writer's {_describe(writer)}"
                    )
                )
        if not found:
            found = _logical(reader, writer, path)
        if not found:
            return SchemaCompatibilityResult(SchemaCompatibilityType.compatible)
        return SchemaCompatibilityResult(SchemaCompatibilityType.incompatible, incompatibilities=found)

    def _failed_branches(self, reader: Any, writer: Any) -> list[Any]:
        if reader.type != "union" or writer.type != "union":
            return []
        return [
            branch
            for branch in writer.schemas
            if self.get_compatibility(reader, branch).compatibility is SchemaCompatibilityType.incompatible
        ]


def _missing_fields(reader: Any, writer: Any, path: str) -> list[Incompatibility]:
    if reader.type not in ("record", "error") or reader.type != writer.type:
        return []
    return [
        Incompatibility(
            "READER_FIELD_MISSING_DEFAULT_VALUE",
            f"{path}/fields/{i}",
            f"field {field.name!r} of the reader's record {reader.fullname!r} has no default value"
            " and is missing in the writer's",
        )
        for i, field in enumerate(reader.fields)
        if lookup_writer_field(writer, field) is None and not field.has_default and not _enum_with_default(field.type)
    ]


def _enum_with_default(schema: Any) -> bool:
    """A missing field of such a type is checked as its enum against the writer's record (the library
    does as Java Avro's SchemaCompatibility), not reported as a missing default."""
    return schema.type == "enum" and bool(schema.props.get("default"))


def _logical(r: Any, w: Any, path: str) -> list[Incompatibility]:
    """A decimal keeps its precision and scale; two logical types never read each other's bytes."""
    if r.type in ("union", "record", "error", "enum", "array", "map") or w.type == "union":
        return []
    rl, wl = r.props.get("logicalType"), w.props.get("logicalType")
    if rl == wl == "decimal":
        rps = (r.props.get("precision"), r.props.get("scale", 0))
        wps = (w.props.get("precision"), w.props.get("scale", 0))
        if rps != wps:
            return [
                Incompatibility(
                    "DECIMAL_MISMATCH",
                    path,
                    f"the reader's decimal(precision={rps[0]}, scale={rps[1]}) differs from the writer's"
                    f" decimal(precision={wps[0]}, scale={wps[1]}); the values would change",
                )
            ]
        return []
    if rl != wl and ("decimal" in (rl, wl) or (rl is not None and wl is not None)):
        return [
            Incompatibility(
                "LOGICAL_TYPE_MISMATCH",
                path,
                f"the reader's logical type {rl or 'none'} differs from the writer's {wl or 'none'}",
            )
        ]
    return []
