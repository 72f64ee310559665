"""Frame kinds, keys and trade ids: real captured frames (and Kraken v2 frames from the docs) -> exact output."""

import gzip
from pathlib import Path

import orjson
import pytest

from streamapp.feeds import binance, kraken
from streamapp.feeds.frames import Kind
from streamapp.feeds.handler import protocol_for

DATA = Path(__file__).resolve().parents[3] / "streamapp" / "captures"

SPOT = (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161300031,"s":"BTCUSDT","t":3735684134,'
        b'"p":"61828.00000000","q":"0.01057000","T":1723161300030,"m":false,"M":true}}')
FUTURES = (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161300010,"T":1723161300010,"s":"BTCUSDT",'
           b'"t":5266585686,"p":"61807.70","q":"0.002","X":"MARKET","m":true}}')
AGGTRADE = (b'{"stream":"ftmusdt@aggTrade","data":{"e":"aggTrade","E":1628952396573,"s":"FTMUSDT","a":31718372,'
            b'"p":"0.33993000","q":"99.90000000","f":38248910,"l":38248910,"T":1628952396572,"m":true,"M":true}}')
# Kraken v2, from docs.kraken.com/api/docs/websocket-v2/trade (no real v2 capture exists here)
KRAKEN_TRADE = (b'{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,'
                b'"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},'
                b'{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":1136.19677,"ord_type":"limit",'
                b'"trade_id":4665847,"timestamp":"2023-09-25T07:49:36.925603Z"}]}')


