"""Faults the ingester must survive without skipping or re-applying anything: a broker that
comes back empty with the topic recreated, a snapshot with flipped bytes, a snapshot
directory that cannot be written for a while."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import linr
from ingest import Ingester, IngestSettings, snapshots
from ingest.messages import Record, encode_delete, encode_upsert
from ingest.topics import ensure_topic
from tests.ingest.conftest import Broker, Sender, free_port, random_vectors, start, wait_for
from tests.ingest.oracle import apply_one_by_one, index_state

D = 8


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test alone (it is restarted), on a port that stays the same."""
    (tmp_path / "tansu").mkdir()
    b = Broker(tmp_path / "tansu", free_port())
    b.start()
    try:
        yield b
    finally:
        b.stop()


def produce(broker: Broker, topic: str, msgs: list[Any]) -> list[Any]:
    s = Sender(broker.bootstrap, topic)
    try:
        futs = [s.send(k, v, partition=0) for k, v in msgs]
        s.producer.flush()
        return [f.get(timeout=10) for f in futs]  # RecordMetadata: the delivery offsets
    finally:
        s.close()


def upserts(ids: range, seed: int) -> list[Any]:
    x = random_vectors(len(ids), D, seed)
    return [encode_upsert(i, x[j], {"n": i}) for j, i in enumerate(ids)]


@pytest.mark.parametrize("policy", ["stop", "rebuild"])
def test_broker_restarting_empty_with_the_topic_recreated(
    own_broker: Broker, started: list[Ingester], tmp_path: Path, policy: str
) -> None:
    topic = "items"
    ensure_topic(own_broker.bootstrap, topic, 1)
    old = produce(own_broker, topic, upserts(range(300), seed=1))
    index = linr.Index(D, device="cpu")
    ing = start(
        started,
        index,
        own_broker,
        topic,
        on_log_reset=policy,
        snapshot_dir=tmp_path / "snaps",
        snapshot_every_s=0.2,
        retry_backoff_s=0.1,
        retry_backoff_max_s=0.5,
    )
    wait_for(lambda: ing.ready and ing.caught_up({0: old[-1].offset}), what="the old log")
    assert len(index) == 300

    own_broker.stop()  # tansu keeps everything in memory: it comes back empty
    wait_for(lambda: ing.stats()["outages"] >= 1, what="the outage to be counted")
    own_broker.start()
    ensure_topic(own_broker.bootstrap, topic, 1)
    new = produce(own_broker, topic, upserts(range(1000, 1500), seed=2))
    assert new[-1].offset == 499  # offsets 300..499 of the new log exist: nothing may skip

    if policy == "stop":
        wait_for(lambda: ing.stats()["stopped"] is not None, what="ingestion to stop")
        stats = ing.stats()
        # Seen gone (no such topic) or recreated (a new topic id), as the timing falls.
        assert "recreated" in stats["stopped"] or "gone" in stats["stopped"]
        assert not ing.ready and not stats["ready"]
        assert sorted(index.ids()) == list(range(300))  # still serving the old index
    else:
        wait_for(lambda: ing.caught_up({0: new[-1].offset}), what="the rebuild")
        assert sorted(index.ids()) == list(range(1000, 1500))
        wait_for(lambda: ing.ready, what="ready on the new log")
        assert ing.stats()["rebuilds"] == 1
        wait_for(
            lambda: (
                (got := snapshots.load_latest(tmp_path / "snaps", "cpu")) is not None
                and got[1] == {0: 500}
            ),
            what="a snapshot of the new log",
        )


@pytest.mark.partitions(1)
def test_a_snapshot_with_flipped_bytes_is_never_loaded(
    broker: Broker, topic: str, tmp_path: Path
) -> None:
    """Two snapshots along a log; the newest gets bytes flipped inside its tensors (size
    unchanged). Loading skips it for the older one, and replaying the log from there gives
    exactly the one-message-at-a-time state of the whole log."""
    x = random_vectors(400, D, seed=5)
    msgs: list[tuple[bytes, bytes | None]]
    msgs = [encode_upsert(i % 150, x[i], {"n": i}, version=i) for i in range(400)]
    msgs += [encode_delete(i, version=1000 + i) for i in range(0, 150, 7)]
    records = [Record(0, i, k, v) for i, (k, v) in enumerate(msgs)]
    snap = tmp_path / "snaps"
    index = linr.Index(D, device="cpu")
    apply_one_by_one(index, records[:200])
    snapshots.write_snapshot(index, snap, {0: 200}, topic=topic)
    apply_one_by_one(index, records[200:300])
    newest = snapshots.write_snapshot(index, snap, {0: 300}, topic=topic)
    tensors = newest / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    for pos in range(len(data) - 4096, len(data) - 64, 97):  # inside the tensor data
        data[pos] ^= 0x5A
    tensors.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        snapshots.check_snapshot(newest)

    got = snapshots.load_latest(snap, "cpu")
    assert got is not None and got[1] == {0: 200}
    loaded = got[0]
    last = produce(broker, topic, msgs)[-1]
    ing = Ingester(loaded, IngestSettings(bootstrap=broker.bootstrap, topic=topic))
    ing.start()
    try:
        wait_for(lambda: ing.caught_up({0: last.offset}), what="the replay")
    finally:
        ing.stop(final_snapshot=False)
    oracle = linr.Index(D, device="cpu")
    apply_one_by_one(oracle, records)
    assert index_state(loaded) == index_state(oracle)


@pytest.mark.partitions(1)
def test_an_unwritable_snapshot_dir_is_counted_and_ingestion_goes_on(
    broker: Broker, topic: str, tmp_path: Path, started: list[Ingester]
) -> None:
    snap = tmp_path / "snaps"
    index = linr.Index(D, device="cpu")
    batch = 50
    ing = start(
        started,
        index,
        broker,
        topic,
        snapshot_dir=snap,
        snapshot_every_s=0.1,
        snapshot_retry_s=0.3,
        max_batch=batch,
    )
    produce(broker, topic, upserts(range(100), seed=6))
    wait_for(lambda: ing.stats()["snapshots_written"] >= 1, what="a first snapshot")

    # A file in the way (the tests run as root, so permissions would not stop the writer).
    shutil.move(snap, tmp_path / "aside")
    snap.write_text("not a directory")
    errors_before = ing.stats()["snapshot_errors"]
    sent = 100
    for round_ in range(8):
        last = produce(broker, topic, upserts(range(sent, sent + 30), seed=7 + round_))[-1]
        sent += 30
        after = {0: last.offset}
        wait_for(lambda: ing.caught_up(after), 5, "ingestion while snapshots fail")  # noqa: B023
        assert ing.stats()["lag"] < batch
    stats = ing.stats()
    assert stats["snapshot_errors"] > errors_before and "snapshot" not in str(stats["last_error"])
    assert "FileExistsError" in str(stats["last_snapshot_error"]) or stats["last_snapshot_error"]
    assert stats["errors"] == 0 and len(index) == sent

    snap.unlink()
    shutil.move(tmp_path / "aside", snap)
    written = stats["snapshots_written"]
    wait_for(lambda: ing.stats()["snapshots_written"] > written, what="snapshots to resume")
    got = snapshots.load_latest(snap, "cpu")
    assert got is not None and got[1] == {0: sent} and len(got[0]) == sent
    assert np.array_equal(sorted(got[0].ids()), np.arange(sent))
