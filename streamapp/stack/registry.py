"""The local stack's schema registry: the Confluent Schema Registry REST API, Avro only.

Run as ``python -m streamapp.stack.registry``. It serves the subset of the API
that python-schema-registry-client, confluent-kafka's ``SchemaRegistryClient``
and ClickHouse's ``AvroConfluent`` format use, and keeps every schema and
config in the compacted ``_schemas`` topic, in the real registry's record
format, so ids, versions and config survive restarts::

    key   {"keytype":"SCHEMA","subject":"t-value","version":1,"magic":1}
    value {"subject":"t-value","version":1,"id":1,"schema":"{...}","deleted":false}
    key   {"keytype":"CONFIG","subject":null,"magic":0}
    value {"compatibilityLevel":"BACKWARD"}

A background thread tails the topic; the in-memory view changes only through
records read back from it. A write is produced, acknowledged, and read back
before the request is answered. One instance at a time (no leader election).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from streamapp import topics
from streamapp.errors import StreamappError
from streamapp.settings import Settings, get_settings
from streamapp.stack import avro_compat
from streamapp.stack.avro_compat import AvroSchema, InvalidSchemaError

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_CONTENT_TYPES = frozenset(
    {"application/vnd.schemaregistry.v1+json", "application/vnd.schemaregistry+json", "application/json"}
)
DEFAULT_LEVEL = avro_compat.BACKWARD
STORE_TIMEOUT_S = 15.0
_MAX_VERSION = 2**31 - 1


class RegistryError(Exception):
    """An error answered as the real registry does: HTTP status, ``error_code``, ``message``."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: Any) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found(what: Any = None) -> RegistryError:
    return RegistryError(404, 40403, "Schema not found" if what is None else f"Schema {what} not found.")


def store_error(message: str) -> RegistryError:
    return RegistryError(500, 50001, message)


# --- the state, built only from `_schemas` records --------------------------------------


@dataclass
class SchemaVersion:
    subject: str
    version: int
    id: int
    schema: str
    schema_type: str  # "AVRO" unless a real registry wrote another type into the topic
    deleted: bool


class State:
    """Subjects, versions, ids and config as the `_schemas` records so far describe them."""

    def __init__(self) -> None:
        self.subjects: dict[str, dict[int, SchemaVersion]] = {}
        self.configs: dict[str | None, str] = {}
        self.max_id = 0
        self._parsed: dict[str, AvroSchema | None] = {}

    # -- applying records --
    def apply(self, key_bytes: bytes | None, value_bytes: bytes | None) -> None:
        try:
            key = json.loads(key_bytes) if key_bytes else None
            value = json.loads(value_bytes) if value_bytes is not None else None
        except ValueError:
            log.warning("skipping a %s record that is not JSON: key=%r", topics.SCHEMAS, key_bytes)
            return
        if not isinstance(key, dict):
            return
        keytype = key.get("keytype")
        if keytype == "SCHEMA":
            self._apply_schema(key, value)
        elif keytype == "CONFIG":
            subject = key.get("subject")
            if value is None:
                self.configs.pop(subject, None)
            elif isinstance(value, dict) and value.get("compatibilityLevel") in avro_compat.LEVELS:
                self.configs[subject] = value["compatibilityLevel"]
        elif keytype == "DELETE_SUBJECT" and isinstance(value, dict):
            for sv in self.subjects.get(value.get("subject"), {}).values():
                if sv.version <= value.get("version", _MAX_VERSION):
                    sv.deleted = True
        # NOOP, MODE, CLEAR_SUBJECT and others: nothing to keep

    def _apply_schema(self, key: dict, value: Any) -> None:
        subject, version = key.get("subject"), key.get("version")
        if not isinstance(subject, str) or not isinstance(version, int):
            return
        if value is None:  # tombstone: permanently deleted
            versions = self.subjects.get(subject, {})
            versions.pop(version, None)
            if not versions:
                self.subjects.pop(subject, None)
            return
        try:
            sv = SchemaVersion(
                subject=subject,
                version=version,
                id=int(value["id"]),
                schema=str(value["schema"]),
                schema_type=value.get("schemaType") or "AVRO",
                deleted=bool(value.get("deleted", False)),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("skipping a malformed schema record for %s version %s", subject, version)
            return
        self.subjects.setdefault(subject, {})[version] = sv
        self.max_id = max(self.max_id, sv.id)

    # -- reading --
    def parsed(self, text: str) -> AvroSchema | None:
        if text not in self._parsed:
            try:
                self._parsed[text] = avro_compat.parse(text)
            except InvalidSchemaError:
                self._parsed[text] = None
        return self._parsed[text]

    def versions(self, subject: str, deleted: bool = False) -> list[SchemaVersion]:
        return sorted(
            (sv for sv in self.subjects.get(subject, {}).values() if deleted or not sv.deleted),
            key=lambda sv: sv.version,
        )

    def live_subjects(self, deleted: bool = False) -> list[str]:
        return sorted(s for s in self.subjects if self.versions(s, deleted))

    def all_versions(self) -> list[SchemaVersion]:
        return [sv for versions in self.subjects.values() for sv in versions.values()]

    def by_id(self, schema_id: int) -> SchemaVersion | None:
        found = [sv for sv in self.all_versions() if sv.id == schema_id]
        return min(found, key=lambda sv: (sv.deleted, sv.subject, sv.version)) if found else None

    def id_of(self, schema: AvroSchema) -> int | None:
        """The id an identical (canonically equal) schema already has, under any subject."""
        for sv in self.all_versions():
            if sv.schema_type == "AVRO":
                other = self.parsed(sv.schema)
                if other is not None and other.canonical == schema.canonical:
                    return sv.id
        return None

    def level(self, subject: str | None) -> str:
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, DEFAULT_LEVEL)


