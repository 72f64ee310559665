"""Property tests: whatever bytes arrive, a normalizer returns trades, Ignored or a Rejection — never raises.

And whatever trades it returns can be encoded by the Avro codec (the normalizer
is the gate: nothing it lets through can fail later on the hot path).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from records import Trade
from streamapp.codecs import TradeAvroCodec
from streamapp.normalize import binance, kraken
from streamapp.normalize.result import IGNORED_KINDS, REJECTION_CODES, Ignored, Rejection
from streamapp.normalize.symbols import DEFAULT_BINANCE_MAP, DEFAULT_KRAKEN_MAP

NOW_US = 1727000000000000
CODEC = TradeAvroCodec(1)
NORMALIZERS = {
    "binance": (binance.normalize, DEFAULT_BINANCE_MAP),
    "kraken": (kraken.normalize, DEFAULT_KRAKEN_MAP),
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)

# Values near the real ones, so generated frames get deep into validation.
binance_values = st.one_of(
    scalars,
    st.sampled_from(["trade", "BTCUSDT", "ETHBTC", "61807.70", "1e-3", "0", "-1", "NaN", "1e-19", "0.002"]),
    st.integers(min_value=1230768000000, max_value=1727000010000),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)
binance_events = st.fixed_dictionaries(
    {},
    optional={k: binance_values for k in ("e", "E", "T", "s", "t", "p", "q", "m", "M", "X")},
)
binance_frames = st.one_of(
    binance_events,
    binance_events.map(lambda d: {"stream": "btcusdt@trade", "data": d}),
    binance_events.map(lambda d: {**d, "e": "trade"}),
)

kraken_values = st.one_of(
    scalars,
    st.sampled_from(["BTC/USD", "XBT/USD", "FOO/USD", "buy", "sell", "b", "s", "2024-09-20T10:00:00.123456Z"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=20).map(str),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)
kraken_items = st.fixed_dictionaries(
    {}, optional={k: kraken_values for k in ("symbol", "side", "price", "qty", "trade_id", "timestamp", "ord_type")}
)
kraken_frames = st.one_of(
    st.fixed_dictionaries(
        {"channel": st.sampled_from(["trade", "heartbeat", "status", "book"])},
        optional={"type": st.sampled_from(["snapshot", "update"]), "data": st.lists(kraken_items, max_size=4)},
    ),
    st.tuples(
        st.integers(), st.lists(st.lists(kraken_values, max_size=7), max_size=3), st.just("trade"), kraken_values
    ).map(list),
)


# Valid frames with at most one field replaced by junk: these reach the Trade
# constructor and the codec, which the shapes above rarely do.
def spoil(valid: st.SearchStrategy, fields: tuple[str, ...]) -> st.SearchStrategy:
    """``valid`` dicts, half of them with one of ``fields`` replaced by an arbitrary JSON scalar."""
    return st.tuples(valid, st.sampled_from((None, None, None, None) + fields), scalars).map(
        lambda v: v[0] if v[1] is None else {**v[0], v[1]: v[2]}
    )


MS = st.integers(min_value=1230768000000, max_value=NOW_US // 1000 + 5000)
positive_decimal_text = st.decimals(min_value=0, max_value=10**20, allow_nan=False, allow_infinity=False, places=18).map(
    lambda d: format(d, "f")
) | st.sampled_from(["1e-3", "6.18077E+4", "0.000000000000000001", ".5"])
BINANCE_FIELDS = ("e", "E", "T", "s", "t", "p", "q", "m")
near_binance = spoil(
    st.fixed_dictionaries(
        {
            "e": st.just("trade"),
            "E": MS,
            "T": MS,
            "s": st.sampled_from(["BTCUSDT", "ETHBTC", "DOGEUSDT"]),
            "t": st.integers(min_value=0, max_value=2**63 - 1),
            "p": positive_decimal_text,
            "q": positive_decimal_text,
            "m": st.booleans(),
        }
    ),
    BINANCE_FIELDS,
).map(lambda d: {"stream": "btcusdt@trade", "data": d})
TIMES = st.datetimes(
    min_value=datetime(2009, 1, 1), max_value=datetime(2024, 9, 22), timezones=st.just(timezone.utc)
).map(datetime.isoformat)
KRAKEN_FIELDS = ("symbol", "side", "price", "qty", "trade_id", "timestamp")
NUMBERS = st.floats(min_value=1e-12, max_value=1e12) | st.integers(min_value=1, max_value=10**12)
near_kraken_item = spoil(
    st.fixed_dictionaries(
        {
            "symbol": st.sampled_from(["BTC/USD", "DOGE/USD", "ETH/XBT"]),
            "side": st.sampled_from(["buy", "sell"]),
            "price": NUMBERS,
            "qty": NUMBERS,
            "trade_id": st.integers(min_value=0, max_value=2**63 - 1),
            "timestamp": TIMES,
        }
    ),
    KRAKEN_FIELDS,
)
near_kraken = st.fixed_dictionaries(
    {"channel": st.just("trade"), "type": st.just("update"), "data": st.lists(near_kraken_item, max_size=3)}
)


def check(name: str, frame: bytes) -> None:
    normalize, symbols = NORMALIZERS[name]
    result = normalize(
        frame, receive_time_us=NOW_US, raw_partition=0, raw_offset=0, symbols=symbols, now_us=NOW_US,
        max_skew_us=5_000_000,
    )  # fmt: skip
    if isinstance(result, tuple):
        for trade in result:
            assert isinstance(trade, Trade)
            assert CODEC.decode(CODEC.encode(trade)) == trade
    elif isinstance(result, Ignored):
        assert result.kind in IGNORED_KINDS
    else:
        assert isinstance(result, Rejection)
        assert result.code in REJECTION_CODES
        assert result.message.strip()


# --- REST backfill bodies (normalize_backfill) ------------------------------------
BACKFILLS = {
    "binance": (binance.normalize_backfill, DEFAULT_BINANCE_MAP, "BTCUSDT"),
    "kraken": (kraken.normalize_backfill, DEFAULT_KRAKEN_MAP, "BTC/USD"),
}
ids = st.integers(min_value=-5, max_value=30) | st.integers(min_value=-5, max_value=2**64)
spans = st.one_of(st.tuples(ids, ids), st.just((0, 2**63 - 1)), st.just((0, 20)))  # (first_id, last_id)
keys = st.none() | st.text(max_size=10) | st.sampled_from(["BTCUSDT", "ETHBTC", "BTC/USD", "XBT/USD", "DOGE/USD"])
near_binance_row = spoil(
    st.fixed_dictionaries(
        {
            "id": st.integers(min_value=0, max_value=2**63 - 1) | st.integers(min_value=0, max_value=20),
            "price": positive_decimal_text,
            "qty": positive_decimal_text,
            "time": MS,
            "isBuyerMaker": st.booleans(),
        },
        optional={"quoteQty": positive_decimal_text, "isBestMatch": st.booleans()},
    ),
    ("id", "price", "qty", "time", "isBuyerMaker"),
)
# Kraken prints times as doubles (1688669597.8277369); our simulator as µs decimal strings.
SECONDS = st.decimals(min_value=1230768000, max_value=NOW_US // 1_000_000 + 5, places=6, allow_nan=False)
valid_kraken_row = st.tuples(
    positive_decimal_text, positive_decimal_text, SECONDS.map(float) | SECONDS.map(str),
    st.sampled_from(["b", "s"]), st.sampled_from(["m", "l"]), st.just(""),
    st.integers(min_value=0, max_value=20) | st.integers(min_value=0, max_value=2**63 - 1),
).map(list)
near_kraken_row = st.tuples(valid_kraken_row, st.sampled_from((None, None, None, 0, 1, 2, 3, 6)), kraken_values).map(
    lambda v: v[0] if v[1] is None else [*v[0][: v[1]], v[2], *v[0][v[1] + 1 :]]
)
near_kraken_body = st.fixed_dictionaries(
    {
        "error": st.one_of(st.just([]), st.just([]), st.just([]), st.lists(st.text(max_size=20), max_size=2)),
        "result": st.fixed_dictionaries(
            {"XXBTZUSD": st.lists(st.one_of(*[near_kraken_row] * 3, st.lists(kraken_values, max_size=8)), max_size=4)},
            optional={"last": st.text(max_size=20)},
        ),
    }
)


def check_backfill(name: str, body: bytes, key: str | None, first_id: int, last_id: int) -> None:
    normalize, symbols, _ = BACKFILLS[name]
    result = normalize(
        body, exchange_symbol=key, first_id=first_id, last_id=last_id, receive_time_us=NOW_US, raw_partition=0,
        raw_offset=0, symbols=symbols, now_us=NOW_US, max_skew_us=5_000_000,
    )  # fmt: skip
    if isinstance(result, tuple):
        for trade in result:
            assert isinstance(trade, Trade)
            assert first_id <= trade.trade_seq <= last_id
            assert CODEC.decode(CODEC.encode(trade)) == trade
    else:
        assert isinstance(result, Rejection)  # a REST body is never a control frame
        assert result.code in REJECTION_CODES
        assert result.message.strip()


def _dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


common = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(NORMALIZERS))
@common
@given(frame=st.binary(max_size=300))
def test_arbitrary_bytes(name, frame):
    check(name, frame)


@pytest.mark.parametrize("name", sorted(NORMALIZERS))
@common
@given(value=json_values)
def test_arbitrary_json(name, value):
    check(name, _dumps(value))


@common
@given(value=binance_frames)
def test_trade_shaped_binance_frames(value):
    check("binance", _dumps(value))


@common
@given(value=kraken_frames)
def test_trade_shaped_kraken_frames(value):
    check("kraken", _dumps(value))


@common
@given(value=near_binance)
def test_near_valid_binance_frames(value):
    check("binance", _dumps(value))


@common
@given(value=near_kraken)
def test_near_valid_kraken_frames(value):
    check("kraken", _dumps(value))


@pytest.mark.parametrize("name", sorted(BACKFILLS))
@common
@given(body=st.binary(max_size=300), key=keys, span=spans)
def test_backfill_arbitrary_bytes(name, body, key, span):
    check_backfill(name, body, key, *span)


@pytest.mark.parametrize("name", sorted(BACKFILLS))
@common
@given(value=json_values, key=keys, span=spans)
def test_backfill_arbitrary_json(name, value, key, span):
    check_backfill(name, _dumps(value), key, *span)


@common
@given(rows=st.lists(near_binance_row, max_size=4), span=spans)
def test_near_valid_binance_backfill(rows, span):
    check_backfill("binance", _dumps(rows), "BTCUSDT", *span)


@common
@given(body=near_kraken_body, span=spans)
def test_near_valid_kraken_backfill(body, span):
    check_backfill("kraken", _dumps(body), "BTC/USD", *span)
