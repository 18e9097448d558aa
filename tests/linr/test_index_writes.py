"""The narrow write and read methods other packages use instead of the index's locks:
`UpsertResult` (stale vs superseded), `write_batch()`, `attributes(ids)`,
`wait_for_searches()`."""

from __future__ import annotations

import threading

import numpy as np

from linr import Index


def _one_by_one(ids: list[int], versions: list[int | None], start: dict[int, int]) -> np.ndarray:
    """Plain reference: stale [n] from applying each write alone, in order."""
    cur = dict(start)
    stale = np.zeros(len(ids), bool)
    for i, (id_, v) in enumerate(zip(ids, versions, strict=True)):
        c = cur.get(id_)
        if v is not None and c is not None and v < c:
            stale[i] = True
        elif v is None:
            cur.pop(id_, None)
        else:
            cur[id_] = v
    return stale


def test_upsert_result_tells_stale_from_superseded(rng):
    for _ in range(30):
        index = Index(3, device="cpu")
        start = {int(i): int(rng.integers(0, 5)) for i in range(4)}
        index.upsert(list(start), np.ones((4, 3)), versions=list(start.values()))
        n = int(rng.integers(1, 12))
        ids = [int(i) for i in rng.integers(0, 6, n)]  # ids 4 and 5 are new
        versions = [int(v) if rng.random() < 0.8 else None for v in rng.integers(0, 8, n)]
        res = index.upsert(ids, rng.standard_normal((n, 3)), versions=versions)
        stale = _one_by_one(ids, versions, start)
        later = {
            id_: max(i for i in range(n) if ids[i] == id_ and not stale[i])
            for id_ in ids
            if any(ids[i] == id_ and not stale[i] for i in range(n))
        }
        superseded = np.array([not stale[i] and later[ids[i]] != i for i in range(n)])
        assert res.stale.tolist() == stale.tolist(), (ids, versions, start)
        assert res.superseded.tolist() == superseded.tolist(), (ids, versions, start)
        assert res.applied.tolist() == (~stale).tolist()
        in_effect = res.applied & ~res.superseded
        assert (in_effect | res.stale | res.superseded).all()
        assert not (in_effect & res.stale).any() and not (res.stale & res.superseded).any()


def test_write_batch_keeps_other_writers_out_and_lets_searches_in(rng):
    index = Index(4, device="cpu")
    x = rng.standard_normal((10, 4)).astype(np.float32)
    index.upsert(np.arange(10), x)
    other_wrote = threading.Event()

    def other_writer() -> None:
        index.upsert([100], x[:1])
        other_wrote.set()

    with index.write_batch():
        index.upsert([20], x[:1])
        writer = threading.Thread(target=other_writer)
        writer.start()
        found: list[list[int]] = []
        # k = every item: whether 20 is seen must not depend on its score
        searcher = threading.Thread(target=lambda: found.extend(index.search(x[:1], 11).ids))
        searcher.start()
        searcher.join(10)
        assert not searcher.is_alive() and 20 in found[0]  # the batch's first write is seen
        assert not other_wrote.wait(0.3)  # the other writer waits for the batch to end
        index.delete([20])
    writer.join(10)
    assert other_wrote.is_set() and 100 in index and 20 not in index


def test_attributes_of_ids_match_get_and_mark_absent_ids(rng):
    index = Index(4, device="cpu", capacity=2)
    n = 40
    attrs = [
        {"n": int(rng.integers(0, 9)), "tags": ["a", "b"][: i % 3], "p": 0.5 * i, "on": i % 2 == 0}
        for i in range(n)
    ]
    attrs[3] = {}
    index.upsert(np.arange(n), rng.standard_normal((n, 4)), attrs)
    index.delete([5])
    ask = [7, 5, 1000, 3, 7, 39, "x"]
    got = index.attributes(ask)
    for id_, a in zip(ask, got, strict=True):
        item = index.get(id_)
        assert a == (None if item is None else item.attributes), id_
    assert got[1] is None and got[2] is None and got[3] == {} and got[6] is None
    assert index.attributes([]) == []


def test_wait_for_searches_returns_at_once_when_nothing_runs():
    index = Index(4, device="cpu")
    assert index.wait_for_searches(5.0)
    assert not index.wait_for_searches(0)  # zero: never waits
