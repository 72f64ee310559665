"""Avro compatibility rules of the local schema registry: (old, new, level) -> compatible or why not."""

from __future__ import annotations

import json

import pytest

from streamapp.stack.avro_compat import (
    LEVELS,
    InvalidSchemaError,
    check_compatibility,
    parse,
    reader_incompatibilities,
)


def record(*fields: dict, name: str = "Trade", namespace: str | None = "market") -> str:
    schema: dict = {"type": "record", "name": name, "fields": list(fields)}
    if namespace:
        schema["namespace"] = namespace
    return json.dumps(schema)


def field(name: str, type_, **extra) -> dict:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra) -> dict:
    return {"type": "enum", "name": "Side", "symbols": list(symbols), **extra}


def decimal(precision: int, scale: int, base: str = "bytes") -> dict:
    return {"type": base, "logicalType": "decimal", "precision": precision, "scale": scale}


def fixed(size: int, name: str = "Hash", **extra) -> dict:
    return {"type": "fixed", "name": name, "size": size, **extra}


A_INT = record(field("a", "int"))
A_LONG = record(field("a", "long"))

# (old, new, level, expected incompatibility kinds, in order; [] = compatible)
CASES = [
    # records: added and removed fields
    pytest.param(A_INT, record(field("a", "int"), field("b", "string", default="")), "BACKWARD", [], id="add-field-with-default-backward"),
    pytest.param(A_INT, record(field("a", "int"), field("b", "string")), "BACKWARD", ["READER_FIELD_MISSING_DEFAULT_VALUE"], id="add-field-without-default-backward"),
    pytest.param(A_INT, record(field("a", "int"), field("b", "string")), "FORWARD", [], id="add-field-without-default-forward"),
    pytest.param(record(field("a", "int"), field("b", "string")), A_INT, "BACKWARD", [], id="remove-field-backward"),
    pytest.param(record(field("a", "int"), field("b", "string")), A_INT, "FORWARD", ["READER_FIELD_MISSING_DEFAULT_VALUE"], id="remove-field-without-default-forward"),
    pytest.param(record(field("a", "int"), field("b", "string", default="x")), A_INT, "FULL", [], id="remove-field-with-default-full"),
    pytest.param(A_INT, record(field("a", "int"), field("b", "string")), "FULL", ["READER_FIELD_MISSING_DEFAULT_VALUE"], id="add-field-without-default-full"),
    pytest.param(A_INT, record(field("a", "int"), field("b", ["null", "string"], default=None)), "FULL", [], id="add-optional-field-full"),
    pytest.param(A_INT, record(field("renamed", "int", aliases=["a"])), "BACKWARD", [], id="field-renamed-with-alias"),
    pytest.param(A_INT, record(field("renamed", "int")), "BACKWARD", ["READER_FIELD_MISSING_DEFAULT_VALUE"], id="field-renamed-without-alias"),
    pytest.param(A_INT, record(field("a", "int"), name="Other"), "BACKWARD", ["NAME_MISMATCH"], id="record-renamed"),
    pytest.param(A_INT, json.dumps({**json.loads(record(field("a", "int"), name="Other")), "aliases": ["Trade"]}), "BACKWARD", [], id="record-renamed-with-alias"),
    pytest.param(A_INT, record(field("a", "int"), namespace="elsewhere"), "FULL", [], id="namespace-change-only"),
    # primitives and promotions (writer -> reader)
    pytest.param(A_INT, A_LONG, "BACKWARD", [], id="int-to-long-backward"),
    pytest.param(A_INT, A_LONG, "FORWARD", ["TYPE_MISMATCH"], id="int-to-long-forward"),
    pytest.param(A_INT, A_LONG, "FULL", ["TYPE_MISMATCH"], id="int-to-long-full"),
    pytest.param(A_INT, record(field("a", "float")), "BACKWARD", [], id="int-to-float"),
    pytest.param(A_INT, record(field("a", "double")), "BACKWARD", [], id="int-to-double"),
    pytest.param(A_LONG, record(field("a", "float")), "BACKWARD", [], id="long-to-float"),
    pytest.param(A_LONG, record(field("a", "double")), "BACKWARD", [], id="long-to-double"),
    pytest.param(record(field("a", "float")), record(field("a", "double")), "BACKWARD", [], id="float-to-double"),
    pytest.param(record(field("a", "double")), record(field("a", "float")), "BACKWARD", ["TYPE_MISMATCH"], id="double-to-float"),
    pytest.param(A_LONG, A_INT, "BACKWARD", ["TYPE_MISMATCH"], id="long-to-int"),
    pytest.param(record(field("a", "string")), record(field("a", "bytes")), "FULL", [], id="string-bytes-full"),
    pytest.param(A_INT, record(field("a", "string")), "BACKWARD", ["TYPE_MISMATCH"], id="int-to-string"),
    pytest.param(record(field("a", "boolean")), record(field("a", "int")), "BACKWARD", ["TYPE_MISMATCH"], id="boolean-to-int"),
    # unions
    pytest.param(A_INT, record(field("a", ["null", "int"])), "BACKWARD", [], id="type-to-union-backward"),
    pytest.param(A_INT, record(field("a", ["null", "int"])), "FORWARD", ["TYPE_MISMATCH"], id="type-to-union-forward"),
    pytest.param(A_INT, record(field("a", ["null", "long"])), "BACKWARD", [], id="type-to-union-with-promotion"),
    pytest.param(A_INT, record(field("a", ["null", "string"])), "BACKWARD", ["MISSING_UNION_BRANCH"], id="type-to-union-without-it"),
    pytest.param(record(field("a", ["null", "int"])), record(field("a", ["null", "int", "string"])), "BACKWARD", [], id="union-branch-added-backward"),
    pytest.param(record(field("a", ["null", "int"])), record(field("a", ["null", "int", "string"])), "FORWARD", ["MISSING_UNION_BRANCH"], id="union-branch-added-forward"),
    pytest.param(record(field("a", ["null", "int", "string"])), record(field("a", ["null", "int"])), "BACKWARD", ["MISSING_UNION_BRANCH"], id="union-branch-removed-backward"),
    pytest.param(record(field("a", ["null", "int"])), A_INT, "BACKWARD", ["TYPE_MISMATCH"], id="union-to-type-backward"),
    pytest.param(record(field("a", ["null", "int"])), record(field("a", ["int", "null"], default=1)), "FULL", [], id="union-reordered"),
    # enums
    pytest.param(record(field("s", enum("BUY", "SELL"))), record(field("s", enum("BUY", "SELL", "UNKNOWN"))), "BACKWARD", [], id="enum-symbol-added-backward"),
    pytest.param(record(field("s", enum("BUY", "SELL"))), record(field("s", enum("BUY", "SELL", "UNKNOWN"))), "FORWARD", ["MISSING_ENUM_SYMBOLS"], id="enum-symbol-added-forward"),
    pytest.param(record(field("s", enum("BUY", "SELL", "UNKNOWN"))), record(field("s", enum("BUY", "SELL"))), "BACKWARD", ["MISSING_ENUM_SYMBOLS"], id="enum-symbol-removed-backward"),
    pytest.param(record(field("s", enum("BUY", "SELL", "UNKNOWN"))), record(field("s", enum("BUY", "SELL", default="BUY"))), "BACKWARD", [], id="enum-symbol-removed-reader-default"),
    pytest.param(record(field("s", enum("BUY", "SELL", default="BUY"))), record(field("s", enum("BUY", "SELL", "X", default="BUY"))), "FULL", [], id="enum-with-defaults-full"),
    pytest.param(record(field("s", enum("BUY", "SELL"))), record(field("s", {**enum("BUY", "SELL"), "name": "Direction"})), "BACKWARD", ["NAME_MISMATCH"], id="enum-renamed"),
    pytest.param(record(field("s", enum("BUY", "SELL"))), record(field("s", "string")), "BACKWARD", ["TYPE_MISMATCH"], id="enum-to-string"),
    # arrays and maps
    pytest.param(record(field("a", {"type": "array", "items": "int"})), record(field("a", {"type": "array", "items": "long"})), "BACKWARD", [], id="array-items-promoted"),
    pytest.param(record(field("a", {"type": "array", "items": "int"})), record(field("a", {"type": "array", "items": "long"})), "FORWARD", ["TYPE_MISMATCH"], id="array-items-promoted-forward"),
    pytest.param(record(field("a", {"type": "array", "items": "int"})), record(field("a", {"type": "map", "values": "int"})), "BACKWARD", ["TYPE_MISMATCH"], id="array-to-map"),
    pytest.param(record(field("m", {"type": "map", "values": "string"})), record(field("m", {"type": "map", "values": "bytes"})), "FULL", [], id="map-values-string-bytes"),
    pytest.param(record(field("m", {"type": "map", "values": "long"})), record(field("m", {"type": "map", "values": "int"})), "BACKWARD", ["TYPE_MISMATCH"], id="map-values-narrowed"),
    # fixed
    pytest.param(record(field("h", fixed(16))), record(field("h", fixed(16))), "FULL", [], id="fixed-same"),
    pytest.param(record(field("h", fixed(16))), record(field("h", fixed(32))), "BACKWARD", ["FIXED_SIZE_MISMATCH"], id="fixed-size-changed"),
    pytest.param(record(field("h", fixed(16))), record(field("h", fixed(16, name="Digest"))), "BACKWARD", ["NAME_MISMATCH"], id="fixed-renamed"),
    pytest.param(record(field("h", fixed(16))), record(field("h", "bytes")), "BACKWARD", ["TYPE_MISMATCH"], id="fixed-to-bytes"),
    # named type references and nested records
    pytest.param(
        record(field("p", {"type": "record", "name": "Px", "fields": [field("v", "int")]}), field("q", "Px")),
        record(field("p", {"type": "record", "name": "Px", "fields": [field("v", "long")]}), field("q", "Px")),
        "BACKWARD", [], id="named-reference-promoted",
    ),
    pytest.param(
        record(field("p", {"type": "record", "name": "Px", "fields": [field("v", "int")]}), field("q", "Px")),
        record(field("p", {"type": "record", "name": "Px", "fields": [field("v", "int"), field("w", "int")]}), field("q", "Px")),
        "BACKWARD", ["READER_FIELD_MISSING_DEFAULT_VALUE", "READER_FIELD_MISSING_DEFAULT_VALUE"], id="named-reference-field-added-twice-reported",
    ),
    pytest.param(
        record(field("v", "int"), field("next", ["null", "Trade"], default=None)),
        record(field("v", "long"), field("next", ["null", "Trade"], default=None), field("w", "int", default=0)),
        "FULL_TRANSITIVE", ["TYPE_MISMATCH"], id="recursive-record",
    ),
    # logical types
    pytest.param(record(field("p", decimal(18, 8))), record(field("p", decimal(18, 8))), "FULL", [], id="decimal-same"),
    pytest.param(record(field("p", decimal(18, 8))), record(field("p", decimal(18, 6))), "BACKWARD", ["DECIMAL_MISMATCH"], id="decimal-scale-changed"),
    pytest.param(record(field("p", decimal(18, 8))), record(field("p", decimal(38, 8))), "BACKWARD", ["DECIMAL_MISMATCH"], id="decimal-precision-changed"),
    pytest.param(record(field("p", "bytes")), record(field("p", decimal(18, 8))), "BACKWARD", ["LOGICAL_TYPE_MISMATCH"], id="bytes-to-decimal"),
    pytest.param(record(field("p", decimal(18, 8))), record(field("p", "string")), "BACKWARD", ["LOGICAL_TYPE_MISMATCH"], id="decimal-to-string"),
    pytest.param(record(field("p", decimal(18, 8, "bytes"))), record(field("p", {**fixed(16, name="Dec"), **decimal(18, 8, "fixed")})), "BACKWARD", ["TYPE_MISMATCH"], id="decimal-bytes-to-fixed"),
    pytest.param(record(field("p", {**fixed(16, name="Dec"), **decimal(18, 8, "fixed")})), record(field("p", {**fixed(16, name="Dec"), **decimal(18, 4, "fixed")})), "BACKWARD", ["DECIMAL_MISMATCH"], id="decimal-fixed-scale-changed"),
    pytest.param(record(field("t", {"type": "long", "logicalType": "timestamp-micros"})), record(field("t", {"type": "long", "logicalType": "timestamp-millis"})), "BACKWARD", ["LOGICAL_TYPE_MISMATCH"], id="micros-to-millis"),
    pytest.param(record(field("t", "long")), record(field("t", {"type": "long", "logicalType": "timestamp-micros"})), "FULL", [], id="long-to-timestamp-micros"),
    pytest.param(record(field("d", {"type": "int", "logicalType": "date"})), record(field("d", {"type": "int", "logicalType": "date"})), "FULL", [], id="date-same"),
    # NONE accepts anything
    pytest.param(A_INT, record(field("a", "string")), "NONE", [], id="none-level"),
    pytest.param(A_INT, '"string"', "NONE", [], id="none-level-record-to-primitive"),
    pytest.param(A_INT, '"string"', "BACKWARD", ["TYPE_MISMATCH"], id="record-to-primitive"),
]


