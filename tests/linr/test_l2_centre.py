"""l2 on data far from the origin. The index keeps its l2 norms relative to a centre fixed
by the first write (linr.storage.choose_centre), so that float32 rounds at the scale of
the data's spread rather than of its offset. Uncentred, standard normal data shifted by
1,000 gave recall@10 = 0.025 (benchmarks/bench_l2_offset.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import linr
from linr.testing.topk import assert_same_topk, centred_l2_error_bound, exact_l2
from tests.linr.conftest import stored_vectors


def shifted(rng: np.random.Generator, n: int, d: int, offset: float) -> np.ndarray:
    return (rng.standard_normal((n, d)) + offset).astype(np.float32)


def check(res, q, x, centre, k, mask=None) -> None:
    full, top = exact_l2(q, x, k, mask)
    tol = centred_l2_error_bound(q, x, centre)
    want_s = np.take_along_axis(full, top, 1)
    assert_same_topk(res.rows, res.scores, top, want_s, 0.0, tol, full)


@pytest.mark.parametrize("quant", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("offset", [1000.0, -300.0])
def test_far_from_origin_equals_exact_search(rng, quant, offset):
    n, d, b, k = 1500, 37, 4, 10
    x = shifted(rng, n, d, offset)
    q = shifted(rng, b, d, offset)
    index = linr.Index(d, "l2", quant, "cpu", scan_bytes=1 << 15)  # many chunks
    first = x[:100]
    index.upsert(np.arange(100), first, [{"g": i % 2} for i in range(100)])
    index.upsert(np.arange(100, n), x[100:], [{"g": i % 2} for i in range(100, n)])
    centre = index.l2_centre.numpy()
    np.testing.assert_allclose(centre, first.astype(np.float64).mean(0), rtol=1e-6)
    db = stored_vectors(index, n).numpy()  # what a quantized index scores against
    odd = np.arange(n) % 2 == 1
    for backend in ("torch", "faiss"):
        for strategy in ("mask", "gather"):
            res = index.search(q, k, backend=backend, strategy=strategy)
            check(res, q, db, centre, k)
            res = index.search(q, k, "g == 1", backend=backend, strategy=strategy)
            check(res, q, db, centre, k, odd)


def test_near_origin_the_centre_stays_zero(rng):
    index = linr.Index(16, "l2", device="cpu")
    index.upsert(np.arange(50), shifted(rng, 50, 16, 0.0))
    assert not index.l2_centre.any()
    # A lone first vector is its own centre (it lies 0 from itself).
    lone = linr.Index(16, "l2", device="cpu")
    v = shifted(rng, 1, 16, 0.0)
    lone.upsert([1], v)
    assert torch.equal(lone.l2_centre, torch.from_numpy(v[0]))


def test_centre_is_fixed_by_the_first_write_and_saved(rng, tmp_path):
    d, k = 24, 7
    a, far = shifted(rng, 200, d, 500.0), shifted(rng, 200, d, -500.0)
    index = linr.Index(d, "l2", device="cpu")
    index.upsert(np.arange(200), a)
    centre = index.l2_centre.clone()
    index.delete(np.arange(200))
    index.upsert(np.arange(200, 400), far)  # the centre does not follow the data
    assert torch.equal(index.l2_centre, centre)
    q = shifted(rng, 3, d, -500.0)
    res = index.search(q, k)
    n_rows = index.n_rows  # the new items reused the deleted items' rows
    live = index.filter_mask(None).numpy()
    check(res, q, stored_vectors(index, n_rows).numpy(), centre.numpy(), k, live)
    index.save(tmp_path / "idx")
    loaded = linr.Index.load(tmp_path / "idx", device="cpu")
    assert torch.equal(loaded.l2_centre, centre)
    again = loaded.search(q, k)
    assert again.ids == res.ids and np.array_equal(again.scores, res.scores)


def test_an_index_saved_before_centres_loads_with_a_zero_centre(rng, tmp_path):
    d = 8
    index = linr.Index(d, "l2", device="cpu")
    index.upsert(np.arange(30), shifted(rng, 30, d, 0.0))
    index.save(tmp_path / "idx")
    f = tmp_path / "idx" / "tensors.safetensors"
    tensors = load_file(str(f))
    del tensors["vec.centre"]
    save_file(tensors, str(f))
    loaded = linr.Index.load(tmp_path / "idx", device="cpu")
    assert loaded._store.centre_fixed and not loaded.l2_centre.any()
    q = shifted(rng, 2, d, 0.0)
    a, b = index.search(q, 5), loaded.search(q, 5)
    assert a.ids == b.ids and np.array_equal(a.scores, b.scores)


@pytest.mark.parametrize("aggregate", ["max", "sum"])
def test_multi_embedding_far_from_origin(rng, aggregate):
    n, d, k = 400, 19, 9
    x = shifted(rng, n, d, 800.0)
    index = linr.Index(d, "l2", device="cpu", scan_bytes=8192)
    index.upsert(np.arange(n), x)
    centre = index.l2_centre.numpy()
    queries = [shifted(rng, m, d, 800.0) for m in (1, 3)]
    res = index.search(queries, k, aggregate=aggregate)
    for b, qm in enumerate(queries):
        s, _ = exact_l2(qm, x, n)
        s = s.max(0) if aggregate == "max" else s.sum(0)
        want = np.argsort(-s, kind="stable")[:k]
        tol = len(qm) * centred_l2_error_bound(qm, x, centre)
        assert_same_topk(
            res.rows[b : b + 1], res.scores[b : b + 1], [want], [s[want]], 0.0, tol,
            s[None],
        )  # fmt: skip
