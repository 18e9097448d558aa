"""The 1-bit scans against the plain reference, and searches through the index."""

import numpy as np
import pytest
import torch

from linr.errors import InvalidInput
from linr.index import Index
from linr.knn import knn
from linr.onebit.cpu_scan import hamming_topk_cpu
from linr.onebit.estimate import hamming_topk_reference
from linr.testing.topk import assert_same_topk, scores_by_row
from tests.linr.onebit_data import clustered


def random_codes(rng, n, bits, n_distinct=None):
    """Packed codes; with n_distinct, rows repeat a few codes (many exact ties)."""
    w8 = bits // 8
    if n_distinct is None:
        return rng.integers(0, 256, (n, w8), dtype=np.uint8)
    base = rng.integers(0, 256, (n_distinct, w8), dtype=np.uint8)
    return base[rng.integers(0, n_distinct, n)]


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize(
    "n,bits,c,ties",
    [
        (1, 64, 1, False),
        (5, 64, 10, False),
        (3001, 128, 37, False),
        (2500, 192, 200, True),
        # Several chunks (2,048, 2,048, 4,096, ...): later ones skipped by their norm bound.
        (20_011, 128, 5, False),
    ],
)
@pytest.mark.parametrize("filtering", ["none", "mask", "gather", "empty"])
def test_hamming_topk_equals_brute_force(rng, metric, n, bits, c, ties, filtering):
    b = 23
    codes = random_codes(rng, n, bits, 7 if ties else None)
    # Equal norms too where ties are wanted: equal (code, norm) pairs tie exactly.
    norms = np.full(n, 1.5, np.float32) if ties else rng.uniform(0.1, 3, n).astype(np.float32)
    q_codes = random_codes(rng, b, bits)
    a_q = rng.uniform(0.5, 2, b).astype(np.float32)
    allowed = None
    if filtering != "none":
        allowed = rng.random(n) < (0.0 if filtering == "empty" else 0.2)
    want_s, want_r = hamming_topk_reference(q_codes, codes, norms, a_q, c, metric, allowed)
    mask = rows = None
    if filtering == "gather":
        rows = torch.nonzero(torch.from_numpy(allowed)).flatten()
    elif allowed is not None:
        mask = torch.from_numpy(allowed)
    got_s, got_r = hamming_topk_cpu(
        torch.from_numpy(q_codes),
        torch.from_numpy(codes),
        torch.from_numpy(norms),
        torch.from_numpy(a_q),
        c,
        metric == "l2",
        mask,
        rows,
    )
    np.testing.assert_array_equal(got_r.numpy(), want_r)  # same float32 arithmetic: exact
    np.testing.assert_array_equal(got_s.numpy(), want_s)


