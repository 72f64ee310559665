"""An idempotent confluent-kafka producer with a bounded local buffer.

``acks=all`` + ``enable.idempotence``: no duplicates and per-partition order across
broker retries. While the broker is away, records wait in librdkafka's queue (bounded by
``max_buffered`` records / ``max_buffered_kbytes``) for up to ``message_timeout_s``; a
full buffer makes :meth:`Publisher.publish` refuse the record (False), count it and say so
loudly. A record given up later (its delivery report is an error) is counted and handed to
the caller's ``on_failed``, from the producer's thread. Neither is lost for good: the feed
turns both into gaps it backfills (:mod:`streamapp.feeds.handler`).
Batched: a background thread serves delivery reports; nothing flushes per message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from streamapp.errors import StreamappError
from streamapp.feeds import metrics
from streamapp.settings import Settings

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self,
        settings: Settings,
        exchange: str,
        *,
        max_buffered: int = 200_000,
        max_buffered_kbytes: int = 256 * 1024,
        message_timeout_s: float = 300.0,
        linger_ms: int = 5,
        extra_config: dict[str, object] | None = None,
    ) -> None:
        if max_buffered < 1:
            raise StreamappError(f"max_buffered={max_buffered}: the producer buffer must hold at least 1 record")
        self.exchange = exchange
        config = settings.kafka_client_config() | {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            "queue.buffering.max.messages": max_buffered,
            "queue.buffering.max.kbytes": max_buffered_kbytes,
            # How long a record may wait for the broker before it is given up (and counted).
            "message.timeout.ms": int(message_timeout_s * 1000),
            "reconnect.backoff.max.ms": 2000,
            "client.id": f"streamapp-feed-{exchange}",
            "error_cb": self._on_error,
        } | (extra_config or {})
        self._producer = Producer(config)
        self.accepted = 0  # only publish() writes it: one thread
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        # Delivery reports run in whichever thread polls (the poller, or flush() in close()).
        self._settled_lock = threading.Lock()
        self._last_drop_log = 0.0
        self._latency = metrics.PUBLISH_LATENCY.labels(exchange)
        self._depth = metrics.BUFFER_DEPTH.labels(exchange)
        self._stop = threading.Event()
        # Last: the poller reads the attributes above.
        self._poller = threading.Thread(target=self._poll, name=f"feed-producer-{exchange}", daemon=True)
        self._poller.start()

    def publish(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]],
                kind: str = "trade", received_monotonic: float | None = None,
                on_failed: Callable[[KafkaError], None] | None = None) -> bool:
        """Queue one record; False (counted, logged) if the producer refuses it (buffer full).

        ``on_failed(err)`` runs in the producer's thread if the record is given up later."""
        started = received_monotonic if received_monotonic is not None else time.monotonic()
        published = metrics.FRAMES_PUBLISHED.labels(self.exchange, kind)

        def delivered(err: KafkaError | None, _msg) -> None:
            if err is None:
                with self._settled_lock:
                    self.delivered += 1
                published.inc()
                self._latency.observe(time.monotonic() - started)
            else:
                with self._settled_lock:
                    self.failed += 1
                metrics.DROPPED.labels(self.exchange, "delivery_error").inc()
                log.error("%s: record for %s key %s NOT delivered: %s", self.exchange, topic, key, err)
                if on_failed is not None:
                    on_failed(err)

        self.accepted += 1  # before produce: its delivery report may come first, from the poller
        try:
            self._producer.produce(topic, value=value, key=key.encode(), headers=headers, on_delivery=delivered)
        except BufferError:
            self.accepted -= 1
            self.dropped += 1
            metrics.DROPPED.labels(self.exchange, "buffer_full").inc()
            now = time.monotonic()
            if now - self._last_drop_log > 1.0:
                self._last_drop_log = now
                log.error("%s: producer buffer FULL (%d records waiting for the broker): dropping received "
                          "frames, %d dropped so far. Is the broker at %s up?", self.exchange,
                          self.buffered(), self.dropped, "the configured bootstrap servers")
            return False
        except KafkaException as exc:  # e.g. a topic the broker says does not exist
            self.accepted -= 1
            self.dropped += 1
            metrics.DROPPED.labels(self.exchange, "refused").inc()
            log.error("%s: producer refused a record for %s key %s: %s", self.exchange, topic, key, exc)
            return False
        return True

    def buffered(self) -> int:
        """Records accepted and not yet delivered or given up.

        Not ``len(producer)``: librdkafka counts queued events too (error reports waiting
        for the poller), so that number may exceed the buffer it is meant to show.
        """
        return self.accepted - self.delivered - self.failed

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for the buffer to drain; returns how many records are still waiting."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.error("%s: %d records still unacknowledged after %.0fs flush", self.exchange, remaining, timeout_s)
        return remaining

    def close(self, timeout_s: float = 30.0) -> int:
        remaining = self.flush(timeout_s)
        self._stop.set()
        self._poller.join(timeout=5)
        return remaining

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            self._depth.set(self.buffered())

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.critical("%s: fatal producer error: %s", self.exchange, err)
        else:
            log.warning("%s: producer: %s", self.exchange, err)
