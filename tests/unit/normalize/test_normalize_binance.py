"""Binance trade frames → Trade / Ignored / Rejection, on real frames (tests/fixtures) and their mutations."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from records import Trade
from streamapp.normalize import binance
from streamapp.normalize.result import Ignored, Rejection
from streamapp.normalize.symbols import DEFAULT_BINANCE_MAP, DEFAULT_KRAKEN_MAP, SymbolMap
from tests.shared_data import shared_data_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
NOW_US = 1723161600000000  # 2024-08-09T00:00:00Z, just after the recording
SKEW_US = 5_000_000


def lines(name: str) -> list[bytes]:
    return (FIXTURES / name).read_bytes().splitlines()


FUTURES = lines("binance_usdm_trades.jsonl")
SPOT = lines("binance_spot_trades.jsonl")


def run(frame: bytes, symbols: SymbolMap = DEFAULT_BINANCE_MAP, now_us: int = NOW_US):
    return binance.normalize(
        frame, receive_time_us=NOW_US - 1, raw_partition=1, raw_offset=77, symbols=symbols, now_us=now_us,
        max_skew_us=SKEW_US,
    )  # fmt: skip


def trade(seq, price, qty, side, t_ms, e_ms) -> Trade:
    return Trade(
        "binance", "BTC/USDT", "BTCUSDT", str(seq), seq, Decimal(price), Decimal(qty), side,
        t_ms * 1000, e_ms * 1000, NOW_US - 1, 1, 77,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        # futures: X present, M absent; m true -> taker sold
        (FUTURES[0], trade(5266585686, "61807.70", "0.002", "sell", 1723161300010, 1723161300010)),
        (FUTURES[1], trade(5266585687, "61807.80", "0.001", "buy", 1723161300016, 1723161300016)),
        # spot: M present, X absent; T and E differ
        (SPOT[0], trade(3735684134, "61828.00000000", "0.01057000", "buy", 1723161300030, 1723161300031)),
    ],
    ids=["futures-sell", "futures-buy", "spot"],
)
def test_real_frames(frame, expected):
    assert run(frame) == (expected,)


def _data(frame: bytes) -> dict:
    return orjson.loads(frame)["data"]


def mutate(drop: tuple[str, ...] = (), wrap: bool = True, **changes) -> bytes:
    """The first futures frame with fields replaced or dropped."""
    data = {k: v for k, v in {**_data(FUTURES[0]), **changes}.items() if k not in drop}
    return orjson.dumps({"stream": "btcusdt@trade", "data": data} if wrap else data)


def test_bare_event_equals_combined_stream_event():
    assert run(orjson.dumps(_data(FUTURES[0]))) == run(FUTURES[0])


@pytest.mark.parametrize(
    ("changes", "price", "qty"),
    [
        ({"p": "6.18077e4", "q": "1e-3"}, "61807.7", "0.001"),
        ({"p": "6.1807700E+4", "q": "2E-3"}, "61807.700", "0.002"),
        ({"p": "61807.7000000000000000000000", "q": ".5"}, "61807.7", "0.5"),  # trailing zeros beyond scale fit exactly
        ({"p": "0.000000000000000001", "q": "99999999999999999999"}, "1E-18", "99999999999999999999"),
    ],
)
def test_exponent_notation_and_extremes_are_exact(changes, price, qty):
    (result,) = run(mutate(**changes))
    assert result.price == Decimal(price) and result.quantity == Decimal(qty)
    assert isinstance(result.price, Decimal)


def test_extra_and_unknown_fields_are_ignored():
    assert run(mutate(M=True, X="MARKET", extra={"nested": [1, 2]})) == run(FUTURES[0])


def test_duplicate_frames_give_identical_trades():
    """Deduplication happens downstream by (exchange, symbol, trade_id); the normalizer is deterministic."""
    assert run(FUTURES[0]) == run(FUTURES[0])


def test_out_of_order_times_are_accepted():
    earlier = run(mutate(T=1723161200000, E=1723161200001))
    assert isinstance(earlier, tuple) and earlier[0].trade_time == 1723161200000000


def test_future_time_bound_is_now_plus_skew():
    now_ms = NOW_US // 1000
    assert isinstance(run(mutate(T=now_ms + 5000, E=now_ms + 5000)), tuple)
    assert run(mutate(T=now_ms + 5001)).code == "bad_time"


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b'{"result":null,"id":1}', "subscription"),
        (b'{"result":["btcusdt@trade"],"id":3}', "subscription"),
        (b'{"code":2,"msg":"Invalid request: unknown variant","id":1}', "error"),
        (b'{"error":{"code":2,"msg":"Invalid request"},"id":1}', "error"),
    ],
)
def test_control_frames_are_ignored(frame, kind):
    assert run(frame) == Ignored(kind)


AGG, KLINE = lines("binance_aggtrade_kline.jsonl")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (AGG, "unsupported_message"),
        (KLINE, "unsupported_message"),
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"e":"trade",}', "malformed_json"),
        (b"NaN", "malformed_json"),
        (b"[1,2]", "unsupported_message"),
        (b'"trade"', "unsupported_message"),
        (b"null", "unsupported_message"),
        (b'{"stream":"btcusdt@trade","data":[1]}', "wrong_type"),
        (b'{"id":1}', "missing_field"),
        (mutate(drop=("e",)), "missing_field"),
        (mutate(e=1), "wrong_type"),
        (mutate(e="aggTrade"), "unsupported_message"),
        *[(mutate(drop=(f,)), "missing_field") for f in ("s", "t", "p", "q", "T", "E", "m")],
        (mutate(s="FOOUSDT"), "unknown_symbol"),
        (mutate(s="btcusdt"), "unknown_symbol"),
        (mutate(s=1), "wrong_type"),
        (mutate(t="5266585686"), "wrong_type"),
        (mutate(t=True), "wrong_type"),
        (mutate(t=5266585686.0), "wrong_type"),
        (mutate(t=-1), "bad_value"),
        (mutate(t=2**63), "bad_value"),
        (mutate(p=61807.7), "wrong_type"),
        (mutate(p=61807), "wrong_type"),
        (mutate(p=None), "wrong_type"),
        (mutate(p="0"), "bad_price"),
        (mutate(p="0.00000000"), "bad_price"),
        (mutate(p="-61807.70"), "bad_price"),
        (mutate(p="NaN"), "bad_price"),
        (mutate(p="Infinity"), "bad_price"),
        (mutate(p=" 61807.70"), "bad_price"),
        (mutate(p="61_807.70"), "bad_price"),
        (mutate(p="1e-19"), "bad_price"),
        (mutate(p="1e20"), "bad_price"),
        (mutate(p="1e999999999"), "bad_price"),
        (mutate(p=""), "bad_price"),
        (mutate(q="0"), "bad_quantity"),
        (mutate(q="-0.002"), "bad_quantity"),
        (mutate(q="0.0000000000000000001"), "bad_quantity"),
        (mutate(q=0.002), "wrong_type"),
        (mutate(T="1723161300010"), "wrong_type"),
        (mutate(T=1723161300010.0), "wrong_type"),
        (mutate(T=0), "bad_time"),
        (mutate(T=1230767999999), "bad_time"),  # 1 ms before 2009-01-01
        (mutate(T=NOW_US), "bad_time"),  # µs sent where ms belong: far in the future
        (mutate(E=-5), "bad_time"),
        (mutate(m="true"), "wrong_type"),
        (mutate(m=1), "wrong_type"),
        (mutate(m=None), "wrong_type"),
    ],
)
def test_rejections(frame, code):
    result = run(frame)
    assert isinstance(result, Rejection), result
    assert result.code == code, result
    assert result.message


def test_missing_field_message_names_the_field():
    assert "'q'" in run(mutate(drop=("q",))).message


def test_wrong_symbol_map_is_a_programming_error():
    with pytest.raises(ValueError, match="kraken"):
        run(FUTURES[0], symbols=DEFAULT_KRAKEN_MAP)


def test_symbol_map_overrides():
    custom = SymbolMap.binance(["BTCUSDT"], overrides={"PEPEUSDT": "PEPE/USDT"})
    assert run(mutate(s="PEPEUSDT"), symbols=custom)[0].symbol == "PEPE/USDT"
    assert run(mutate(s="ETHUSDT"), symbols=custom).code == "unknown_symbol"


@pytest.mark.parametrize(
    ("name", "count", "first_id"),
    [
        ("binance_usdm_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl", 8714, 5266585686),
        ("binance_spot_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl", 4335, 3735684134),
    ],
    ids=["futures", "spot"],
)
def test_whole_recordings_normalize_without_rejections(name, count, first_id):
    frames = shared_data_file("binance", name).read_bytes().splitlines()
    results = [run(frame) for frame in frames]
    rejected = [r for r in results if not isinstance(r, tuple)]
    assert rejected == []
    trades = [t for r in results for t in r]
    assert len(trades) == count
    assert [t.trade_seq for t in trades] == list(range(first_id, first_id + count))  # no gaps, as recorded
