"""The local schema registry against the real clients: python-schema-registry-client,
confluent-kafka (client, AvroSerializer/AvroDeserializer through the broker), and raw HTTP
for the exact error bodies ClickHouse and the clients rely on.

Subjects and record names carry a uuid: the broker and its `_schemas` topic are shared.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from schema_registry.client import AsyncSchemaRegistryClient, SchemaRegistryClient
from schema_registry.client.errors import ClientError

from streamapp.settings import get_settings
from tests.integration.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


# --- the registry process -------------------------------------------------------------




class RegistryProcess:
    """``python -m streamapp.stack.registry`` on a free port, with its own STREAMAPP_HOME."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = env
        self.auth = None
        if env.get("STREAMAPP_SCHEMA_REGISTRY_USERNAME"):
            self.auth = (env["STREAMAPP_SCHEMA_REGISTRY_USERNAME"], env["STREAMAPP_SCHEMA_REGISTRY_PASSWORD"])
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = home / "registry.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        env = {**os.environ, "STREAMAPP_HOME": str(self.home), "STREAMAPP_SCHEMA_REGISTRY_URL": self.url, **self.env}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamapp.stack.registry"], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"registry exited {self.proc.returncode}:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/subjects", timeout=1, auth=self.auth).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"registry did not answer within {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture(scope="module")
def registry_url(stack) -> str:
    """The local stack's registry (the restart test runs a process of its own)."""
    return stack.schema_registry_url.rstrip("/")


# --- helpers ---------------------------------------------------------------------------


def unique(prefix: str = "test-registry") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def trade_schema(name: str, *extra_fields: dict) -> dict:
    return {
        "type": "record",
        "name": name,
        "namespace": "streamapp.test",
        "fields": [
            {"name": "symbol", "type": "string"},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 8}},
            {"name": "trade_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            *extra_fields,
        ],
    }


def record_name() -> str:
    return f"Trade_{uuid.uuid4().hex[:12]}"


def post(url: str, body, content_type: str = CONTENT_TYPE, **params) -> httpx.Response:
    import json

    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(url, content=data, headers={"Content-Type": content_type}, params=params, timeout=20)


def schema_body(schema: dict) -> dict:
    import json

    return {"schema": json.dumps(schema)}


def assert_error(response: httpx.Response, status: int, error_code: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(CONTENT_TYPE)
    body = response.json()
    assert body["error_code"] == error_code, body
    for fragment in fragments:
        assert fragment in body["message"], body


# --- python-schema-registry-client ----------------------------------------------------------


def test_python_client_register_fetch_lookup(registry_url: str) -> None:
    client = SchemaRegistryClient(url=registry_url)
    subject, other = unique(), unique()
    schema = trade_schema(record_name())

    schema_id = client.register(subject, schema)
    assert client.register(subject, schema) == schema_id
    assert SchemaRegistryClient(url=registry_url).register(subject, schema) == schema_id  # no client cache
    assert SchemaRegistryClient(url=registry_url).register(other, schema) == schema_id  # same schema, same id

    assert client.get_by_id(schema_id).raw_schema == schema
    found = SchemaRegistryClient(url=registry_url).check_version(subject, schema)
    assert (found.schema_id, found.version) == (schema_id, 1)
    latest = client.get_schema(subject)
    assert (latest.schema_id, latest.version, latest.schema.raw_schema) == (schema_id, 1, schema)
    assert client.get_versions(subject) == [1]
    assert subject in client.get_subjects() and other in client.get_subjects()
    versions = client.get_schema_subject_versions(schema_id)
    assert {(v.subject, v.version) for v in versions} >= {(subject, 1), (other, 1)}
    assert client.check_version(unique(), schema) is None  # unknown subject: not registered


async def test_async_python_client_register_and_fetch(registry_url: str) -> None:
    client = AsyncSchemaRegistryClient(url=registry_url)
    subject = unique()
    schema = trade_schema(record_name())
    schema_id = await client.register(subject, schema)
    assert (await client.get_by_id(schema_id)).raw_schema == schema
    assert (await client.get_schema(subject, version=1)).schema_id == schema_id


# --- confluent-kafka ---------------------------------------------------------------------------


def test_confluent_client_register_fetch_lookup(registry_url: str) -> None:
    import json

    client = ConfluentClient({"url": registry_url})
    subject = unique()
    schema = Schema(json.dumps(trade_schema(record_name())), "AVRO")

    schema_id = client.register_schema(subject, schema)
    assert ConfluentClient({"url": registry_url}).register_schema(subject, schema) == schema_id
    fetched = ConfluentClient({"url": registry_url}).get_schema(schema_id)
    assert json.loads(fetched.schema_str) == json.loads(schema.schema_str)
    looked_up = ConfluentClient({"url": registry_url}).lookup_schema(subject, schema)
    assert (looked_up.schema_id, looked_up.version) == (schema_id, 1)
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, subject)
    assert client.get_version(subject, 1).schema_id == schema_id
    assert client.get_versions(subject) == [1]
    assert subject in client.get_subjects()
    assert client.get_schema_types() == ["AVRO"]

    with pytest.raises(SchemaRegistryError) as info:
        ConfluentClient({"url": registry_url}).lookup_schema(subject, Schema(json.dumps(trade_schema(record_name())), "AVRO"))
    assert (info.value.http_status_code, info.value.error_code) == (404, 40403)


