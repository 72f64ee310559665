"""The feed's producer when its buffer is full: it says so, counts what it drops, and keeps going."""

from __future__ import annotations

import logging

import pytest

from streamapp.feeds import metrics
from streamapp.feeds.producer import Publisher
from streamapp.settings import Settings
from tests.integration.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_a_full_buffer_drops_loudly_and_counts(caplog):
    # Nothing listens on this port: every record stays buffered, as during a broker outage.
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    publisher = Publisher(settings, "binance", max_buffered=3, message_timeout_s=5)
    before = metrics.DROPPED.labels("binance", "buffer_full")._value.get()
    try:
        with caplog.at_level(logging.ERROR, logger="streamapp.feeds.producer"):
            accepted = [publisher.publish("market.crypto.trades.binance.raw", "BTCUSDT", b"{}", []) for _ in range(5)]
        assert accepted == [True, True, True, False, False]
        assert publisher.dropped == 2 and publisher.buffered() == 3
        assert metrics.DROPPED.labels("binance", "buffer_full")._value.get() == before + 2
        assert any("producer buffer FULL" in r.getMessage() for r in caplog.records)
    finally:
        publisher._producer.purge()  # nothing will ever deliver them; don't let librdkafka retry to the end
        publisher.close(timeout_s=0.5)