@pytest.mark.parametrize(("old", "new", "level", "kinds"), CASES)
def test_compatibility_table(old: str, new: str, level: str, kinds: list[str]) -> None:
    violations = check_compatibility(parse(new), [parse(old)], level)
    assert [v.incompatibility.kind for v in violations] == kinds, [str(v) for v in violations]


def test_reason_names_the_field_and_direction() -> None:
    (violation,) = check_compatibility(parse(record(field("a", "int"), field("price", "string"))), [parse(A_INT)], "BACKWARD")
    assert str(violation) == (
        "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1: field 'price' of the reader's record 'market.Trade'"
        " has no default value and is missing in the writer's"
        " (the new schema cannot read data written with the old schema)"
    )


def test_each_missing_field_is_named_in_its_own_reason() -> None:
    # a missing field whose enum has a default is checked as that enum against the writer's record
    # (as Java Avro's SchemaCompatibility does); the field after it keeps its own message
    side = {**enum("BUY", "SELL"), "default": "BUY"}
    new = record(field("a", "int"), field("s", side), field("price", "string"))
    reasons = [str(v.incompatibility) for v in check_compatibility(parse(new), [parse(A_INT)], "BACKWARD")]
    assert reasons == [
        "TYPE_MISMATCH at /fields/1/type: the reader's type enum market.Side cannot read the writer's record market.Trade",
        "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/2: field 'price' of the reader's record 'market.Trade'"
        " has no default value and is missing in the writer's",
    ]