# --- the store: `_schemas` on the broker -------------------------------------------------


class KafkaStore:
    """Produces records to `_schemas` and tails it into :class:`State`."""

    def __init__(self, settings: Settings, topic: str = topics.SCHEMAS) -> None:
        self.settings = settings
        self.topic = topic
        self.state = State()
        self.write_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._applied: dict[int, int] = {}  # partition -> next offset to apply
        self._waiters: list[tuple[dict[int, int], asyncio.Future]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._consumer: Any = None
        self._meta_consumer: Any = None
        self._partitions: list[int] = [0]

    # -- lifecycle --
    async def start(self) -> None:
        """Create the topic if missing, read it to its end, and keep tailing it."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(None, self._ensure_topic)
        self.open_clients()
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._applied = {p: 0 for p in self._partitions}
        self._thread = threading.Thread(target=self._tail, name="registry-store-reader", daemon=True)
        self._thread.start()
        started = time.monotonic()
        await self.catch_up()
        log.info(
            "read %s: %d subjects, highest id %d (%.1fs)",
            self.topic,
            len(self.state.live_subjects()),
            self.state.max_id,
            time.monotonic() - started,
        )

    def open_clients(self, message_timeout_ms: int = 10_000) -> None:
        """The broker clients: a tailing consumer, one for watermarks, and an acks=all producer."""
        from confluent_kafka import Consumer, Producer

        self._loop = self._loop or asyncio.get_running_loop()
        base = {**self.settings.kafka_client_config(), "logger": log}  # librdkafka logs through logging
        consumer_config = {
            **base,
            "group.id": f"streamapp-registry-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
        self._consumer = Consumer(consumer_config)
        self._meta_consumer = Consumer(consumer_config)
        self._producer = Producer(
            {**base, "acks": "all", "linger.ms": 0, "message.timeout.ms": message_timeout_ms}
        )

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5)
        for client in (self._consumer, self._meta_consumer):
            if client is not None:
                client.close()
        if self._producer is not None:
            self._producer.flush(5)

    def _ensure_topic(self) -> None:
        """Create the compacted topic if missing; wait for the broker up to the stack's start timeout."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        from streamapp.clients.kafka import wait_for_leaders

        admin = AdminClient(self.settings.kafka_client_config())
        deadline = time.monotonic() + self.settings.stack_start_timeout_s
        while True:
            try:
                metadata = admin.list_topics(timeout=5)
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise StreamappError(
                        f"schema registry: the broker at {self.settings.kafka_bootstrap_servers} did not answer"
                        f" ({exc}); start it first or set STREAMAPP_KAFKA_BOOTSTRAP_SERVERS"
                    ) from exc
                log.info("waiting for the broker at %s", self.settings.kafka_bootstrap_servers)
                time.sleep(1)
        if self.topic in metadata.topics:
            self._partitions = sorted(metadata.topics[self.topic].partitions) or [0]
            wait_for_leaders(self.settings, [self.topic], timeout_s=self.settings.stack_start_timeout_s, client=admin)
            return
        replication = min(self.settings.replication_factor, max(1, len(metadata.brokers)))
        config = {"cleanup.policy": "compact", "min.insync.replicas": str(min(self.settings.min_insync_replicas, replication))}
        new = NewTopic(self.topic, num_partitions=1, replication_factor=replication, config=config)
        future = admin.create_topics([new])[self.topic]
        try:
            future.result(timeout=30)
            log.info("created the compacted topic %s", self.topic)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise StreamappError(f"schema registry: cannot create topic {self.topic}: {exc}") from exc
        self._partitions = [0]
        # Its leader answers some time after creation returns (later still on a cluster): reading
        # its end offset before that fails (UNKNOWN_PARTITION, NOT_LEADER_FOR_PARTITION).
        wait_for_leaders(self.settings, [self.topic], timeout_s=self.settings.stack_start_timeout_s, client=admin)

    # -- reading --
    def _tail(self) -> None:
        from confluent_kafka import KafkaError, TopicPartition

        last_error = 0.0
        while not self._stopping.is_set():
            try:
                msg = self._consumer.poll(0.2)
            except Exception:  # noqa: BLE001 - the reader must outlive broker trouble
                log.exception("reading %s failed", self.topic)
                time.sleep(1)
                continue
            if msg is None:
                positions = self._consumer.position([TopicPartition(self.topic, p) for p in self._partitions])
                known = {tp.partition: tp.offset for tp in positions if tp.offset >= 0}
                if known:
                    self._loop.call_soon_threadsafe(self._on_position, known)
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF and time.monotonic() - last_error > 10:
                    last_error = time.monotonic()
                    log.warning("reading %s: %s", self.topic, msg.error())
                continue
            self._loop.call_soon_threadsafe(self._on_record, msg.partition(), msg.offset(), msg.key(), msg.value())

    def _on_record(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        try:
            self.state.apply(key, value)
        except Exception:  # noqa: BLE001 - one odd record must not stop the registry
            log.exception("could not apply %s record at %d:%d", self.topic, partition, offset)
        self._on_position({partition: offset + 1})

    def _on_position(self, positions: dict[int, int]) -> None:
        for partition, offset in positions.items():
            if offset > self._applied.get(partition, 0):
                self._applied[partition] = offset
        still = []
        for targets, future in self._waiters:
            if future.done():
                continue
            if all(self._applied.get(p, 0) >= o for p, o in targets.items()):
                future.set_result(None)
            else:
                still.append((targets, future))
        self._waiters = still

    async def _wait_applied(self, targets: dict[int, int]) -> None:
        if all(self._applied.get(p, 0) >= o for p, o in targets.items()):
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((targets, future))
        try:
            await asyncio.wait_for(future, STORE_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise store_error(f"Timed out reading back {self.topic} from the broker; is it up?") from exc

    def _high_watermarks(self) -> dict[int, int]:
        from confluent_kafka import KafkaException, TopicPartition

        out = {}
        for p in self._partitions:
            try:
                _low, high = self._meta_consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)
            except KafkaException as exc:
                raise store_error(f"Error reading {self.topic} from the broker: {exc}") from exc
            out[p] = high
        return out

    async def catch_up(self) -> None:
        """Wait until every record on the topic now has been applied (other writers included)."""
        highs = await asyncio.get_running_loop().run_in_executor(None, self._high_watermarks)
        await self._wait_applied(highs)

    # -- writing --
    def _produce_sync(self, records: list[tuple[dict, dict | None]]) -> dict[int, int]:
        results: list[Any] = []

        def delivered(err: Any, msg: Any) -> None:
            # not "if msg": a Message's truth is its value's length, and a tombstone has none
            results.append((err, msg.partition(), msg.offset()) if msg is not None else (err, None, None))

        try:
            for key, value in records:
                self._producer.produce(
                    self.topic,
                    key=json.dumps(key, separators=(",", ":")).encode(),
                    value=None if value is None else json.dumps(value, separators=(",", ":")).encode(),
                    partition=0,
                    on_delivery=delivered,
                )
            self._producer.flush(STORE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - BufferError, KafkaException: all store errors
            raise store_error(f"Error writing to {self.topic}: {exc}") from exc
        if len(results) < len(records):
            raise store_error(f"Timed out writing to {self.topic}; is the broker at {self.settings.kafka_bootstrap_servers} up?")
        errors = [err for err, _p, _o in results if err is not None]
        if errors:
            raise store_error(f"Error writing to {self.topic}: {errors[0]}")
        targets: dict[int, int] = {}
        for _err, partition, offset in results:
            targets[partition] = max(targets.get(partition, 0), offset + 1)
        return targets

    async def write(self, records: list[tuple[dict, dict | None]]) -> None:
        """Produce records, wait for the broker's ack, then until they are read back into the state."""
        targets = await asyncio.get_running_loop().run_in_executor(None, self._produce_sync, records)
        await self._wait_applied(targets)


def schema_key(subject: str, version: int) -> dict:
    return {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}


def schema_value(sv: SchemaVersion) -> dict:
    value = {"subject": sv.subject, "version": sv.version, "id": sv.id, "schema": sv.schema}
    if sv.schema_type != "AVRO":
        value["schemaType"] = sv.schema_type
    value["deleted"] = sv.deleted
    return value


def config_key(subject: str | None) -> dict:
    return {"keytype": "CONFIG", "subject": subject, "magic": 0}


# --- HTTP ------------------------------------------------------------------------------------


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), status=status, content_type=CONTENT_TYPE
    )


def raw_schema_reply(text: str) -> web.Response:
    return web.Response(text=text, content_type=CONTENT_TYPE)


def error_reply(status: int, error_code: int, message: str) -> web.Response:
    return reply({"error_code": error_code, "message": message}, status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc.message)
        return error_reply(exc.status, exc.error_code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_reply(exc.status, exc.status, f"HTTP {exc.status} {exc.reason}")
    except Exception as exc:  # noqa: BLE001 - answer, log, keep serving
        log.exception("%s %s failed", request.method, request.path)
        return error_reply(500, 50001, f"Error in the schema registry: {exc}")


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _version(text: str) -> int | str:
    """A version path segment: 1..2^31-1, or "latest" (-1 too, as the real registry accepts)."""
    if text in ("latest", "-1"):
        return "latest"
    try:
        version = int(text)
    except ValueError:
        version = 0
    if not 1 <= version <= _MAX_VERSION:
        raise RegistryError(
            422,
            42202,
            f"The specified version '{text}' is not a valid version id. "
            'Allowed values are between [1, 2^31-1] and the string "latest"',
        )
    return version


def _schema_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise schema_not_found(text) from None


async def _body(request: web.Request) -> dict:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type and content_type not in ACCEPTED_CONTENT_TYPES:
        raise RegistryError(
            415,
            415,
            f"Unsupported content type '{content_type}'; send application/vnd.schemaregistry.v1+json"
            " or application/json",
        )
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise RegistryError(400, 400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RegistryError(400, 400, f"The request body must be a JSON object, got {type(body).__name__}")
    return body


async def _schema_from(request: web.Request) -> AvroSchema:
    body = await _body(request)
    schema_type = body.get("schemaType") or "AVRO"
    if schema_type != "AVRO":
        # what a Confluent registry answers for a type it has no provider for
        raise RegistryError(422, 42201, f"Invalid schema type {schema_type}")
    if body.get("references"):
        raise RegistryError(422, 42201, "Invalid schema: schema references are not supported by this registry")
    text = body.get("schema")
    if not isinstance(text, str) or not text.strip():
        raise RegistryError(422, 42201, 'Invalid schema: the request body needs a "schema" string (Avro JSON)')
    try:
        return avro_compat.parse(text)
    except InvalidSchemaError as exc:
        raise RegistryError(422, 42201, str(exc)) from None


def _version_body(sv: SchemaVersion) -> dict:
    body: dict[str, Any] = {"subject": sv.subject, "version": sv.version, "id": sv.id}
    if sv.schema_type != "AVRO":
        body["schemaType"] = sv.schema_type
    body["schema"] = sv.schema
    return body


class Registry:
    """The REST handlers over one :class:`KafkaStore`."""

    def __init__(self, store: KafkaStore) -> None:
        self.store = store

    @property
    def state(self) -> State:
        return self.store.state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),
            web.get("/subjects", self.list_subjects),
            web.get("/subjects/{subject}/versions", self.list_versions),
            web.post("/subjects/{subject}/versions", self.register),
            web.get("/subjects/{subject}/versions/{version}", self.get_version),
            web.get("/subjects/{subject}/versions/{version}/schema", self.get_version_schema),
            web.delete("/subjects/{subject}/versions/{version}", self.delete_version),
            web.post("/subjects/{subject}", self.lookup),
            web.delete("/subjects/{subject}", self.delete_subject),
            web.get("/schemas/types", self.schema_types),
            web.get("/schemas/ids/{id}", self.get_by_id),
            web.get("/schemas/ids/{id}/schema", self.get_by_id_schema),
            web.get("/schemas/ids/{id}/versions", self.get_id_versions),
            web.get("/schemas/ids/{id}/subjects", self.get_id_subjects),
            web.post("/compatibility/subjects/{subject}/versions/{version}", self.test_compatibility),
            web.post("/compatibility/subjects/{subject}/versions", self.test_compatibility_all),
            web.get("/config", self.get_global_config),
            web.get("/config/", self.get_global_config),
            web.put("/config", self.put_global_config),
            web.put("/config/", self.put_global_config),
            web.delete("/config", self.delete_global_config),
            web.get("/config/{subject}", self.get_subject_config),
            web.put("/config/{subject}", self.put_subject_config),
            web.delete("/config/{subject}", self.delete_subject_config),
        ]

    # -- lookups --
    def _live_versions(self, subject: str, deleted: bool = False) -> list[SchemaVersion]:
        versions = self.state.versions(subject, deleted)
        if not versions:
            raise subject_not_found(subject)
        return versions

    def _find_version(self, subject: str, version_text: str, deleted: bool = False) -> SchemaVersion:
        version = _version(version_text)
        versions = self._live_versions(subject, deleted)
        if version == "latest":
            return versions[-1]
        for sv in versions:
            if sv.version == version:
                return sv
        raise version_not_found(version)

    # -- handlers --
    async def root(self, request: web.Request) -> web.Response:
        return reply({})

    async def list_subjects(self, request: web.Request) -> web.Response:
        prefix = request.query.get("subjectPrefix", "")
        return reply([s for s in self.state.live_subjects(_flag(request, "deleted")) if s.startswith(prefix)])

    async def list_versions(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        return reply([sv.version for sv in self._live_versions(subject, _flag(request, "deleted"))])

    async def get_version(self, request: web.Request) -> web.Response:
        m = request.match_info
        return reply(_version_body(self._find_version(m["subject"], m["version"], _flag(request, "deleted"))))

    async def get_version_schema(self, request: web.Request) -> web.Response:
        m = request.match_info
        return raw_schema_reply(self._find_version(m["subject"], m["version"], _flag(request, "deleted")).schema)

    async def schema_types(self, request: web.Request) -> web.Response:
        return reply(["AVRO"])

    def _by_id(self, request: web.Request) -> SchemaVersion:
        schema_id = _schema_id(request.match_info["id"])
        sv = self.state.by_id(schema_id)
        if sv is None:
            raise schema_not_found(schema_id)
        return sv

    async def get_by_id(self, request: web.Request) -> web.Response:
        sv = self._by_id(request)
        body: dict[str, Any] = {}
        if sv.schema_type != "AVRO":
            body["schemaType"] = sv.schema_type
        body["schema"] = sv.schema
        return reply(body)

    async def get_by_id_schema(self, request: web.Request) -> web.Response:
        return raw_schema_reply(self._by_id(request).schema)

    def _id_usages(self, request: web.Request) -> list[SchemaVersion]:
        sv = self._by_id(request)
        deleted = _flag(request, "deleted")
        subject = request.query.get("subject")
        return sorted(
            (
                u
                for u in self.state.all_versions()
                if u.id == sv.id and (deleted or not u.deleted) and (subject is None or u.subject == subject)
            ),
            key=lambda u: (u.subject, u.version),
        )

    async def get_id_versions(self, request: web.Request) -> web.Response:
        return reply([{"subject": u.subject, "version": u.version} for u in self._id_usages(request)])

    async def get_id_subjects(self, request: web.Request) -> web.Response:
        return reply(sorted({u.subject for u in self._id_usages(request)}))

    async def lookup(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        schema = await _schema_from(request)
        for sv in reversed(self._live_versions(subject, _flag(request, "deleted"))):
            parsed = self.state.parsed(sv.schema) if sv.schema_type == "AVRO" else None
            if parsed is not None and parsed.canonical == schema.canonical:
                return reply(_version_body(sv))
        raise schema_not_found()

    async def register(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        schema = await _schema_from(request)
        async with self.store.write_lock:
            await self.store.catch_up()
            live = self.state.versions(subject)
            for sv in live:
                parsed = self.state.parsed(sv.schema) if sv.schema_type == "AVRO" else None
                if parsed is not None and parsed.canonical == schema.canonical:
                    return reply({"id": sv.id})
            level = self.state.level(subject)
            messages = self._violations(schema, live, level)
            if messages:
                raise RegistryError(
                    409,
                    409,
                    f'Schema being registered is incompatible with an earlier schema for subject "{subject}",'
                    f" details: [{'; '.join(messages)}]",
                )
            known_id = self.state.id_of(schema)
            schema_id = known_id or self.state.max_id + 1
            text = self.state.by_id(known_id).schema if known_id else schema.text  # one text per id
            existing = self.state.versions(subject, deleted=True)
            version = existing[-1].version + 1 if existing else 1
            sv = SchemaVersion(subject, version, schema_id, text, "AVRO", False)
            await self.store.write([(schema_key(subject, version), schema_value(sv))])
            log.info("registered %s version %d as id %d", subject, version, schema_id)
            return reply({"id": schema_id})

    def _violations(self, schema: AvroSchema, previous: list[SchemaVersion], level: str) -> list[str]:
        olds = [(sv, self.state.parsed(sv.schema)) for sv in previous if sv.schema_type == "AVRO"]
        olds = [(sv, parsed) for sv, parsed in olds if parsed is not None]
        violations = avro_compat.check_compatibility(schema, [p for _sv, p in olds], level)
        return [f"version {olds[v.previous_index][0].version}: {v}" for v in violations]

    def _compatibility_reply(self, request: web.Request, messages: list[str], level: str) -> web.Response:
        body: dict[str, Any] = {"is_compatible": not messages}
        if _flag(request, "verbose"):
            body["messages"] = messages + ([f"{{compatibility: '{level}'}}"] if messages else [])
        return reply(body)

    async def test_compatibility(self, request: web.Request) -> web.Response:
        m = request.match_info
        schema = await _schema_from(request)
        _version(m["version"])
        await self.store.catch_up()
        sv = self._find_version(m["subject"], m["version"])
        level = self.state.level(m["subject"])
        base = level.removesuffix("_TRANSITIVE")
        return self._compatibility_reply(request, self._violations(schema, [sv], base), level)

    async def test_compatibility_all(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        schema = await _schema_from(request)
        await self.store.catch_up()
        level = self.state.level(subject)
        return self._compatibility_reply(request, self._violations(schema, self.state.versions(subject), level), level)

    async def delete_subject(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        permanent = _flag(request, "permanent")
        async with self.store.write_lock:
            await self.store.catch_up()
            every = self.state.versions(subject, deleted=True)
            live = [sv for sv in every if not sv.deleted]
            if not every:
                raise subject_not_found(subject)
            if permanent:
                if live:
                    raise RegistryError(
                        404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
                    )
                records: list[tuple[dict, dict | None]] = [(schema_key(subject, sv.version), None) for sv in every]
                if subject in self.state.configs:
                    records.append((config_key(subject), None))
                await self.store.write(records)
                log.info("permanently deleted subject %s", subject)
                return reply([sv.version for sv in every])
            if not live:
                raise RegistryError(
                    404, 40404, f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
                )
            records = []
            for sv in live:
                gone = SchemaVersion(sv.subject, sv.version, sv.id, sv.schema, sv.schema_type, True)
                records.append((schema_key(subject, sv.version), schema_value(gone)))
            await self.store.write(records)
            log.info("soft-deleted subject %s", subject)
            return reply([sv.version for sv in live])

    async def delete_version(self, request: web.Request) -> web.Response:
        m = request.match_info
        subject, permanent = m["subject"], _flag(request, "permanent")
        version = _version(m["version"])
        async with self.store.write_lock:
            await self.store.catch_up()
            every = self.state.versions(subject, deleted=True)
            if not every:
                raise subject_not_found(subject)
            if version == "latest":
                candidates = every if permanent else [sv for sv in every if not sv.deleted]
                sv = candidates[-1] if candidates else None
            else:
                sv = next((sv for sv in every if sv.version == version), None)
            if sv is None:
                raise version_not_found(version)
            if permanent:
                if not sv.deleted:
                    raise RegistryError(
                        404,
                        40407,
                        f"Subject '{subject}' Version {sv.version} was not deleted first before being permanently deleted",
                    )
                await self.store.write([(schema_key(subject, sv.version), None)])
            else:
                if sv.deleted:
                    raise RegistryError(
                        404,
                        40406,
                        f"Subject '{subject}' Version {sv.version} was soft deleted. Set permanent=true to delete permanently",
                    )
                gone = SchemaVersion(sv.subject, sv.version, sv.id, sv.schema, sv.schema_type, True)
                await self.store.write([(schema_key(subject, sv.version), schema_value(gone))])
            return reply(sv.version)

    # -- config --
    async def _put_config(self, request: web.Request, subject: str | None) -> web.Response:
        body = await _body(request)
        level = body.get("compatibility")
        level = level.upper() if isinstance(level, str) else level
        if level not in avro_compat.LEVELS:
            raise RegistryError(
                422,
                42203,
                f"Invalid compatibility level {body.get('compatibility')!r}. Valid values are none, backward,"
                " forward, full, backward_transitive, forward_transitive, and full_transitive",
            )
        async with self.store.write_lock:
            await self.store.write([(config_key(subject), {"compatibilityLevel": level})])
        log.info("compatibility of %s set to %s", subject or "the registry", level)
        return reply({"compatibility": level})

    async def get_global_config(self, request: web.Request) -> web.Response:
        return reply({"compatibilityLevel": self.state.level(None)})

    async def put_global_config(self, request: web.Request) -> web.Response:
        return await self._put_config(request, None)

    async def delete_global_config(self, request: web.Request) -> web.Response:
        previous = self.state.level(None)
        if None in self.state.configs:
            async with self.store.write_lock:
                await self.store.write([(config_key(None), None)])
        return reply({"compatibilityLevel": previous})

    def _subject_config_missing(self, subject: str) -> RegistryError:
        return RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")

    async def get_subject_config(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        if subject in self.state.configs:
            return reply({"compatibilityLevel": self.state.configs[subject]})
        if _flag(request, "defaultToGlobal"):
            return reply({"compatibilityLevel": self.state.level(None)})
        raise self._subject_config_missing(subject)

    async def put_subject_config(self, request: web.Request) -> web.Response:
        return await self._put_config(request, request.match_info["subject"])

    async def delete_subject_config(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        if subject not in self.state.configs:
            raise self._subject_config_missing(subject)
        previous = self.state.configs[subject]
        async with self.store.write_lock:
            await self.store.write([(config_key(subject), None)])
        return reply({"compatibilityLevel": previous})


def basic_auth_middleware(user: str, password: str) -> Callable:
    """HTTP basic authentication, answered as a Confluent registry does (401, error_code 401)."""
    expected = f"{user}:{password}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Callable) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        given = b""
        if header[:6].lower() == "basic ":
            try:
                given = base64.b64decode(header[6:].strip(), validate=True)
            except ValueError:
                given = b""
        if not hmac.compare_digest(given, expected):
            response = error_reply(401, 401, "Unauthorized")
            response.headers["WWW-Authenticate"] = 'Basic realm="SchemaRegistry"'
            return response
        return await handler(request)

    return check


def make_app(store: KafkaStore, auth: tuple[str, str] | None = None) -> web.Application:
    """The registry; with ``auth`` (user, password) every request needs HTTP basic auth."""
    middlewares = [errors_middleware] if auth is None else [basic_auth_middleware(*auth), errors_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=8 * 1024 * 1024)
    app.add_routes(Registry(store).routes())
    return app


async def serve(settings: Settings) -> None:
    """Read `_schemas`, then answer on the registry address until SIGTERM or SIGINT."""
    store = KafkaStore(settings)
    await store.start()
    host, port = settings.registry_host_port
    auth = None
    if settings.schema_registry_username and settings.schema_registry_password:
        auth = (settings.schema_registry_username, settings.schema_registry_password.get_secret_value())
    runner = web.AppRunner(make_app(store, auth), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise StreamappError(
                f"schema registry: cannot listen on {host}:{port} ({exc.strerror});"
                " free the port or set STREAMAPP_SCHEMA_REGISTRY_URL"
            ) from exc
        log.info("schema registry listening on http://%s:%d (store: %s on %s)", host, port, store.topic,
                 settings.kafka_bootstrap_servers)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("schema registry stopping")
    finally:
        await runner.cleanup()
        await store.stop()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(get_settings()))
    except StreamappError as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    # Run the imported module's main, so log records carry "streamapp.stack.registry", not "__main__".
    from streamapp.stack.registry import main as _main

    _main()
