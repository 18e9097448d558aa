"""The scan's fast paths against the exact reference, at awkward sizes."""

import numpy as np
import pytest
import torch

import linr
from linr import Index, InvalidInput
from linr.search.topk import topk_exact_ties
from linr.testing.topk import assert_same_topk, scores_by_row
from tests.linr.conftest import stored_vectors

BACKENDS = ["faiss", "torch"]
STRATEGIES = ["mask", "gather"]


def reference(index, q, k, metric, mask=None):
    x = stored_vectors(index, index.n_rows)
    live = index.filter_mask(None).cpu()
    mask = live if mask is None else (live & mask)
    if metric == "cosine":  # stored vectors are normalized (then quantized) on insert
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        metric = "ip"
    return linr.knn(q, x, k, metric, mask=mask)


def every_score(index, q, metric, mask=None) -> np.ndarray:
    """The reference score of every row [B, n] (-inf where masked out or deleted)."""
    return scores_by_row(*reference(index, q, index.n_rows, metric, mask), index.n_rows)


def check(res, ref_s, ref_i, rtol, full):
    """ids exactly, but for fp32 near-ties; scores within `rtol` (float32 accumulation over
    D terms vs float64). `full`: every row's reference score."""
    assert_same_topk(res.rows, res.scores, ref_i.numpy(), ref_s.numpy(), rtol, rtol, full)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("quant", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize(
    "n,d,b,k", [(1, 1, 1, 1), (1, 5, 3, 10), (333, 37, 5, 7), (700, 130, 2, 50)]
)
def test_every_path_equals_reference(rng, metric, quant, n, d, b, k):
    index = Index(d, metric, quant, "cpu", capacity=3, scan_bytes=4096)  # many small chunks
    x = rng.standard_normal((n, d)).astype(np.float32)
    index.upsert(np.arange(n), x)
    q = rng.standard_normal((b, d)).astype(np.float32)
    sel = torch.from_numpy(rng.random(n) < 0.3)
    sel[0] = True
    ref_s, ref_i = reference(index, q, k, metric)
    fref_s, fref_i = reference(index, q, k, metric, sel)
    full, ffull = every_score(index, q, metric), every_score(index, q, metric, sel)
    # 1e-4: float32 dot products of D <= 130 terms of N(0,1) values, relative to |score|.
    tol = 1e-4
    flt = {"or": [{"field": "g", "eq": True}, {"field": "g", "eq": False}]}
    index.upsert(np.arange(n), x, [{"g": bool(s)} for s in sel.tolist()])
    for backend in BACKENDS:
        for strategy in STRATEGIES:
            res = index.search(q, k, strategy=strategy, backend=backend)
            check(res, ref_s, ref_i, tol, full)
            res = index.search(
                q, k, filter={"field": "g", "eq": True}, strategy=strategy, backend=backend
            )
            check(res, fref_s, fref_i, tol, ffull)
            res = index.search(q, k, filter=flt, strategy=strategy, backend=backend)
            check(res, ref_s, ref_i, tol, full)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strategies_agree(rng, backend):
    """Scanning every row under a mask and scanning the gathered matching rows give the same
    top-k. Not bit-identical: BLAS may sum a smaller matrix in another order (seen: 3e-6).
    Tolerance: d * 2^-24 * sum|q_i x_i|, with sum|q_i x_i| about d * 2/pi = 41 for standard
    normals at d = 64: 1.6e-4, so 2e-4."""
    n, d = 5000, 64
    index = Index(d, "ip", "fp32", "cpu", scan_bytes=1 << 16)
    index.upsert(
        np.arange(n),
        rng.standard_normal((n, d)).astype(np.float32),
        [{"c": int(c)} for c in rng.integers(0, 10, n)],
    )
    for b in (1, 3, 40):
        q = rng.standard_normal((b, d)).astype(np.float32)
        for f in (None, "c < 5", "c == 3"):
            a = index.search(q, 20, f, strategy="mask", backend=backend)
            g = index.search(q, 20, f, strategy="gather", backend=backend)
            assert_same_topk(g.rows, g.scores, a.rows, a.scores, 0.0, 2e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ties_keep_ascending_rows(backend, strategy):
    index = Index(4, "ip", "int8", "cpu", scan_bytes=512)
    n = 300
    # max|x| = 127 makes the int8 scale 1 (and 2 for the doubled rows): the decoded rows are
    # integers, so equal rows score exactly alike in any summation order (BLAS may sum rows
    # at different block positions differently).
    x = np.tile(np.array([[1, 2, 3, 127]], np.float32), (n, 1))
    x[::7] *= 2  # a second tie class, scored higher
    index.upsert(np.arange(n) + 1000, x)
    res = index.search(np.ones((2, 4), np.float32), 60, strategy=strategy, backend=backend)
    top = list(range(0, n, 7))
    rest = [r for r in range(n) if r % 7]
    assert res.rows[0].tolist() == (top + rest)[:60]
    assert res.rows[1].tolist() == res.rows[0].tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_matches_and_empty_filter(rng, backend):
    index = Index(8, "l2", "fp16", "cpu")
    index.upsert(
        [5, 6, 7],
        rng.standard_normal((3, 8)).astype(np.float32),
        [{"t": "a"}, {"t": "b"}, {"t": "a"}],
    )
    q = rng.standard_normal((2, 8)).astype(np.float32)
    res = index.search(q, 10, 't == "a"', backend=backend)
    assert all(sorted(ids) == [5, 7] for ids in res.ids)
    assert (res.rows[:, 2:] == -1).all() and np.isneginf(res.scores[:, 2:]).all()
    res = index.search(q, 10, 't == "zzz"', backend=backend)
    assert res.ids == [[], []] and (res.rows == -1).all()
    empty = Index(8)
    assert empty.search(q, 3).ids == [[], []]


@pytest.mark.parametrize("aggregate", ["max", "sum"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_multi_embedding(rng, aggregate, metric):
    n, d = 400, 19
    index = Index(d, metric, "fp32", "cpu", scan_bytes=8192)
    x = rng.standard_normal((n, d)).astype(np.float32)
    index.upsert(np.arange(n), x, [{"p": int(i % 3)} for i in range(n)])
    queries = [rng.standard_normal((m, d)).astype(np.float32) for m in (1, 4, 2)]
    res = index.search(queries, 9, "p != 1", aggregate=aggregate)
    x64 = x.astype(np.float64)
    for b, qm in enumerate(queries):
        q64 = qm.astype(np.float64)
        s = -((q64[:, None] - x64[None]) ** 2).sum(-1) if metric == "l2" else q64 @ x64.T
        s = s.max(0) if aggregate == "max" else s.sum(0)
        s[np.arange(n) % 3 == 1] = -np.inf
        want = np.lexsort((np.arange(n), -s))[:9]
        got_rows, got_scores = res.rows[b : b + 1], res.scores[b : b + 1]
        assert_same_topk(got_rows, got_scores, [want], [s[want]], 1e-4, 1e-3, s[None])


def test_peak_score_memory_is_bounded():
    index = Index(16, "ip", "fp32", "cpu", scan_bytes=1 << 22)
    q = torch.zeros(1024, 16)
    from linr.search import Backend, Queries

    rows = index._scanner.chunk_rows(Queries(q, 1024), Backend.TORCH)
    assert rows * (1024 + 16) * 4 <= 1 << 22


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_all_tied_scores_stay_in_row_order(rng, backend, strategy):
    """A zero query ties every row, and so does a copy of the rows: ids by ascending row,
    without asking faiss for k = N. The rows are integer-valued (|v.v| < 2^24), so every
    partial sum is exact and identical rows tie in any summation order; with real-valued
    rows the tie would rest on BLAS scoring every row position alike, which OpenBLAS does
    not on AMD EPYC (seen: seed 2464281535, identical rows an ulp apart)."""
    n, d = 3000, 37
    index = Index(d, "ip", "fp32", "cpu", scan_bytes=1 << 16)
    v = rng.integers(-20, 21, d).astype(np.float32)
    index.upsert(np.arange(n), np.tile(v, (n, 1)), [{"c": i % 2} for i in range(n)])
    for q in (np.zeros((3, d), np.float32), v[None]):
        res = index.search(q, 5, "c == 1", strategy=strategy, backend=backend)
        assert all(r == [1, 3, 5, 7, 9] for r in res.rows.tolist())


@pytest.mark.parametrize("seed", range(6))
def test_topk_exact_ties_matches_a_full_stable_sort(seed):
    """Scores drawn from few values, so ties fall at the k-th place, inside the top k and
    across it; some columns are -inf. Reference: a stable sort of the whole row. Which
    columns are kept must match; their order is settled later, by `merge_topk`."""
    g = torch.Generator().manual_seed(seed)
    b, c = 5, [1, 7, 300, 1031, 4099, 20_000][seed]
    s = torch.randint(0, [1, 2, 3, 5, 9, 40][seed], (b, c), generator=g).float()
    s[torch.rand(b, c, generator=g) < 0.2] = -torch.inf
    for k in sorted({1, 2, 10, 64, c}):
        if k > c:
            continue
        vals, idx = topk_exact_ties(s, k)
        ref_s, ref_i = torch.sort(s, dim=1, descending=True, stable=True)
        assert torch.equal(vals, ref_s[:, :k])
        for r in range(b):
            keep = ref_s[r, :k] > -torch.inf  # -inf columns are never needed, any will do
            got = set(idx[r, : int(keep.sum())].tolist())
            assert got == set(ref_i[r, :k][keep].tolist()), (c, k, r)


@pytest.mark.parametrize(
    ("kw", "word"), [({"strategy": "fast"}, "strategy"), ({"backend": "gpu"}, "backend")]
)
def test_unknown_strategy_or_backend_is_invalid_input(kw, word):
    index = Index(4, "ip", "fp32", "cpu")
    index.upsert([1], np.ones((1, 4), np.float32))
    with pytest.raises(InvalidInput, match=word):
        index.search(np.ones(4, np.float32), 1, **kw)
