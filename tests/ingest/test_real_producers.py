"""The ingester against producers other people wrote: confluent-kafka (librdkafka) with each
compression codec and with transactions, and records our own producer would never send (a
tombstone without a key, a value over the dead-letter producer's limit), over the real
local broker.

What the local broker (tansu 0.6) allows: it holds back the records of an open transaction
from read_committed consumers until the commit, but it answers read_committed fetches with an
empty aborted-transaction list, so it hands aborted records to read_committed consumers
(librdkafka's as well as kafka-python's). The aborted case is therefore checked against what
the broker reports: aborted records must not be applied wherever it marks them aborted
(Apache Kafka does); with tansu that part cannot be observed, and the test says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import linr
from ingest import Ingester, snapshots
from ingest.messages import encode_delete, encode_upsert
from tests.ingest.conftest import Broker, random_vectors, read_topic, start, wait_for

confluent_kafka = pytest.importorskip("confluent_kafka")

D = 8


def producer(broker: Broker, **conf: Any) -> Any:
    return confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, **conf})


def produce_all(p: Any, topic: str, msgs: Sequence[tuple[bytes | None, bytes | None]]) -> list[Any]:
    """Send and wait for every delivery report; returns the delivered messages (offsets)."""
    delivered: list[Any] = []
    errors: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        (errors if err is not None else delivered).append(err or msg)

    for key, value in msgs:
        p.produce(topic, key=key, value=value, on_delivery=report)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors
    return delivered


def items(n: int, seed: int, start: int = 0) -> tuple[np.ndarray, list[Any]]:
    x = random_vectors(n, D, seed)
    return x, [encode_upsert(start + i, x[i], {"g": i % 3}) for i in range(n)]


@pytest.mark.partitions(1)
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_each_compression_codec_is_read(
    broker: Broker, topic: str, started: list[Ingester], codec: str
) -> None:
    x, msgs = items(300, seed=1)
    p = producer(broker, **{"compression.type": codec, "linger.ms": 20})
    delivered = produce_all(p, topic, msgs)
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic)
    last = max(m.offset() for m in delivered)
    wait_for(lambda: ing.caught_up({0: last}), what=f"{codec} batches applied")
    assert len(index) == 300 and ing.stats()["dead_lettered"] == 0
    for i in (0, 151, 299):
        item = index.get(i)
        assert item is not None and item.attributes == {"g": i % 3}
        np.testing.assert_array_equal(item.vector, x[i])


def _transactional(broker: Broker, tid: str) -> Any:
    p = producer(broker, **{"transactional.id": tid, "compression.type": "lz4"})
    p.init_transactions(30)
    return p


@pytest.mark.partitions(1)
def test_transactions_committed_applied_open_held_back_aborted_as_reported(
    broker: Broker, topic: str, started: list[Ingester]
) -> None:
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic)
    x, committed = items(5, seed=2)
    p = _transactional(broker, f"{topic}-tx")
    p.begin_transaction()
    produce_all(p, topic, committed)
    p.commit_transaction(30)
    wait_for(lambda: len(index) == 5, what="the committed transaction")

    # An open transaction: its records are in the log but must wait for the commit.
    _, held = items(5, seed=3, start=100)
    p.begin_transaction()
    delivered = produce_all(p, topic, held)
    assert max(m.offset() for m in delivered) >= 5
    plain = producer(broker)
    marker = produce_all(plain, topic, [encode_upsert(999, x[0])])[0]  # after the open txn
    # Read committed: nothing past the open transaction's first record, not even 999.
    wait_for(lambda: ing.caught_up({0: 4}), what="the records before the open transaction")
    time.sleep(1.5)  # many polls: the open transaction's records must still be held back
    assert sorted(index.ids()) == list(range(5)) and 999 not in index
    p.commit_transaction(30)
    wait_for(lambda: ing.caught_up({0: marker.offset()}), what="the records after the commit")
    assert sorted(index.ids()) == [*range(5), *range(100, 105), 999]

    # An aborted transaction: a replacement, a new item and a tombstone of a committed item.
    p.begin_transaction()
    aborted = [encode_upsert(0, -x[0], {"g": 9}), encode_upsert(500, x[1]), encode_delete(1)]
    produce_all(p, topic, aborted)
    p.abort_transaction(30)
    after = produce_all(plain, topic, [encode_upsert(998, x[2])])[0]
    wait_for(lambda: ing.caught_up({0: after.offset()}), what="records after the abort")
    assert ing.stats()["dead_lettered"] == 0  # control records are skipped, not bad messages
    if _broker_reports_aborted(broker, topic):
        assert 500 not in index and 1 in index
        item = index.get(0)
        assert item is not None and item.attributes == {"g": 0}
    else:  # tansu 0.6: aborted records reach read_committed consumers (see module docstring)
        assert 500 in index
    p.flush(5)


def _broker_reports_aborted(broker: Broker, topic: str) -> bool:
    """Does a read_committed librdkafka consumer see the aborted upsert of item 500?"""
    c = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"{topic}-probe",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        c.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
        keys = []
        for _ in range(40):
            m = c.poll(0.25)
            if m is not None and m.error() is None:
                keys.append(m.key())
            if b"998" in keys:
                break
        return b"500" not in keys
    finally:
        c.close()


@pytest.mark.partitions(1)
def test_null_key_tombstone_and_2mb_value_reach_the_dlq_and_later_records_apply(
    broker: Broker, topic: str, started: list[Ingester], tmp_path: Path
) -> None:
    x, good = items(20, seed=4)
    big = b'{"op": "upsert", "id": 7, "vector": [' + b"1.0, " * 400_000 + b"1.0]}"  # ~2 MB
    assert len(big) > 2_000_000
    p = producer(broker, **{"message.max.bytes": 8_000_000})
    produce_all(p, topic, good[:10])
    bad = produce_all(p, topic, [(None, None), (b"7", big)])
    last = produce_all(p, topic, good[10:])[-1]
    index = linr.Index(D, device="cpu")
    ing = start(
        started,
        index,
        broker,
        topic,
        snapshot_dir=tmp_path,
        snapshot_every_s=0.2,
        max_batch=7,
    )
    wait_for(lambda: ing.caught_up({0: last.offset()}), what="the records after the bad ones")
    assert len(index) == 20 and ing.stats()["dead_lettered"] == 2
    letters = read_topic(broker.bootstrap, f"{topic}.dlq", 2)
    by_offset = {int(dict(m.headers)["source.offset"]): m for m in letters}
    assert sorted(by_offset) == [m.offset() for m in bad]
    tomb = by_offset[bad[0].offset()]
    h = dict(tomb.headers)
    assert tomb.key is None and tomb.value == b""
    assert b"needs a key" in h["error"] and b"both null" in h["cut"]
    assert h["source.topic"] == topic.encode() and h["source.partition"] == b"0"
    cut = by_offset[bad[1].offset()]
    h = dict(cut.headers)
    assert cut.key == b"7" and big.startswith(cut.value) and len(cut.value) < len(big)
    assert f"value: {len(big)} bytes".encode() in h["cut"]
    assert b"dimension" in h["error"]
    # Offsets and snapshots moved past the bad records.
    wait_for(lambda: _snapshot_offset(tmp_path) == last.offset() + 1, what="a snapshot")
    assert ing.stats()["snapshot_errors"] == 0


def _snapshot_offset(d: Path) -> int | None:
    got = snapshots.load_latest(d, "cpu")
    return None if got is None else got[1].get(0)
