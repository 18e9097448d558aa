"""Top-k of score rows in (score desc, column asc) order without sorting the rows.

torch.topk over 1M scores costs 2.7 ms on one core of the dev machine; the block-max bound
below costs 1.7 ms and orders ties exactly: the k-th largest of the maxima of k or more
disjoint blocks is at most the k-th largest score, so every entry of the top k (ties at
the k-th place included) is at least that bound, and only the few entries above it are
sorted. numpy, one thread: on a shared machine a torch op on a small tensor that opens a
parallel region waits for a preempted sibling thread (p90 2.4 ms against 0.16 ms on one
thread, a 214-row gather on the dev machine under load), and this path is a dozen of them.
"""

from __future__ import annotations

import numpy as np
import torch

# Columns per block of the bound. 1024 at 1M scores: ~1k blocks, and the bound sits near
# the k-th score for k <= 100 (benchmarks/bench_peers.py rows).
_BLOCK = 1024
_MIN_WIDTH = 8


def kth_lower_bound(s: np.ndarray, k: int) -> float:
    """At most the k-th largest entry of s [n] (its smallest entry when n < k), and near it."""
    n = s.shape[0]
    kk = min(k, n)
    # Blocks of _BLOCK columns, or fewer (at least 4k blocks) when n is small: a partition
    # of all 38,695 scores cost 70 us here, the maxima of 96-column blocks ~15 us.
    width = min(_BLOCK, n // (4 * kk))
    if width >= _MIN_WIDTH:
        blocks = n // width
        s = s[: blocks * width].reshape(blocks, width).max(1)
    return float(np.partition(s, s.shape[0] - kk)[s.shape[0] - kk])


def topk_ordered(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """s: float [B, n] (-inf = not a candidate). Returns (scores [B, k] padded -inf,
    columns int64 [B, k] padded -1), each row by (score desc, column asc)."""
    out_s, out_c = topk_ordered_np(s.numpy(), k)
    return torch.from_numpy(out_s), torch.from_numpy(out_c)


def topk_ordered_np(sn: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """topk_ordered on numpy arrays."""
    b, n = sn.shape
    out_s = np.full((b, k), -np.inf, dtype=sn.dtype)
    out_c = np.full((b, k), -1, dtype=np.int64)
    for i in range(b if n else 0):
        row = sn[i]
        if n <= k:  # every entry is in the top k: one sort, no bound
            cand = np.flatnonzero(row > -np.inf)
        else:
            bound = kth_lower_bound(row, k)
            cand = np.flatnonzero(row >= bound) if bound > -np.inf else np.flatnonzero(row > bound)
        vals = row[cand]
        top = np.argsort(-vals, kind="stable")[:k]  # ascending columns among equal scores
        out_s[i, : top.shape[0]] = vals[top]
        out_c[i, : top.shape[0]] = cand[top]
    return out_s, out_c