def test_decimal_reason_gives_both_scales() -> None:
    (inc,) = reader_incompatibilities(parse(record(field("p", decimal(18, 6)))), parse(record(field("p", decimal(18, 8)))))
    assert inc.path == "/fields/0/type"
    assert "scale=6" in inc.message and "scale=8" in inc.message


# Transitive levels look at every earlier version; the others at the latest only.
V1 = record(field("a", "int"))
V2 = record(field("a", "int"), field("b", "int", default=0))
V3 = record(field("a", "int"), field("b", "int"))  # b lost its default: v1 data cannot be read


@pytest.mark.parametrize(
    ("level", "kinds", "previous_indexes"),
    [
        ("BACKWARD", [], []),
        ("BACKWARD_TRANSITIVE", ["READER_FIELD_MISSING_DEFAULT_VALUE"], [0]),
        ("FORWARD", [], []),
        ("FORWARD_TRANSITIVE", [], []),
        ("FULL", [], []),
        ("FULL_TRANSITIVE", ["READER_FIELD_MISSING_DEFAULT_VALUE"], [0]),
        ("NONE", [], []),
    ],
)
def test_transitive_levels_check_every_version(level: str, kinds: list[str], previous_indexes: list[int]) -> None:
    violations = check_compatibility(parse(V3), [parse(V1), parse(V2)], level)
    assert [v.incompatibility.kind for v in violations] == kinds
    assert [v.previous_index for v in violations] == previous_indexes


