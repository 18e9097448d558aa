"""Top-k of score rows in (score desc, column asc) order without sorting the rows.

torch.topk over 1M scores costs 2.7 ms on one core of the dev machine; the block-max bound
below costs 1.7 ms and orders ties exactly: the k-th largest of the maxima of k or more
disjoint blocks is at most the k-th largest score, so every entry of the top k (ties at
the k-th place included) is at least that bound, and only the few entries above it are
sorted."""

from __future__ import annotations

import torch

# Columns per block of the bound. 1024 at 1M scores: ~1k blocks (one small topk), and the
# bound sits near the k-th score for k <= 100 (benchmarks/bench_peers.py rows).
_BLOCK = 1024


def kth_lower_bound(s: torch.Tensor, k: int) -> torch.Tensor:
    """[B, 1]: at most the k-th largest entry of each row of s [B, n] (its smallest entry
    when n < k), and near it."""
    b, n = s.shape
    kk = min(k, n)
    blocks = n // _BLOCK
    if blocks >= kk:
        s = s[:, : blocks * _BLOCK].reshape(b, blocks, _BLOCK).amax(2)
    return torch.topk(s, kk, dim=1, sorted=False).values.amin(1, keepdim=True)


def topk_ordered(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """s: float [B, n] (-inf = not a candidate). Returns (scores [B, k] padded -inf,
    columns int64 [B, k] padded -1), each row by (score desc, column asc)."""
    b, n = s.shape
    out_s = torch.full((b, k), -torch.inf, dtype=s.dtype)
    out_c = torch.full((b, k), -1, dtype=torch.int64)
    if n == 0 or b == 0:
        return out_s, out_c
    bound = kth_lower_bound(s, k)
    keep = s >= bound
    if bool((bound == -torch.inf).any()):
        keep &= s > -torch.inf  # fewer than k real entries: pad instead of keeping -inf
    qi, col = keep.nonzero(as_tuple=True)  # by (query, column)
    vals = s[qi, col]
    # Order by (query asc, score desc, column asc): stable sorts, last key first.
    o = torch.sort(vals, descending=True, stable=True).indices
    o = o[torch.sort(qi[o], stable=True).indices]
    qi, col, vals = qi[o], col[o], vals[o]
    counts = torch.bincount(qi, minlength=b)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(qi.shape[0]) - start[qi]
    take = rank < k
    qi, rank = qi[take], rank[take]
    out_s[qi, rank] = vals[take]
    out_c[qi, rank] = col[take]
    return out_s, out_c
