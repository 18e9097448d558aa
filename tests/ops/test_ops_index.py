"""The index's scan through the Triton kernels (the CUDA path), run by the interpreter on CPU
at small sizes: every metric, quantization and strategy equals the exact reference."""

import numpy as np
import pytest
import torch

import linr
from linr import Index
from linr.ops.mask_words import pack_mask, unpack_mask
from linr.testing.topk import (
    assert_same_topk,
    centred_l2_error_bound,
    exact_l2,
    scores_by_row,
)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("quant", ["fp32", "fp16", "int8"])
def test_index_search_through_kernels_equals_reference(dev, metric, quant):
    rng = np.random.default_rng(int.from_bytes(__import__("os").urandom(4), "little"))
    n, d, b, k = 203, 19, 3, 9
    index = Index(d, metric, quant, dev)
    x = rng.standard_normal((n, d)).astype(np.float32)
    index.upsert(np.arange(n) + 5, x, [{"c": int(v)} for v in rng.integers(0, 8, n)])
    index.delete([5, 50])
    q = rng.standard_normal((b, d)).astype(np.float32)
    stored = index.stored_vectors(torch.arange(n))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q
    rm = "ip" if metric == "cosine" else metric
    for flt in (None, "c < 3", "c == 100"):
        mask = index.filter_mask(flt).cpu()
        ref_s, ref_i = linr.knn(qn, stored, k, rm, mask=mask)
        full = scores_by_row(*linr.knn(qn, stored, n, rm, mask=mask), n)
        for strategy in ("mask", "gather"):
            res = index.search(q, k, flt, strategy=strategy, backend="triton")
            # ids exactly but for fp32 near-ties; scores: fp32 accumulation of 19 terms vs
            # float64, well inside 1e-4 relative
            assert_same_topk(res.rows, res.scores, ref_i.numpy(), ref_s.numpy(), 1e-4, 1e-4, full)


@pytest.mark.parametrize("quant", ["fp32", "fp16"])
def test_l2_far_from_origin_through_kernels(dev, quant):
    """The kernels get q - c and ||x - c||^2 (linr.storage.choose_centre); scores against
    float64 within the bound of the centred computation."""
    rng = np.random.default_rng(int.from_bytes(__import__("os").urandom(4), "little"))
    n, d, b, k = 203, 19, 3, 9
    index = Index(d, "l2", quant, dev)
    x = (rng.standard_normal((n, d)) + 1000).astype(np.float32)
    index.upsert(np.arange(n), x, [{"c": int(v)} for v in rng.integers(0, 8, n)])
    q = (rng.standard_normal((b, d)) + 1000).astype(np.float32)
    db = index.stored_vectors(torch.arange(n)).double().numpy()
    # The bound of scoring centred at the data's mean: the first write's mean is the centre.
    centre = x.astype(np.float64).mean(0)
    np.testing.assert_allclose(index.l2_centre.cpu().numpy(), centre, rtol=1e-6)
    tol = centred_l2_error_bound(q, db, centre)
    for flt in (None, "c < 3"):
        full, top = exact_l2(q, db, k, index.filter_mask(flt).cpu().numpy())
        for strategy in ("mask", "gather"):
            res = index.search(q, k, flt, strategy=strategy, backend="triton")
            assert_same_topk(
                res.rows, res.scores, top, np.take_along_axis(full, top, 1), 0.0, tol, full
            )


def test_pack_mask_layout():
    m = torch.zeros(70, dtype=torch.bool)
    m[[0, 31, 32, 69]] = True
    w = pack_mask(m)
    assert w.dtype == torch.int32 and w.shape == (3,)
    assert w.tolist() == [1 - 2**31, 1, 1 << 5]


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000])
def test_unpack_mask_inverts_pack_mask(n):
    m = torch.rand(n) < 0.4
    assert torch.equal(unpack_mask(pack_mask(m), n), m)
