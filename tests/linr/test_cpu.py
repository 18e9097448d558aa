"""The small-batch CPU paths (linr.cpu) against the float64 reference, at awkward sizes."""

import numpy as np
import pytest
import torch

from linr import Index
from linr.cpu import int8, small
from linr.cpu.select import topk_ordered
from tests.linr.conftest import check_filtered_search


def sorted_reference(s: torch.Tensor, k: int):
    """Top-k of each row of s by a full sort on (score desc, column asc)."""
    b, n = s.shape
    out_s = torch.full((b, k), -torch.inf, dtype=s.dtype)
    out_c = torch.full((b, k), -1, dtype=torch.int64)
    for i in range(b):
        order = sorted((c for c in range(n) if s[i, c] > -torch.inf), key=lambda c: (-s[i, c], c))
        order = order[:k]
        out_s[i, : len(order)] = s[i, order]
        out_c[i, : len(order)] = torch.tensor(order, dtype=torch.int64)
    return out_s, out_c


@pytest.mark.parametrize("b,n,k", [(1, 1, 1), (2, 5, 10), (3, 1023, 7), (1, 5000, 3), (4, 9000, 5)])
def test_select_orders_ties_by_column(rng, b, n, k):
    # Few distinct values: many ties at the k-th place; some -inf (rejected) columns.
    s = torch.from_numpy(rng.integers(0, 6, (b, n)).astype(np.float32))
    s[torch.from_numpy(rng.random((b, n)) < 0.2)] = -torch.inf
    got_s, got_c = topk_ordered(s, k)
    want_s, want_c = sorted_reference(s, k)
    assert torch.equal(got_c, want_c) and torch.equal(got_s, want_s)


def test_select_all_rejected():
    s = torch.full((2, 3000), -torch.inf)
    got_s, got_c = topk_ordered(s, 4)
    assert (got_c == -1).all() and torch.isneginf(got_s).all()


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("quant", ["fp32", "int8"])
@pytest.mark.parametrize(
    "n,d,b,k",
    [(1, 1, 1, 1), (7, 5, 2, 10), (3001, 37, 1, 13), (2500, 130, 3, 50), (20000, 16, 16, 5)],
)
@pytest.mark.parametrize("frac", [1.0, 0.7, 0.2, 0.001])
def test_small_batches_equal_reference(rng, metric, quant, n, d, b, k, frac):
    """Every selectivity on both sides of the by-rows switch, through Index.search (auto),
    against the float64 reference (conftest.check_filtered_search)."""
    assert b <= small.MAX_BATCH
    check_filtered_search(rng, metric, quant, n, d, b, k, frac)


