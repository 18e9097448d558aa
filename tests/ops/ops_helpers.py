"""Input makers and the top-k oracle check shared by the linr.ops tests."""

from __future__ import annotations

import numpy as np
import torch

U = 2.0**-24  # fp32 unit roundoff


def make_codes(n: int, d: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    if dtype == torch.int8:
        return torch.randint(-127, 128, (n, d), generator=gen).to(torch.int8)
    return torch.randn(n, d, generator=gen).to(dtype)


def pack_bits(allowed: torch.Tensor) -> torch.Tensor:
    """int32 words, bit r % 32 of word r // 32 = allowed[r] (numpy, independent of linr)."""
    n = allowed.shape[0]
    bits = np.zeros(((n + 31) // 32) * 32, dtype=np.uint8)
    bits[:n] = allowed.cpu().numpy()
    return torch.from_numpy(np.packbits(bits, bitorder="little").view("<i4").copy())


def exact64(q, codes, scales, bias) -> torch.Tensor:
    """float64 [B, N] scores on the CPU: the kernels' plain definition."""
    from linr.ops.fused_scan import exact_scores

    cpu = [None if t is None else t.cpu() for t in (scales, bias)]
    return exact_scores(q.cpu(), codes.cpu(), *cpu)


def tolerance(q, codes, scales, bias) -> torch.Tensor:
    """Per query: bound on |fp32 score - exact| for the returned scores, which are fp32 dot
    products accumulated over D (error <= (D + 2) u sum_i |q_i c_i| for any summation
    order), then scaled and biased (2 roundings of at most u |value| each). Doubled for
    room; float64 reference error is negligible."""
    d = q.shape[1]
    mag = q.cpu().double().abs() @ codes.cpu().double().abs().T
    if scales is not None:
        mag = mag * scales.cpu().double().abs()[None, :]
    val = exact64(q, codes, scales, bias).abs()
    b = bias.cpu().double().abs()[None, :] if bias is not None else 0.0
    tol = 2 * ((d + 2) * U * mag + 2 * U * (val + b))
    return tol.amax(dim=1)


def check_topk(s, r, q, codes, k, *, scales=None, bias=None, allowed=None, min_clear=0.5):
    """Assert (s, r) is a correct top-k: padding, allowed and distinct rows, scores within
    the tolerance of the exact scores of the returned rows, order (score desc, row asc), the
    right set up to near-ties, and ids equal to the float64 reference at every position
    whose score is separated from its neighbours by more than twice the tolerance."""
    s, r = s.cpu(), r.cpu()
    b, n = q.shape[0], codes.shape[0]
    assert s.shape == (b, k) and r.shape == (b, k)
    assert s.dtype == torch.float32 and r.dtype == torch.int64
    if allowed is None:
        allowed = torch.ones(n, dtype=torch.bool)
    allowed = allowed.cpu()
    ex = exact64(q, codes, scales, bias).masked_fill(~allowed[None, :], -torch.inf)
    tol = tolerance(q, codes, scales, bias) if n else torch.zeros(b)
    m = min(k, int(allowed.sum()))
    clear_total = 0
    for i in range(b):
        assert (r[i, m:] == -1).all() and (s[i, m:] == -torch.inf).all(), "padding"
        got = r[i, :m]
        assert (got >= 0).all() and (got < n).all(), "rows in range"
        assert allowed[got].all(), "only allowed rows"
        assert torch.unique(got).numel() == m, "distinct rows"
        if m == 0:
            continue
        t = float(tol[i])
        err = (s[i, :m].double() - ex[i, got]).abs().max().item()
        assert err <= t, f"query {i}: score error {err} > tolerance {t}"
        d = s[i, : m - 1] - s[i, 1:m]
        assert (d >= 0).all(), "scores descending"
        assert (r[i, : m - 1][d == 0] < r[i, 1:m][d == 0]).all(), "ties by ascending row"
        ref_v, ref_r = torch.sort(ex[i], descending=True, stable=True)
        kth = float(ref_v[m - 1])
        assert (ex[i, got] >= kth - 2 * t).all(), "a returned row is not among the best"
        must = torch.nonzero(ex[i] > kth + 2 * t).flatten()
        assert torch.isin(must, got).all(), "a clear winner is missing"
        # Positions where the reference order is unambiguous must match exactly.
        nb = (
            ref_v[: m + 1] if ref_v.shape[0] > m else torch.cat([ref_v, ref_v.new_tensor([-1e300])])
        )
        gap_prev = torch.cat([nb.new_tensor([1e300]), nb[: m - 1] - nb[1:m]])
        gap_next = nb[:m] - nb[1 : m + 1]
        clear = (gap_prev > 2 * t) & (gap_next > 2 * t)
        assert (got[clear] == ref_r[:m][clear]).all(), f"query {i}: ids differ"
        clear_total += int(clear.sum())
    if b * m:
        assert clear_total >= min_clear * b * m, "test data too tied to compare ids"
