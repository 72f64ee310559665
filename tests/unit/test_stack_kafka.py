"""The local broker's set-up that needs no broker: its KRaft cluster id."""

from __future__ import annotations

import base64
import uuid

from streamapp.stack.kafka import new_cluster_id

# URL-safe base64 of these bytes starts with "-" (its first six bits are 62).
DASHED = uuid.UUID(bytes=b"\xf8" + bytes(15))
PLAIN = uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF)


def test_a_cluster_id_starting_with_a_dash_is_drawn_again():
    # kafka-storage's parser takes "-..." for an option: `stack up` failed about once in 64 fresh starts.
    assert base64.urlsafe_b64encode(DASHED.bytes).decode().startswith("-")
    draws = iter([DASHED, DASHED, PLAIN])
    assert new_cluster_id(lambda: next(draws)) == "ASNFZ4mrze8BI0VniavN7w"


def test_a_cluster_id_is_22_url_safe_characters_of_a_uuid():
    for _ in range(2000):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_random_draws_do_start_with_a_dash_sometimes():
    """The case above is real: among 2,000 random UUIDs some encode with a leading dash (p ≈ 1/64)."""
    encoded = (base64.urlsafe_b64encode(uuid.uuid4().bytes).decode() for _ in range(2000))
    assert any(text.startswith("-") for text in encoded)
