#!/usr/bin/env python3
"""Rebuild streamapp/captures/ (the simulator's bundled recordings) from the real exchange data in ../shared/data.

    python deploy/scripts/build_captures.py [--data ../shared/data] [--out streamapp/captures]

Binance: each message is kept byte for byte; the recorder's receive time was removed in
the source, so receive_time_us is the event time ``E`` (ms) * 1000.
Kraken: only v1 captures exist and v1 trades carry no trade id; their trades are converted
into documented WebSocket v2 ``trade`` update messages, one per v1 message, with trade ids
assigned sequentially per pair (from 1) and XBT/XDG renamed BTC/DOGE as v2 does.
Output is deterministic (gzip mtime 0), so re-running changes nothing.
"""

from __future__ import annotations

import argparse
import gzip
import io
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson

from streamapp.simulator.capture import capture_line

ROOT = Path(__file__).resolve().parents[2]
# capture -> (source, exchange id): spot is "binance", USDⓈ-M futures "binanceusdm" (ccxt's ids).
BINANCE_FILES = {
    "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz":
        ("binance/binance_spot_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl", "binance"),
    "binance_usdm_btcusdt_trades_2024-08-08.jsonl.gz":
        ("binance/binance_usdm_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl", "binanceusdm"),
}
KRAKEN_FILES = ["kraken/kraken_ws_v1_2021-04-06.jsonl", "kraken/kraken_ws_v1_2021-04-17.jsonl"]
KRAKEN_OUT = "kraken_v2_trades_converted_from_v1_2021-04.jsonl.gz"
V2_ASSETS = {"XBT": "BTC", "XDG": "DOGE"}


def write_gz(path: Path, lines: list[bytes]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.writelines(lines)
    path.write_bytes(buf.getvalue())


def binance(src: Path, exchange: str) -> list[bytes]:
    out = []
    for raw in src.read_text().splitlines():
        if raw.strip():
            out.append(capture_line(orjson.loads(raw)["data"]["E"] * 1000, exchange, raw.encode()))
    return out


def _number(text: str) -> str:
    """``"58721.20000"`` -> ``58721.2``, ``"0.00000050"`` -> ``0.0000005`` (fixed point, exact)."""
    return format(Decimal(text).normalize(), "f")


def kraken_v2(srcs: list[Path]) -> list[bytes]:
    next_id: dict[str, int] = {}
    out = []
    for src in srcs:
        for raw in src.read_text().splitlines():
            msg = orjson.loads(raw)
            if not (isinstance(msg, list) and len(msg) == 4 and msg[2] == "trade"):
                continue
            base, quote = msg[3].split("/")
            symbol = f"{V2_ASSETS.get(base, base)}/{V2_ASSETS.get(quote, quote)}"
            data = []
            for price, volume, at, side, order_type, _misc in msg[1]:
                next_id[symbol] = next_id.get(symbol, 0) + 1
                stamp = datetime.fromtimestamp(float(Decimal(at)), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                # price and qty as JSON numbers, as v2 sends them; the decimal text is kept exact.
                data.append('{"symbol":%s,"side":"%s","price":%s,"qty":%s,"ord_type":"%s","trade_id":%d,'
                            '"timestamp":"%s"}' % (orjson.dumps(symbol).decode(), "buy" if side == "b" else "sell",
                                                    _number(price), _number(volume),
                                                    "limit" if order_type == "l" else "market", next_id[symbol], stamp))
            frame = '{"channel":"trade","type":"update","data":[%s]}' % ",".join(data)
            receive_us = int(Decimal(msg[1][-1][2]) * 1_000_000)
            out.append(capture_line(receive_us, "kraken", frame.encode()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "streamapp" / "captures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (src, exchange) in BINANCE_FILES.items():
        write_gz(args.out / name, binance(args.data / src, exchange))
    write_gz(args.out / KRAKEN_OUT, kraken_v2([args.data / f for f in KRAKEN_FILES]))
    for path in sorted(args.out.glob("*.jsonl.gz")):
        print(f"{path.name}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
