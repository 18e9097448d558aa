"""merge_topk.py against its plain references (pure torch: no Triton needed)."""

import pytest
import torch

from linr.ops.merge_topk import (
    merge_topk,
    merge_topk_reference,
    pack_keys,
    segmented_topk,
    segmented_topk_reference,
    unpack_keys,
)


def _tied_scores(shape, gen, p_empty=0.2):
    """Scores from a small set (many exact ties, both zeros, negatives) with -inf holes."""
    pool = torch.tensor([-3.5, -1.0, -0.0, 0.0, 0.25, 1.0, 2.0, 1e30, -1e-30])
    s = pool[torch.randint(0, pool.numel(), shape, generator=gen)]
    return s.masked_fill(torch.rand(shape, generator=gen) < p_empty, -torch.inf)


def test_pack_roundtrip_and_order(gen):
    s = torch.cat([torch.randn(500, generator=gen) * 1e3, torch.tensor([0.0, -0.0, 1e-45])])
    p = torch.randint(0, 2**32 - 2, s.shape, generator=gen)
    back_s, back_p = unpack_keys(pack_keys(s, p))
    assert torch.equal(back_s, s + 0.0) and torch.equal(back_p, p)
    keys = pack_keys(s, p).tolist()
    for i in range(0, s.numel() - 1):
        a, b = (float(s[i]), int(p[i])), (float(s[i + 1]), int(p[i + 1]))
        better = a[0] > b[0] or (a[0] == b[0] and a[1] < b[1])
        assert (keys[i] > keys[i + 1]) == better or a == b


def test_negative_zero_ties_by_position():
    s = torch.tensor([[-0.0, 0.0, -0.0]])
    v, p = merge_topk(s, torch.tensor([[5, 7, 2]]), 3)
    assert p.tolist() == [[2, 5, 7]]


@pytest.mark.parametrize("b,m,k", [(1, 1, 1), (3, 50, 7), (4, 17, 40), (2, 300, 1000)])
def test_merge_topk_matches_reference(gen, b, m, k):
    s = _tied_scores((b, m), gen)
    p = torch.stack([torch.randperm(10 * m, generator=gen)[:m] for _ in range(b)])
    got = merge_topk(s, p, k)
    want = merge_topk_reference(s, p, k)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("n_seg,n,k", [(1, 0, 3), (5, 40, 3), (7, 200, 50), (3, 10, 1000)])
def test_segmented_topk_matches_reference(gen, n_seg, n, k):
    seg = torch.randint(0, n_seg, (n,), generator=gen)
    s = _tied_scores((n,), gen, p_empty=0.0)
    p = torch.randperm(5 * n + 1, generator=gen)[:n]
    got = segmented_topk(seg, s, p, n_seg, k)
    want = segmented_topk_reference(seg, s, p, n_seg, k)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