@pytest.mark.parametrize("frame, kind, key, ids", [
    (SPOT, Kind.TRADE, "BTCUSDT", {"BTCUSDT": [3735684134]}),
    (FUTURES, Kind.TRADE, "BTCUSDT", {"BTCUSDT": [5266585686]}),
    (AGGTRADE, Kind.UNKNOWN, None, {}),
    (b'{"result":null,"id":1}', Kind.ACK, None, {}),
    (b'{"result":["btcusdt@trade"],"id":7}', Kind.ACK, None, {}),
    (b'{"error":{"code":2,"msg":"Invalid request"},"id":3}', Kind.ERROR, None, {}),
    (b'{"e":"serverShutdown","E":1723161300031}', Kind.SHUTDOWN, None, {}),
    (b'{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1}}', Kind.SHUTDOWN, None, {}),
    (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":17231613', Kind.MALFORMED, None, {}),
    (b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":"12"}}', Kind.MALFORMED, None, {}),
    (b'[1,2]', Kind.UNKNOWN, None, {}),
    (b'{"hello":1}', Kind.UNKNOWN, None, {}),
])
def test_binance_classify(frame, kind, key, ids):
    got = binance.classify(frame)
    assert (got.kind, got.key, got.ids) == (kind, key, ids)


@pytest.mark.parametrize("frame, kind, key, ids", [
    (KRAKEN_TRADE, Kind.TRADE, "MATIC/USD", {"MATIC/USD": [4665846, 4665847]}),
    (b'{"channel":"trade","type":"snapshot","data":[]}', Kind.EMPTY, None, {}),
    (b'{"channel":"heartbeat"}', Kind.HEARTBEAT, None, {}),
    (b'{"channel":"status","data":[{"api_version":"v2","connection_id":1,"system":"online","version":"2.0.0"}],'
     b'"type":"update"}', Kind.STATUS, None, {}),
    (b'{"method":"subscribe","req_id":1,"result":{"channel":"trade","snapshot":true,"symbol":"BTC/USD"},'
     b'"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}',
     Kind.ACK, None, {}),
    (b'{"method":"pong","req_id":2,"time_in":"x","time_out":"y"}', Kind.PONG, None, {}),
    (b'{"error":"Currency pair not supported FOO/BAR","method":"subscribe","req_id":1,"success":false}',
     Kind.ERROR, None, {}),
    (b'{"channel":"book","type":"update","data":[]}', Kind.UNKNOWN, None, {}),
    (b'[321,[["58721.20000","0.02798644","1617666461.465618","s","m",""]],"trade","XBT/USD"]', Kind.UNKNOWN, None, {}),
    (b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD"}]}', Kind.MALFORMED, None, {}),
    (b'not json', Kind.MALFORMED, None, {}),
])
def test_kraken_classify(frame, kind, key, ids):
    got = kraken.classify(frame)
    assert (got.kind, got.key, got.ids) == (kind, key, ids)


def test_kraken_trade_time_for_backfill():
    assert kraken.classify(KRAKEN_TRADE).last_time == {"MATIC/USD": 1695628176.925603}


def test_every_bundled_capture_frame_is_a_trade():
    for path in DATA.glob("*.jsonl.gz"):
        with gzip.open(path) as fh:
            for line in fh:
                rec = orjson.loads(line)
                protocol = protocol_for(rec["exchange"])
                assert protocol.classify(rec["frame"].encode()).kind is Kind.TRADE, (path, line)


def test_subscriptions():
    assert binance.subscribe_messages(["BTCUSDT", "ETHUSDT"], 5) == [
        '{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":5}']
    assert len(binance.subscribe_messages([f"S{i}" for i in range(450)], 1)) == 3
    assert kraken.subscribe_messages(["BTC/USD"], 9) == [
        '{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"],"snapshot":true},"req_id":9}']


def test_backfill_urls():
    from streamapp.feeds.gaps import Gap
    assert binance.backfill_url("http://x/", Gap("BTCUSDT", 10, 2500), None) == \
        "http://x/api/v3/historicalTrades?symbol=BTCUSDT&fromId=10&limit=1000"
    assert kraken.backfill_url("http://x", Gap("BTC/USD", 3, 4), None) is None
    assert kraken.backfill_since(None) is None
    # a second before the trade before the gap (since is exclusive; trades share timestamps), in ns
    assert kraken.backfill_since(1617666461.5) == "1617666460500000000"
    assert kraken.backfill_url("http://x", Gap("BTC/USD", 3, 4), "1617666460500000000", 2) == \
        "http://x/0/public/Trades?pair=BTCUSD&since=1617666460500000000&count=2"


def test_backfill_pages():
    """Trade ids and times of a REST page, and the cursor of the next (Kraken: ``last``)."""
    kraken_body = (b'{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",'
                   b'61044952],["30243.30000","0.00376960",1688669598.2804112,"s","l","",61044953]],'
                   b'"last":"1688671969993150842"}}')
    assert kraken.backfill_page(kraken_body) == (
        [(61044952, 1688669597.8277369), (61044953, 1688669598.2804112)], "1688671969993150842")
    with pytest.raises(ValueError, match="EQuery:Unknown asset pair"):
        kraken.backfill_page(b'{"error":["EQuery:Unknown asset pair"]}')
    assert binance.backfill_page(b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","time":1499865549590,'
                                 b'"isBuyerMaker":true}]') == ([(28457, 1499865549.59)], None)
    with pytest.raises(ValueError, match="not an array"):
        binance.backfill_page(b'{"code":-1121,"msg":"Invalid symbol."}')


def test_a_kraken_frame_of_several_symbols_is_split_byte_for_byte():
    frame = (b'{"channel":"trade","type":"update","data":[{"symbol":"A/USD","price":0.10000000000000000001,'
             b'"trade_id":1}, {"symbol":"B/USD","price":1e-8,"trade_id":7},{"symbol":"A/USD","trade_id":2}]}')
    assert kraken.records(frame, kraken.classify(frame)) == [
        ("A/USD", b'{"channel":"trade","type":"update","data":[{"symbol":"A/USD","price":0.10000000000000000001,'
                  b'"trade_id":1},{"symbol":"A/USD","trade_id":2}]}', {"A/USD": [1, 2]}),
        ("B/USD", b'{"channel":"trade","type":"update","data":[{"symbol":"B/USD","price":1e-8,"trade_id":7}]}',
         {"B/USD": [7]}),
    ]
    assert kraken.records(KRAKEN_TRADE, kraken.classify(KRAKEN_TRADE)) == [
        ("MATIC/USD", KRAKEN_TRADE, {"MATIC/USD": [4665846, 4665847]})]  # one symbol: the frame as received
