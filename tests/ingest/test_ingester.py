"""The ingester end to end over a real broker: produce, wait for readiness, search."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import linr
from ingest import Ingester, snapshots
from ingest.messages import encode_delete, encode_upsert
from tests.ingest.conftest import Broker, Sender, random_vectors, read_topic, start, wait_for

D = 16
LANGS = ["en", "fr", "de", "ja"]


def attrs_of(i: int) -> dict[str, Any]:
    return {"lang": LANGS[i % 4], "ts": 1000 + i, "tags": ["a"] if i % 3 == 0 else ["b"]}


def exact_ids(x: np.ndarray, ids: list[int], q: np.ndarray, k: int, keep: np.ndarray) -> list:
    """Exact top-k ids over the items where `keep` is True (linr.knn, float64)."""
    mask = torch.from_numpy(np.broadcast_to(keep, (q.shape[0], len(ids))).copy())
    _, idx = linr.knn(torch.from_numpy(q), torch.from_numpy(x), k, mask=mask)
    return [[ids[j] for j in row if j >= 0] for row in idx.tolist()]


def test_produced_items_are_searchable_and_equal_exact_search(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester]
) -> None:
    n = 1500
    x = random_vectors(n, D, seed=1)
    sender.send_all([encode_upsert(i, x[i], attrs_of(i), b64=i % 2 == 0) for i in range(n)])
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic, max_batch=400)
    assert not ing.ready
    wait_for(lambda: ing.ready, what="ready")
    assert len(index) == n  # ready means everything produced before start is applied
    stats = ing.stats()
    assert stats["applied"] == n and stats["dead_lettered"] == 0 and stats["lag"] == 0
    assert sum(stats["offsets"].values()) == n
    assert stats["freshness_ms"]["p50"] is not None

    q = random_vectors(20, D, seed=2)
    ids = list(range(n))
    got = index.search(q, k=10)
    assert got.ids == exact_ids(x, ids, q, 10, np.ones(n, bool))
    keep = np.array([attrs_of(i)["lang"] == "fr" and attrs_of(i)["ts"] >= 1500 for i in ids])
    got = index.search(q, k=10, filter='lang == "fr" and ts >= 1500')
    assert got.ids == exact_ids(x, ids, q, 10, keep)


def test_deletes_tombstones_and_updates(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester]
) -> None:
    x = random_vectors(60, D, seed=3)
    msgs: list[tuple[bytes | None, bytes | None]]
    msgs = [encode_upsert(i, x[i], attrs_of(i)) for i in range(50)]
    msgs += [encode_delete(i) for i in range(0, 10)]  # tombstones
    msgs += [encode_delete(i, tombstone=False) for i in range(10, 20)]  # {"op": "delete"}
    msgs += [encode_upsert(i, x[50 + i - 20], {"lang": "xx"}) for i in range(20, 30)]  # replace
    msgs += [encode_upsert(5, x[55])]  # back after its tombstone
    sender.send_all(msgs)
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic)
    wait_for(lambda: ing.ready, what="ready")
    assert sorted(index.ids()) == [5, *range(20, 50)]
    for i in range(20, 30):
        item = index.get(i)
        assert item is not None and item.attributes == {"lang": "xx"}
        np.testing.assert_array_equal(item.vector, x[50 + i - 20])
    item = index.get(5)
    assert item is not None and item.attributes == {}
    np.testing.assert_array_equal(item.vector, x[55])
    # Messages that arrive after readiness are applied too.
    sender.send_all([encode_delete(5), encode_upsert(99, x[0])])
    wait_for(lambda: 5 not in index and 99 in index, what="live delete and insert")


@pytest.mark.partitions(1)
def test_versions_newer_applied_older_ignored(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester]
) -> None:
    v = [np.full(D, float(i), np.float32) for i in range(10)]
    sender.send_all(
        [
            encode_upsert(1, v[5], {"v": 5}, version=5),
            encode_upsert(1, v[3], {"v": 3}, version=3),  # older: ignored
            encode_upsert(2, v[1], {"v": 1}, version=1),
            encode_upsert(2, v[7], {"v": 7}, version=7),  # newer: applied
            encode_upsert(3, v[4], version=4),
            encode_delete(3, version=2),  # delete older than the item: ignored
            encode_upsert(4, v[4], version=4),
            encode_delete(4, version=9),  # newer delete: applied
        ]
    )
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic)
    wait_for(lambda: ing.ready, what="ready")
    items = {i: index.get(i) for i in (1, 2, 3, 4)}
    assert items[1] is not None and items[1].version == 5 and items[1].attributes == {"v": 5}
    assert items[2] is not None and items[2].version == 7
    np.testing.assert_array_equal(items[2].vector, v[7])
    assert items[3] is not None and items[3].version == 4
    assert items[4] is None
    stats = ing.stats()
    assert stats["ignored_stale"] == 2 and stats["applied"] == 6


def test_bad_messages_go_to_the_dead_letter_topic(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester]
) -> None:
    x = random_vectors(10, D, seed=4)
    good = [encode_upsert(i, x[i], {"lang": "en"}) for i in range(6)]
    bad: list[tuple[bytes, bytes, str]] = [
        (b"100", b"{this is not json", "not JSON"),
        (b"101", encode_upsert(101, x[0][:-1])[1], f"expects dimension {D}"),
        (b"102", encode_upsert(102, np.full(D, np.nan))[1], "NaN or infinite"),
        (b"103", encode_upsert(103, x[1], {"lang": 7})[1], "lang"),  # keyword field, int value
        (b"999", encode_upsert(104, x[2])[1], "disagree"),  # key and id disagree
        (b"105", b'{"op": "frobnicate", "id": 105}', "unknown op"),
    ]
    msgs: list[tuple[bytes | None, bytes | None]] = []
    for i, g in enumerate(good):  # bad ones between good ones, in one partition each
        msgs.append(g)
        if i < len(bad):
            msgs.append(bad[i][:2])
    sender.send_all(msgs)
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic)
    wait_for(lambda: ing.ready, what="ready")
    assert sorted(index.ids()) == list(range(6))
    wait_for(lambda: ing.stats()["dead_lettered"] == len(bad), what="dead letters counted")
    dead = read_topic(broker.bootstrap, f"{topic}.dlq", len(bad))
    assert len(dead) == len(bad)
    by_key = {m.key: m for m in dead}
    for key, value, reason in bad:
        m = by_key[key]
        assert m.value == value  # the original bytes
        headers = dict(m.headers)
        assert reason in headers["error"].decode(), headers["error"]
        assert headers["source.topic"].decode() == topic


@pytest.mark.partitions(3)
def test_partition_subset(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester]
) -> None:
    x = random_vectors(30, D, seed=5)
    futs = [sender.send(*encode_upsert(i, x[i]), partition=i % 3) for i in range(30)]
    sender.producer.flush()
    [f.get(10) for f in futs]
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic, partitions=[0, 2])
    wait_for(lambda: ing.ready, what="ready")
    assert sorted(index.ids()) == [i for i in range(30) if i % 3 != 1]
    assert set(ing.stats()["offsets"]) == {0, 2}


def test_restart_from_a_snapshot_replays_only_what_follows(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester], tmp_path: Path
) -> None:
    x = random_vectors(80, D, seed=6)
    sender.send_all([encode_upsert(i, x[i]) for i in range(50)])
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic, snapshot_dir=tmp_path)
    wait_for(lambda: ing.ready, what="ready")
    ing.stop()  # writes the final snapshot
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None
    loaded, offsets = got
    assert sum(offsets.values()) == 50 and len(loaded) == 50
    sender.send_all([encode_upsert(i, x[i]) for i in range(50, 80)] + [encode_delete(0)])
    # The offsets come with the loaded index (its manifest); nothing before them is re-read.
    ing2 = start(started, loaded, broker, topic, snapshot_dir=tmp_path)
    wait_for(lambda: ing2.ready, what="ready after restart")
    assert ing2.stats()["applied"] == 31
    assert sorted(loaded.ids()) == list(range(1, 80))


def test_periodic_snapshots(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester], tmp_path: Path
) -> None:
    x = random_vectors(40, D, seed=7)
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic, snapshot_dir=tmp_path, snapshot_every_messages=10)
    for start_at in range(0, 40, 10):
        sender.send_all([encode_upsert(i, x[i]) for i in range(start_at, start_at + 10)])
        wait_for(lambda: len(index) >= start_at + 10, what="batch applied")  # noqa: B023
    wait_for(lambda: ing.stats()["snapshots_written"] >= 3, what="snapshots")
    # The newest two are kept (the older ones go once the newest is in place).
    wait_for(lambda: len(snapshots.list_snapshots(tmp_path)) == 2, what="pruning")
    got = snapshots.load_latest(tmp_path, "cpu")
    assert got is not None and sum(got[1].values()) == len(got[0])


def test_broker_outage_keeps_searches_and_resumes(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester]
) -> None:
    x = random_vectors(40, D, seed=8)
    sender.send_all([encode_upsert(i, x[i]) for i in range(20)])
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic)
    wait_for(lambda: ing.ready, what="ready")
    assert ing.stats()["outages"] == 0 and ing.stats()["connected"]
    broker.pause()
    try:
        t0 = time.monotonic()
        while ing.stats()["outages"] == 0:  # noticed within a log check and its timeout
            assert time.monotonic() - t0 < 15, "the outage was not noticed"
            assert len(index.search(x[:2], k=5).ids[0]) == 5  # searches keep being served
            time.sleep(0.1)
        stats = ing.stats()
        assert stats["errors"] >= 1 and not stats["connected"] and stats["last_error"]
        assert ing.ready  # once caught up, an outage does not make the index unready
    finally:
        broker.resume()
    sender.send_all([encode_upsert(i, x[i]) for i in range(20, 40)])
    wait_for(lambda: len(index) == 40, timeout_s=60, what="items produced after the outage")
    assert ing.stats()["outages"] == 1 and ing.stats()["connected"]


def test_waits_for_a_missing_topic(broker: Broker, started: list[Ingester]) -> None:
    from ingest.topics import ensure_topic

    topic = f"late-{time.monotonic_ns()}"
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic, retry_backoff_s=0.1, retry_backoff_max_s=0.5)
    wait_for(lambda: ing.stats()["errors"] >= 1, what="an error for the missing topic")
    assert "does not exist" in (ing.stats()["last_error"] or "")
    assert not ing.ready
    ensure_topic(broker.bootstrap, topic, 1)
    s = Sender(broker.bootstrap, topic)
    try:
        s.send_all([encode_upsert(1, np.ones(D))])
    finally:
        s.close()
    wait_for(lambda: ing.ready and 1 in index, what="ready once the topic exists")


def test_group_commits_for_monitoring(
    broker: Broker, topic: str, sender: Sender, started: list[Ingester]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    sender.send_all([encode_upsert(i, np.ones(D)) for i in range(10)])
    index = linr.Index(D, device="cpu")
    ing = start(started, index, broker, topic, group="linr-test", commit_every_s=0.2)
    wait_for(lambda: ing.ready, what="ready")
    ing.stop(final_snapshot=False)  # commits what was applied
    c = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id="linr-test", enable_auto_commit=False
    )
    try:
        committed = sum(c.committed(TopicPartition(topic, p)) or 0 for p in (0, 1))
    finally:
        c.close()
    assert committed == 10
