"""linr.ops.hamming (Triton, through the CPU interpreter) against the plain reference."""

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from linr.onebit.estimate import hamming_topk_reference  # noqa: E402
from linr.ops.hamming import hamming_topk  # noqa: E402
from linr.ops.mask_words import pack_mask  # noqa: E402


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("n,bits,c", [(1, 64, 1), (70, 64, 5), (333, 128, 20), (200, 192, 64)])
@pytest.mark.parametrize("filtering", ["none", "mask", "rows", "empty"])
@pytest.mark.parametrize("ties", [False, True])
def test_hamming_topk_matches_reference(gen, dev, metric, n, bits, c, filtering, ties):
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen)))
    b, w8 = 5, bits // 8
    if ties:  # a few distinct codes and one norm: many exact ties, decided by row
        codes = rng.integers(0, 256, (4, w8), dtype=np.uint8)[rng.integers(0, 4, n)]
        norms = np.full(n, 0.75, np.float32)
    else:
        codes = rng.integers(0, 256, (n, w8), dtype=np.uint8)
        norms = rng.uniform(0.1, 3, n).astype(np.float32)
    q_codes = rng.integers(0, 256, (b, w8), dtype=np.uint8)
    a_q = rng.uniform(0.5, 2, b).astype(np.float32)
    share = 0.0 if filtering == "empty" else 0.3
    allowed = None if filtering == "none" else rng.random(n) < share
    want_s, want_r = hamming_topk_reference(q_codes, codes, norms, a_q, c, metric, allowed)
    kw = {}
    if filtering == "rows":
        kw["rows"] = torch.nonzero(torch.from_numpy(allowed)).flatten().to(dev)
    elif allowed is not None:
        kw["mask_words"] = pack_mask(torch.from_numpy(allowed)).to(dev)
    got_s, got_r = hamming_topk(
        torch.from_numpy(q_codes).to(dev),
        torch.from_numpy(codes).to(dev),
        torch.from_numpy(norms).to(dev),
        torch.from_numpy(a_q).to(dev),
        c,
        metric == "l2",
        **kw,
    )
    np.testing.assert_array_equal(got_r.cpu().numpy(), want_r)
    np.testing.assert_array_equal(got_s.cpu().numpy(), want_s)


def test_index_search_through_triton(dev):
    """The index's 1-bit search with backend="triton" equals its CPU scan."""
    from linr.index import Index

    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 20)).astype(np.float32)
    idx = Index(20, "l2", quantization="1bit", bits=128, rerank="none", device=dev)
    idx.upsert(np.arange(300), x, [{"t": int(i % 3)} for i in range(300)])
    q = rng.standard_normal((4, 20)).astype(np.float32)
    for flt in (None, "t == 1"):
        a = idx.search(q, 7, flt, backend="triton")
        b = idx.search(q, 7, flt, backend="torch")
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)