def test_forward_transitive_catches_an_old_reader() -> None:
    # v1 reader (a, with c defaulted) reads v2 (has c) fine; v3 drops c which v1 requires without default
    v1 = record(field("a", "int"), field("c", "int"))
    v2 = record(field("a", "int"), field("c", "int", default=0))
    v3 = record(field("a", "int"))
    assert check_compatibility(parse(v3), [parse(v1), parse(v2)], "FORWARD") == []
    kinds = [v.incompatibility.kind for v in check_compatibility(parse(v3), [parse(v1), parse(v2)], "FORWARD_TRANSITIVE")]
    assert kinds == ["READER_FIELD_MISSING_DEFAULT_VALUE"]


def test_no_previous_version_is_compatible() -> None:
    for level in LEVELS:
        assert check_compatibility(parse(A_INT), [], level) == []


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown compatibility level 'SIDEWAYS'"):
        check_compatibility(parse(A_INT), [parse(A_INT)], "sideways")


# --- parsing and identity ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ('"nope"', "nope"),
        ('{"type": "recrd", "name": "X", "fields": []}', "recrd"),
        (record(field("a", "Unknown")), "Unknown"),
        ('{"type": "record", "name": "X"}', "needs a list of fields"),
        (record(field("a", "int"), field("a", "long")), "field 'a' twice"),
        (record(field("a", "int", default="one")), "must match schema type"),
        (record(field("a", ["null", "int"], default=3)), "union's first type"),
        (record(field("s", enum("A", "A"))), "unique"),
        (record(field("s", enum("A", "B", default="C"))), "Default value for enum must be in symbols list"),
        (record(field("u", ["int", "int"])), "union at /fields/0/type has int twice"),
        (record(field("p", decimal(2, 5))), "scale"),
        ('{"type": "fixed", "name": "F"}', "size"),
        ('{"type": "record", "name": "1X", "fields": []}', "illegal name '1X'"),
    ],
)
def test_invalid_schemas(text: str, message: str) -> None:
    with pytest.raises(InvalidSchemaError, match="Invalid schema") as info:
        parse(text)
    assert message in str(info.value)


def test_canonical_form_ignores_spelling_but_not_meaning() -> None:
    a = parse('{"type":"record","name":"market.Trade","fields":[{"name":"a","type":"int"}]}')
    b = parse('{"fields": [{"type": {"type": "int"}, "name": "a"}],\n "namespace": "market", "name": "Trade", "type": "record"}')
    c = parse('{"type":"record","name":"market.Trade","fields":[{"name":"a","type":"int","default":0}]}')
    assert a.canonical == b.canonical
    assert a.canonical != c.canonical


def test_text_is_compact_json_of_what_was_sent() -> None:
    schema = parse('{ "type" : "record", "name" : "T", "fields" : [ ] }')
    assert schema.text == '{"type":"record","name":"T","fields":[]}'
