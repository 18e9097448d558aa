"""Cached filter masks never outlive a write (linr.mask_cache)."""

import numpy as np

from linr import Index


def test_writes_invalidate_cached_masks(rng):
    index = Index(8, "ip", "fp32", "cpu")
    x = rng.standard_normal((50, 8)).astype(np.float32)
    index.upsert(np.arange(50), x, [{"t": "a" if i % 2 else "b"} for i in range(50)])
    q = np.ones((1, 8), np.float32)
    before = index.search(q, 100, 't == "a"').ids[0]
    assert sorted(before) == list(range(1, 50, 2))
    index.upsert([100], 10 * q, [{"t": "a"}])  # a new best match
    assert index.search(q, 100, 't == "a"').ids[0][0] == 100
    index.upsert([1], x[1:2], [{"t": "b"}])  # leaves the filter
    assert 1 not in index.search(q, 100, {"field": "t", "eq": "a"}).ids[0]
    index.delete([100])
    assert 100 not in index.search(q, 100, 't == "a"').ids[0]
    assert sorted(index.search(q, 100, 't == "b"').ids[0]) == sorted([1, *range(0, 50, 2)])


def test_string_and_json_forms_share_results(rng):
    index = Index(4, "ip", "fp32", "cpu")
    index.upsert(np.arange(30), rng.standard_normal((30, 4)), [{"n": i} for i in range(30)])
    q = rng.standard_normal((3, 4)).astype(np.float32)
    a = index.search(q, 5, "n < 10")
    b = index.search(q, 5, {"field": "n", "lt": 10})
    c = index.search(q, 5, ["n < 10", {"field": "n", "lt": 10}, "n < 10"])
    assert a.ids == b.ids == c.ids