def test_avro_serializer_round_trip_through_the_broker(registry_url: str) -> None:
    import json

    settings = get_settings()
    topic = unique("test-registry-topic")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    try:
        client = ConfluentClient({"url": registry_url})
        schema_str = json.dumps(trade_schema(record_name()))
        serializer = AvroSerializer(client, schema_str)
        deserializer = AvroDeserializer(ConfluentClient({"url": registry_url}))  # a cold cache: fetches by id
        value = {
            "symbol": "BTC/USDT",
            "price": Decimal("67123.45000001"),
            "trade_time": dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc),
        }
        payload = serializer(value, SerializationContext(topic, MessageField.VALUE))
        schema_id = client.get_latest_version(f"{topic}-value").schema_id
        assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == schema_id

        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        producer.produce(topic, value=payload)
        assert producer.flush(10) == 0
        consumer = Consumer(
            {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": unique(), "auto.offset.reset": "earliest"}
        )
        consumer.subscribe([topic])
        try:
            msg = None
            deadline = time.monotonic() + 30
            while msg is None and time.monotonic() < deadline:
                msg = consumer.poll(1)
                if msg is not None and msg.error():
                    msg = None
            assert msg is not None, "the produced record did not come back"
            decoded = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
        finally:
            consumer.close()
        assert decoded == value
    finally:
        admin.delete_topics([topic])


# --- compatibility -------------------------------------------------------------------------------


def test_compatibility_check_and_incompatible_registration(registry_url: str) -> None:
    client = SchemaRegistryClient(url=registry_url)
    subject, name = unique(), record_name()
    v1 = trade_schema(name)
    compatible = trade_schema(name, {"name": "side", "type": ["null", "string"], "default": None})
    incompatible = trade_schema(name, {"name": "quantity", "type": "string"})
    client.register(subject, v1)

    assert client.test_compatibility(subject, compatible) is True
    assert client.test_compatibility(subject, incompatible) is False
    verbose = client.test_compatibility(subject, incompatible, verbose=True)
    assert verbose["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m and "quantity" in m for m in verbose["messages"])

    url = f"{registry_url}/compatibility/subjects/{subject}/versions/1"
    response = post(url, schema_body(compatible))
    assert response.status_code == 200 and response.json() == {"is_compatible": True}
    assert ConfluentClient({"url": registry_url}).test_compatibility(subject, Schema(schema_body(incompatible)["schema"], "AVRO")) is False

    response = post(f"{registry_url}/subjects/{subject}/versions", schema_body(incompatible))
    assert_error(response, 409, 409, f'subject "{subject}"', "READER_FIELD_MISSING_DEFAULT_VALUE", "quantity")
    with pytest.raises(ClientError, match="Incompatible schema"):
        SchemaRegistryClient(url=registry_url).register(subject, incompatible)

    second = client.register(subject, compatible)
    assert second != client.get_schema(subject, version=1).schema_id
    assert client.get_versions(subject) == [1, 2]


def test_config_get_and_put(registry_url: str) -> None:
    subject, name = unique(), record_name()
    client = ConfluentClient({"url": registry_url})

    global_level = httpx.get(f"{registry_url}/config").json()["compatibilityLevel"]
    assert global_level in ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")
    try:
        assert client.set_compatibility(level="FULL_TRANSITIVE") == {"compatibility": "FULL_TRANSITIVE"}
        assert client.get_compatibility() == "FULL_TRANSITIVE"
    finally:  # the topic is shared: put the global level back at once
        client.set_compatibility(level=global_level)
    assert client.get_compatibility() == global_level

    assert_error(httpx.get(f"{registry_url}/config/{subject}"), 404, 40408, subject)
    assert httpx.get(f"{registry_url}/config/{subject}", params={"defaultToGlobal": "true"}).json() == {
        "compatibilityLevel": global_level
    }
    py_client = SchemaRegistryClient(url=registry_url)
    assert py_client.update_compatibility("NONE", subject) is True
    assert py_client.get_compatibility(subject) == "NONE"
    assert client.get_compatibility(subject) == "NONE"

    # NONE lets an otherwise incompatible schema in
    py_client.register(subject, trade_schema(name))
    py_client.register(subject, trade_schema(name, {"name": "quantity", "type": "string"}))
    assert py_client.get_versions(subject) == [1, 2]

    response = httpx.put(f"{registry_url}/config/{subject}", json={"compatibility": "SIDEWAYS"})
    assert_error(response, 422, 42203, "Invalid compatibility level", "backward_transitive")
    response = httpx.put(f"{registry_url}/config/{subject}", json={"compatibility": "forward"})
    assert response.json() == {"compatibility": "FORWARD"}


# --- errors ------------------------------------------------------------------------------------------


def test_invalid_schema_is_42201(registry_url: str) -> None:
    subject = unique()
    response = post(f"{registry_url}/subjects/{subject}/versions", {"schema": '{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}'})
    assert_error(response, 422, 42201, "Invalid schema", "nope")
    response = post(f"{registry_url}/subjects/{subject}/versions", {"schema": "{not json"})
    assert_error(response, 422, 42201, "Invalid schema")
    response = post(f"{registry_url}/subjects/{subject}/versions", {"schema": 'syntax = "proto3";', "schemaType": "PROTOBUF"})
    assert_error(response, 422, 42201, "Invalid schema type PROTOBUF")
    response = post(f"{registry_url}/subjects/{subject}/versions", {"schemaa": "{}"})
    assert_error(response, 422, 42201, '"schema"')
    with pytest.raises(SchemaRegistryError) as info:
        ConfluentClient({"url": registry_url}).register_schema(subject, Schema('{"type":"enum","name":"E","symbols":["A","A"]}', "AVRO"))
    assert (info.value.http_status_code, info.value.error_code) == (422, 42201)


def test_unknown_subject_version_and_id(registry_url: str) -> None:
    subject = unique()
    assert_error(httpx.get(f"{registry_url}/subjects/{subject}/versions"), 404, 40401, subject)
    assert_error(httpx.get(f"{registry_url}/subjects/{subject}/versions/latest"), 404, 40401, subject)
    assert_error(post(f"{registry_url}/subjects/{subject}", schema_body(trade_schema(record_name()))), 404, 40401)
    assert_error(httpx.get(f"{registry_url}/schemas/ids/2000000000"), 404, 40403, "2000000000")
    with pytest.raises(SchemaRegistryError) as info:
        ConfluentClient({"url": registry_url}).get_schema(2000000001)
    assert (info.value.http_status_code, info.value.error_code) == (404, 40403)

    SchemaRegistryClient(url=registry_url).register(subject, trade_schema(record_name()))
    assert_error(httpx.get(f"{registry_url}/subjects/{subject}/versions/7"), 404, 40402, "7")
    assert_error(httpx.get(f"{registry_url}/subjects/{subject}/versions/zero"), 422, 42202, "zero")
    assert_error(httpx.get(f"{registry_url}/subjects/{subject}/versions/0"), 422, 42202)


def test_malformed_requests_get_clear_errors_and_the_server_keeps_answering(registry_url: str) -> None:
    subject = unique()
    response = post(f"{registry_url}/subjects/{subject}/versions", "{this is not json")
    assert_error(response, 400, 400, "not valid JSON")
    response = post(f"{registry_url}/subjects/{subject}/versions", "[1, 2]", content_type="application/json")
    assert_error(response, 400, 400, "JSON object")
    response = post(f"{registry_url}/subjects/{subject}/versions", "schema=x", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, 415, "application/x-www-form-urlencoded")
    assert_error(httpx.get(f"{registry_url}/no/such/path"), 404, 404)
    assert_error(httpx.patch(f"{registry_url}/subjects"), 405, 405)

    assert httpx.get(f"{registry_url}/").json() == {}
    for content_type in (CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json"):
        response = post(f"{registry_url}/subjects/{unique()}/versions", schema_body(trade_schema(record_name())), content_type)
        assert response.status_code == 200, response.text


# --- other endpoints ------------------------------------------------------------------------------


def test_schema_endpoints_clickhouse_and_tools_use(registry_url: str) -> None:
    import json

    subject = unique()
    schema = trade_schema(record_name())
    schema_id = SchemaRegistryClient(url=registry_url).register(subject, schema)

    response = httpx.get(f"{registry_url}/schemas/ids/{schema_id}")  # what AvroConfluent asks
    assert response.status_code == 200 and response.headers["content-type"].startswith(CONTENT_TYPE)
    assert json.loads(response.json()["schema"]) == schema
    assert httpx.get(f"{registry_url}/schemas/ids/{schema_id}/schema").json() == schema
    assert {"subject": subject, "version": 1} in httpx.get(f"{registry_url}/schemas/ids/{schema_id}/versions").json()
    assert httpx.get(f"{registry_url}/subjects/{subject}/versions/1/schema").json() == schema
    assert httpx.get(f"{registry_url}/schemas/types").json() == ["AVRO"]
    body = httpx.get(f"{registry_url}/subjects/{subject}/versions/latest").json()
    assert body == {"subject": subject, "version": 1, "id": schema_id, "schema": json.dumps(schema, separators=(",", ":"))}


def test_soft_and_permanent_delete(registry_url: str) -> None:
    subject, name = unique(), record_name()
    client = SchemaRegistryClient(url=registry_url)
    first = client.register(subject, trade_schema(name))
    client.register(subject, trade_schema(name, {"name": "side", "type": "string", "default": "buy"}))

    assert_error(httpx.delete(f"{registry_url}/subjects/{subject}", params={"permanent": "true"}), 404, 40405)
    assert httpx.delete(f"{registry_url}/subjects/{subject}/versions/2").json() == 2
    assert httpx.get(f"{registry_url}/subjects/{subject}/versions").json() == [1]
    assert httpx.get(f"{registry_url}/subjects/{subject}/versions", params={"deleted": "true"}).json() == [1, 2]
    assert httpx.delete(f"{registry_url}/subjects/{subject}").json() == [1]
    assert_error(httpx.get(f"{registry_url}/subjects/{subject}/versions"), 404, 40401)
    assert subject not in httpx.get(f"{registry_url}/subjects").json()
    assert subject in httpx.get(f"{registry_url}/subjects", params={"deleted": "true"}).json()
    assert httpx.get(f"{registry_url}/schemas/ids/{first}").status_code == 200  # soft-deleted ids still resolve

    assert httpx.delete(f"{registry_url}/subjects/{subject}", params={"permanent": "true"}).json() == [1, 2]
    assert subject not in httpx.get(f"{registry_url}/subjects", params={"deleted": "true"}).json()
    assert_error(httpx.delete(f"{registry_url}/subjects/{subject}"), 404, 40401)


# --- restart -----------------------------------------------------------------------------------------


def test_ids_versions_and_config_survive_a_restart(stack, tmp_path: Path) -> None:
    import json

    registry = RegistryProcess(tmp_path)
    registry.start()
    try:
        subject = unique()
        schema = trade_schema(record_name())
        schema_id = SchemaRegistryClient(url=registry.url).register(subject, schema)
        assert httpx.put(f"{registry.url}/config/{subject}", json={"compatibility": "FULL"}).status_code == 200

        registry.stop()
        registry.start()

        response = httpx.get(f"{registry.url}/schemas/ids/{schema_id}")
        assert response.status_code == 200 and json.loads(response.json()["schema"]) == schema
        assert httpx.get(f"{registry.url}/subjects/{subject}/versions").json() == [1]
        assert httpx.get(f"{registry.url}/config/{subject}").json() == {"compatibilityLevel": "FULL"}
        again = SchemaRegistryClient(url=registry.url).register(subject, schema)
        assert again == schema_id
        newer = SchemaRegistryClient(url=registry.url).register(unique(), trade_schema(record_name()))
        assert newer > schema_id
    finally:
        registry.stop()
    assert "listening on" in registry.log.read_text()


# --- store errors --------------------------------------------------------------------------------


async def test_store_errors_answer_50001_and_the_server_keeps_serving() -> None:
    """A registry whose broker is gone answers writes with 50001 and still serves reads."""
    from aiohttp.test_utils import TestClient, TestServer

    from streamapp.settings import Settings
    from streamapp.stack.registry import KafkaStore, make_app

    store = KafkaStore(Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}"))  # nothing listens there
    store.open_clients(message_timeout_ms=1500)
    async with TestClient(TestServer(make_app(store))) as client:
        response = await client.put("/config", json={"compatibility": "FULL"})
        assert response.status == 500
        body = await response.json(content_type=None)
        assert body["error_code"] == 50001 and "_schemas" in body["message"], body

        response = await client.post("/subjects/x/versions", json=schema_body(trade_schema(record_name())))
        assert response.status == 500
        assert (await response.json(content_type=None))["error_code"] == 50001

        response = await client.get("/")
        assert response.status == 200 and await response.json(content_type=None) == {}
        assert await (await client.get("/config")).json(content_type=None) == {"compatibilityLevel": "BACKWARD"}
    await store.stop()


# --- what the registry supports, auth, speed (issue 11) -------------------------------------------


@pytest.mark.parametrize(
    ("schema_type", "text"),
    [("JSON", '{"type": "object", "properties": {"a": {"type": "string"}}}'), ("PROTOBUF", 'syntax = "proto3";')],
)
def test_json_schema_and_protobuf_get_the_confluent_unknown_type_error(registry_url: str, schema_type, text) -> None:
    client = ConfluentClient({"url": registry_url})
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(unique(), Schema(text, schema_type))
    error = info.value
    assert (error.http_status_code, error.error_code) == (422, 42201)
    assert error.error_message == f"Invalid schema type {schema_type}"


def test_registry_with_basic_auth_refuses_requests_without_it(stack, tmp_path: Path) -> None:
    registry = RegistryProcess(
        tmp_path, STREAMAPP_SCHEMA_REGISTRY_USERNAME="reg", STREAMAPP_SCHEMA_REGISTRY_PASSWORD="pw:1"
    )
    registry.start()
    try:
        assert_error(httpx.get(f"{registry.url}/subjects"), 401, 401, "Unauthorized")
        assert_error(httpx.get(f"{registry.url}/subjects", auth=("reg", "nope")), 401, 401, "Unauthorized")
        client = ConfluentClient({"url": registry.url, "basic.auth.user.info": "reg:pw:1"})
        assert isinstance(client.get_subjects(), list)
        wrong = ConfluentClient({"url": registry.url, "basic.auth.user.info": "reg:nope"})
        with pytest.raises(SchemaRegistryError) as info:
            wrong.get_subjects()
        assert info.value.http_status_code == 401
    finally:
        registry.stop()


def test_requests_through_the_confluent_client_stay_fast(registry_url: str) -> None:
    """Median time per call, each on a fresh subject (no client cache), 10 rounds."""
    client = ConfluentClient({"url": registry_url})
    timings: dict[str, list[float]] = {"register": [], "lookup": [], "get_by_id": [], "delete": []}
    for _ in range(10):
        subject, schema = unique(), Schema(json_text(trade_schema(record_name())), "AVRO")
        started = time.perf_counter()
        schema_id = client.register_schema(subject, schema)
        timings["register"].append(time.perf_counter() - started)
        fresh = ConfluentClient({"url": registry_url})
        started = time.perf_counter()
        fresh.lookup_schema(subject, schema)
        timings["lookup"].append(time.perf_counter() - started)
        started = time.perf_counter()
        fresh.get_schema(schema_id)
        timings["get_by_id"].append(time.perf_counter() - started)
        started = time.perf_counter()
        client.delete_subject(subject)
        timings["delete"].append(time.perf_counter() - started)
    medians = {name: sorted(values)[len(values) // 2] * 1000 for name, values in timings.items()}
    print("registry median ms:", {name: round(ms, 1) for name, ms in medians.items()})
    assert all(ms < 100 for ms in medians.values()), medians


def json_text(schema: dict) -> str:
    import json

    return json.dumps(schema)


# --- streamapp's own registration (streamapp.clients.registry) ------------------------------------


async def test_register_trade_schema_authenticates_with_the_settings_credentials(stack, tmp_path: Path) -> None:
    from streamapp.clients.registry import register_trade_schema
    from streamapp.errors import StreamappError
    from streamapp.settings import Settings

    registry = RegistryProcess(
        tmp_path, STREAMAPP_SCHEMA_REGISTRY_USERNAME="reg", STREAMAPP_SCHEMA_REGISTRY_PASSWORD="pw:1"
    )
    registry.start()
    try:
        topic = unique("market.test")
        settings = Settings(schema_registry_url=registry.url, schema_registry_username="reg",
                            schema_registry_password="pw:1")
        schema_id = await register_trade_schema(settings, topic)
        assert await register_trade_schema(settings, topic) == schema_id  # the same schema: the same id
        stored = httpx.get(f"{registry.url}/subjects/{topic}-value/versions/1", auth=("reg", "pw:1")).json()
        assert stored["id"] == schema_id

        wrong = Settings(schema_registry_url=registry.url, schema_registry_username="reg",
                         schema_registry_password="nope")
        with pytest.raises(StreamappError, match=r"registering the Trade schema .* \(HTTP 401\)"):
            await register_trade_schema(wrong, topic)
    finally:
        registry.stop()


async def test_register_trade_schema_without_a_registry_is_one_clear_error() -> None:
    from streamapp.clients.registry import register_trade_schema
    from streamapp.errors import StreamappError
    from streamapp.settings import Settings

    settings = Settings(schema_registry_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(StreamappError, match="cannot reach the schema registry at http://127.0.0.1:"):
        await register_trade_schema(settings, unique("market.test"))
