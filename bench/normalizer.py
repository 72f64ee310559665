"""The baseline for the worker: a plain confluent-kafka loop doing the same normalization and encoding.

It reads raw Binance frames with its own consumer group, calls the same
:class:`streamapp.dispatch.Dispatcher` (normalize + Avro encode) as the worker's
agents, and produces the results with one idempotent producer, committing
offsets after each consumed batch: at-least-once, the simplest thing that does
the job, in one process. ``make bench`` (bench/throughput.py) runs it beside
the worker and times it the same way (by the group's committed offsets).

    python bench/normalizer.py --group G --target TOPIC --records N   # against $STREAMAPP_*
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from confluent_kafka import Consumer, Producer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamapp import topics  # noqa: E402
from streamapp.clients.registry import register_trade_schema  # noqa: E402
from streamapp.codecs.avro import TradeAvroCodec  # noqa: E402
from streamapp.dispatch import Dispatcher  # noqa: E402
from streamapp.normalize import binance  # noqa: E402
from streamapp.normalize.symbols import SymbolMap  # noqa: E402
from streamapp.settings import get_settings  # noqa: E402


def plain_loop(settings, group: str, target: str, records: int) -> None:
    """Normalize ``records`` raw Binance records from ``group``'s committed offsets into ``target``."""
    schema_id = asyncio.run(register_trade_schema(settings, topics.normalized("binance")))
    dispatcher = Dispatcher("binance", binance.normalize, SymbolMap.binance(), TradeAvroCodec(schema_id),
                            backfill=binance.normalize_backfill, max_skew_s=settings.clock_skew_s)
    consumer = Consumer({**settings.kafka_client_config(), "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topics.raw("binance")])
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 5, "enable.idempotence": True})
    seen = 0
    while seen < records:
        batch = consumer.consume(1000, 1.0)
        for msg in batch:
            if msg.error():
                continue
            seen += 1
            for out in dispatcher.dispatch(msg.value(), msg.key(), msg.headers(), msg.partition(), msg.offset()):
                while True:
                    try:
                        producer.produce(target, out.value, out.key, headers=out.headers)
                        break
                    except BufferError:
                        producer.poll(0.1)
            producer.poll(0)
        if batch:
            consumer.commit(asynchronous=True)
    producer.flush(60)
    consumer.commit(asynchronous=False)
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True, help="consumer group (its committed offsets are where it starts)")
    parser.add_argument("--target", required=True, help="topic to write the normalized records to")
    parser.add_argument("--records", type=int, required=True, help="raw records to normalize, then exit")
    args = parser.parse_args()
    plain_loop(get_settings(), args.group, args.target, args.records)


if __name__ == "__main__":
    main()