def _index(rng, metric, n, dim, bits, rerank, n_tags=4):
    x = clustered(rng, n, dim)
    idx = Index(dim, metric, quantization="1bit", bits=bits, rerank=rerank, device="cpu")
    tags = rng.integers(0, n_tags, n)
    idx.upsert(np.arange(n), x, [{"tag": int(t)} for t in tags])
    return idx, x, tags


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
@pytest.mark.parametrize("dim,bits", [(24, 64), (100, 128)])
def test_rerank_fp32_covering_all_rows_is_exact(rng, metric, dim, bits):
    n, k = 700, 10
    idx, x, tags = _index(rng, metric, n, dim, bits, "fp32")
    q = rng.standard_normal((9, dim)).astype(np.float32)
    for flt, allowed in ((None, np.ones(n, bool)), ("tag == 1", tags == 1)):
        over = -(-int(allowed.sum()) // k)  # oversample x k holds every allowed row
        res = idx.search(q, k, filter=flt, oversample=over)
        want_s, want_r = knn(q, x, k, metric, mask=torch.from_numpy(allowed))
        every, _ = knn(q, x, n, metric, mask=torch.from_numpy(allowed))
        # Rerank scores are float64 sums rounded to float32: within 2**-24 of float64.
        # Cosine normalizes in float32 first: a few more roundings of ~2**-24 each.
        assert_same_topk(
            res.rows,
            res.scores,
            want_r.numpy(),
            want_s.numpy(),
            rtol=1e-6,
            atol=1e-6,
            every=scores_by_row(every.numpy(), _.numpy(), n),
        )


@pytest.mark.parametrize("rerank", ["fp16", "int8", "fp32", "none"])
@pytest.mark.parametrize("selectivity", [0.002, 0.05, 0.5])
def test_filtered_search_returns_only_matching_and_k_of_them(rng, rerank, selectivity):
    n, dim, k = 2000, 32, 10
    x = clustered(rng, n, dim)
    idx = Index(dim, "ip", quantization="1bit", bits=64, rerank=rerank, device="cpu")
    keep = rng.random(n) < selectivity
    idx.upsert(np.arange(n), x, [{"ok": bool(f)} for f in keep])
    q = rng.standard_normal((6, dim)).astype(np.float32)
    for over in (1, 3):
        res = idx.search(q, k, filter="ok == true", oversample=over)
        want = min(k, int(keep.sum()))
        for ids, rows in zip(res.ids, res.rows):
            assert len(ids) == want
            assert all(keep[i] for i in ids)
            assert (rows[want:] == -1).all()
        assert np.isfinite(res.scores[:, :want]).all()
        assert (res.scores[:, want:] == -np.inf).all()


def test_rerank_none_scores_are_the_estimate(rng):
    n, dim, k = 500, 48, 7
    x = clustered(rng, n, dim)
    for metric in ("ip", "l2"):
        idx = Index(dim, metric, quantization="1bit", bits=128, rerank="none", device="cpu")
        idx.upsert(np.arange(n), x)
        q = rng.standard_normal((4, dim)).astype(np.float32)
        res = idx.search(q, k)
        st = idx._store
        qc = st.centred(torch.from_numpy(q))
        from linr.onebit.estimate import query_factors

        a_q, const = query_factors(qc, metric)
        q_codes = st.transform.encode(qc).numpy()
        want_s, want_r = hamming_topk_reference(
            q_codes, st.codes[:n].numpy(), st.norms[:n].numpy(), a_q.numpy(), k, metric
        )
        np.testing.assert_array_equal(res.rows, want_r)
        np.testing.assert_array_equal(res.scores, want_s + const.numpy()[:, None])
        item = idx.get(0)
        assert item is not None and np.isnan(item.vector).all()  # no vectors kept


def test_oversample_improves_recall_and_k_beyond_count(rng):
    idx, x, _ = _index(rng, "ip", 300, 16, 64, "fp16")
    q = rng.standard_normal((3, 16)).astype(np.float32)
    res = idx.search(q, 500, oversample=1)  # k > items: all 300 rows, padded
    assert (res.rows[:, :300] >= 0).all() and (res.rows[:, 300:] == -1).all()
    assert sorted(res.rows[0, :300].tolist()) == list(range(300))


def test_bad_options():
    with pytest.raises(InvalidInput, match="bits"):
        Index(8, quantization="1bit", bits=100)
    with pytest.raises(InvalidInput, match="rerank"):
        Index(8, quantization="1bit", rerank="bf16")
    with pytest.raises(InvalidInput, match="apply to quantization '1bit'"):
        Index(8, quantization="fp32", bits=64)
    idx = Index(8, quantization="1bit", device="cpu")
    idx.upsert([1], np.ones((1, 8)))
    bad_values: list = [0, -1, 1001, 2.5, True]
    for bad in bad_values:
        with pytest.raises(InvalidInput, match="oversample"):
            idx.search(np.ones(8), 1, oversample=bad)
    with pytest.raises(InvalidInput, match="multi-embedding"):
        idx.search([np.ones((2, 8))], 1, aggregate="max")
    with pytest.raises(InvalidInput, match="fp16 range"):
        idx.upsert([2], np.full((1, 8), 1e6))