@pytest.mark.parametrize("with_faiss", [True, False])
@pytest.mark.parametrize("m", [1, 9000])  # 9000: split over threads
def test_dot_rows(rng, with_faiss, m):
    faiss = pytest.importorskip("faiss") if with_faiss else None
    codes = torch.from_numpy(rng.standard_normal((12000, 33)).astype(np.float32))
    q = torch.from_numpy(rng.standard_normal((2, 33)).astype(np.float32))
    rows = torch.from_numpy(np.sort(rng.choice(12000, m, replace=False)))
    got = small.dot_rows(codes, q, rows, faiss).double()
    want = q.double() @ codes[rows].double().T
    # float32 sums of 33 products of N(0, 1): |err| <= 33 * 2^-24 * sum|q_i x_i| < 1e-4.
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("d", [1, 7, 128, 385])
def test_int8_candidates_hold_the_exact_top(rng, metric, d):
    """Every row of the float64 top-k over the decoded vectors is a candidate; on spiky
    queries too (one large component makes the int8 rounding of the query coarse), a zero
    query, and a mask. Equal scores at the k-th place: all of them are kept."""
    from linr.quantization import dequantize_int8, quantize_int8

    if not int8.supported(d):
        assert d == 1  # torch 2.13's _int_mm is wrong at d = 1; the index then scans as fp32
        return
    n, k = 3000, 10
    x = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32))
    codes, scales = quantize_int8(x)
    dec = dequantize_int8(codes, scales).double().numpy()
    q = torch.from_numpy(rng.standard_normal((4, d)).astype(np.float32))
    q[1, 0] = 1e3
    q[2] = 0.0
    allowed = rng.random(n) < 0.5
    quant = int8.quantize_queries(q)
    prod = int8.products(quant[0], codes)
    exact = q.double().numpy() @ dec.T
    l2 = None
    if metric == "l2":
        sqn = (dec**2).sum(1).astype(np.float32)
        const = (q.double().numpy() ** 2).sum(1)
        l2 = (sqn, const)
        exact = 2 * exact - sqn[None, :] - const[:, None]
    for mask in (None, allowed):
        every = set(int8.candidates(prod, quant, scales.numpy(), k, mask, l2).tolist())
        for b in range(4):
            one = tuple(a[b : b + 1] for a in quant)
            l2_b = None if l2 is None else (l2[0], l2[1][b : b + 1])
            cols = set(
                int8.candidates(prod[b : b + 1], one, scales.numpy(), k, mask, l2_b).tolist()
            )
            e = exact[b] if mask is None else np.where(mask, exact[b], -np.inf)
            kth = np.sort(e)[-k]
            assert set(np.flatnonzero(e >= kth).tolist()) <= cols <= every, b
            assert b == 2 or len(cols) < n / 2  # a zero query ties every row


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("quant", ["fp32", "int8"])
@pytest.mark.parametrize("n,d,k", [(3, 1, 5), (2000, 37, 10), (30011, 24, 100)])
def test_one_query_path_equals_full_path(rng, monkeypatch, metric, quant, n, d, k):
    """A single query under a selective string filter takes linr.cpu.small's
    one_query_by_rows; the same filter as a one-element list takes the full path. Same ids
    and scores, bit for bit (the same scoring and selection functions), for 1-D and [1, D]
    queries, deleted rows and k above the matches; l2 always takes the full path."""
    taken = []
    one = small.one_query_by_rows
    monkeypatch.setattr(small, "one_query_by_rows", lambda *a: taken.append(one(*a)) or taken[-1])
    index = Index(d, metric, quant, "cpu")
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[1::5] = x[0]  # equal vectors: ties keep ascending rows
    g = rng.integers(0, 20, n)
    index.upsert(np.arange(n), x, [{"g": int(v)} for v in g])
    index.delete([2])
    strided = rng.standard_normal((1, 2 * d)).astype(np.float32)[:, ::2]  # not contiguous
    for f in ("g == 3", "g < 4", "g == 99"):
        for q in (rng.standard_normal(d).astype(np.float32), x[:1].copy(), strided):
            fast = index.search(q, k, f)
            full = index.search(np.ascontiguousarray(q[None] if q.ndim == 1 else q), k, [f])
            assert np.array_equal(fast.rows, full.rows) and np.array_equal(fast.scores, full.scores)
            assert fast.ids == full.ids
    used = [t for t in taken if t is not None]
    if metric == "l2":
        assert not used  # l2 needs centred queries: the full path
    elif n > 10:
        assert used


@pytest.mark.parametrize("d", [4, 8, 12, 13, 24, 384])
def test_one_query_full_product_scores_each_row_alone(rng, d):
    """One query over every row (faiss's fvec_inner_products_ny, or the 2-row product where
    its kernels score rows in blocks): equal vectors anywhere in the rows get equal scores,
    so ties keep ascending rows; above 12 dimensions the scores equal the by-rows path's
    (fvec_inner_products_by_idx), bit for bit. 9,001 rows: split over the threads."""
    pytest.importorskip("faiss")
    n = 9001
    index = Index(d, "ip", "fp32", "cpu")
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[::7] = 5 * x[0]  # |<q, x_0>| = 25 ||x_0||^2 outscores the other rows (~ 4 * 5 ||x_0||)
    index.upsert(np.arange(n), x, [{"g": int(r % 7 == 0)} for r in range(n)])
    q = x[0] / 5 + rng.standard_normal(d).astype(np.float32) * 0.01
    k = n // 7 + 5
    full = index.search(q, k)
    equal = np.arange(0, n, 7)
    assert np.array_equal(full.rows[0, : equal.shape[0]], equal)
    assert (full.scores[0, : equal.shape[0]] == full.scores[0, 0]).all()
    few = index.search(q, k, "g == 1")
    assert np.array_equal(few.rows[0, : equal.shape[0]], equal)
    if d > 12:
        assert np.array_equal(few.scores[0, : equal.shape[0]], full.scores[0, : equal.shape[0]])
