"""Top-c rows by the 1-bit estimate on the CPU (any device, in fact: plain torch).

Matching bits come from one integer matrix product per chunk: with codes unpacked to
+-1 int8, <q, x> = bits - 2 hamming, so m = (bits + <q, x>) / 2 (torch._int_mm, VNNI
on x86; float32 matmul where it is missing, exact for |<q, x>| < 2**24). Measured on the
2-core dev machine at 512 bits, 1,024 queries (benchmarks/bench_onebit.py has the
numbers in BENCHMARKS.md): ~440M pairs/s, against faiss's IndexBinaryFlat ~210M (its
heap ranks by Hamming only, not by the estimate), faiss.hammings ~50M and numpy's
bitwise_count ~20M.

Turning every pair's m into an estimate and a top-c would cost more than the product, so
each chunk first drops the pairs that cannot enter: its rows are ordered by norm and cut
into _NORM_GROUPS groups; in a group of norms [lo, hi] a pair with m matches scores at
most max(t[m] hi, t[m] lo) a_q (- lo^2 for l2), increasing in m, so only pairs whose m
reaches the query's current c-th estimate are scored exactly (linr.onebit.estimate) and
merged in (_min_dots). One bound for a whole chunk let ~20% of the pairs of the clustered
1M x 128 set through (norms vary); per group, ~2%. Rows are visited by descending norm, in
chunks: the first chunk is small and holds the largest norms, so the threshold is set early
and high, and a query whose c-th estimate a chunk cannot reach (no estimate exceeds its
largest norm times a_q for ip) is left out of that chunk's product; for ip no later chunk
can reach it either, and the scan stops when no query is left (on the clustered 1M x 128
set at 1,024 queries, 12.5% of the pairs were multiplied). Pre-filtering: only allowed
rows are read (a mask becomes the list of its rows).
"""

from __future__ import annotations

import numpy as np
import torch

from linr.onebit.estimate import cos_table
from linr.ops.merge_topk import merge_topk

_CHUNK_BYTES = 64 << 20  # int32 [B, chunk] products + the unpacked chunk
_FIRST_CHUNK = 2048  # rows before the threshold exists: every pair of them is scored
_INT_MIN = -(2**31)
_NORM_GROUPS = 16  # norm groups per chunk (module docstring)
# ub is computed in float64 and widened by this relative margin, far above the few fp32
# roundings (each 2**-24 relative) of the estimate itself: it must never be below it.
_UB_MARGIN = 2.0**-16


def unpack_pm1(codes: torch.Tensor) -> torch.Tensor:
    """uint8 [n, bits / 8] -> int8 [n, bits] of +-1 (bit set: +1), numpy's unpackbits."""
    bits = np.unpackbits(codes.cpu().numpy(), axis=1, bitorder="little").view(np.int8)
    return torch.from_numpy(bits * np.int8(2) - np.int8(1)).to(codes.device)


def _dots(q_pm: torch.Tensor, x_pm: torch.Tensor) -> torch.Tensor:
    """int32 [B, n] = q_pm @ x_pm.T, exact."""
    if q_pm.device.type == "cpu" and q_pm.shape[0] >= 17:  # _int_mm wants M > 16
        try:
            return torch._int_mm(q_pm, x_pm.T)
        except RuntimeError:
            pass
    return (q_pm.float() @ x_pm.float().T).to(torch.int32)


def popcount_u8(x: torch.Tensor) -> torch.Tensor:
    """int64 [...]: set bits of uint8 [..., W8] along the last axis."""
    lut = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)
    return lut.to(x.device)[x.long()].sum(-1)


def hamming_topk_cpu(
    q_codes: torch.Tensor,
    codes: torch.Tensor,
    norms: torch.Tensor,
    a_q: torch.Tensor,
    c: int,
    l2: bool,
    allowed: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-c rows by estimate. q_codes uint8 [B, W8]; codes uint8 [N, W8]; norms fp32 [N];
    a_q fp32 [B]; allowed bool [N] (mask) or rows int64 sorted (gather), or neither.
    Returns (est fp32 [B, c] padded -inf, rows int64 [B, c] padded -1), by estimate
    descending, equal estimates by ascending row."""
    b, bits = q_codes.shape[0], codes.shape[1] * 8
    dev = codes.device
    table = cos_table(bits).to(dev)
    t64 = table.double()
    a64 = a_q.double()
    q_pm = unpack_pm1(q_codes)
    best_s = torch.full((b, c), -torch.inf, device=dev)
    best_r = torch.full((b, c), -1, dtype=torch.int64, device=dev)
    if rows is None and allowed is not None:
        rows = torch.nonzero(allowed).flatten()  # rejected rows are never read
    pos = rows if rows is not None else torch.arange(codes.shape[0], device=dev)
    # Rows by descending norm (module docstring): the best estimates come first, and a
    # chunk whose largest possible estimate is below every query's c-th is not scanned.
    pos = pos[torch.argsort(norms[pos], descending=True, stable=True)]
    n_pos = pos.shape[0]
    chunk = max(256, _CHUNK_BYTES // (4 * b + bits))
    p0 = 0
    while p0 < n_pos:
        # Chunks double up to `chunk`: survivors per query stay ~c per chunk.
        p1 = min(p0 + min(chunk, max(_FIRST_CHUNK, p0)), n_pos)
        r = pos[p0:p1]
        p0 = p1
        nn = norms[r]
        tau = best_s[:, c - 1].double()
        active = _chunk_bound(a64, float(nn[-1]), float(nn[0]), l2) >= tau
        if not bool(active.any()):
            if not l2:  # later chunks have smaller norms, so smaller bounds: done
                break
            continue
        qi = torch.nonzero(active).flatten()  # the queries this chunk can still improve
        all_q = qi.shape[0] == b
        cc = codes[r]
        # Columns by ascending norm, cut into groups: each group's bound uses its own
        # [lo, hi], much tighter than the chunk's (varying norms let 20% of the pairs of a
        # clustered 1M x 128 set through one chunk-wide bound).
        order = torch.argsort(nn)
        cc, nn, r = cc[order], nn[order], r[order]
        d = _dots(q_pm if all_q else q_pm[qi], unpack_pm1(cc))  # [B', n] = 2 m - bits
        n_c = nn.shape[0]
        cuts = [g * n_c // _NORM_GROUPS for g in range(_NORM_GROUPS + 1)]
        cuts = sorted(set(cuts))
        lo = nn[torch.tensor(cuts[:-1])].double()
        hi = nn[torch.tensor(cuts[1:]) - 1].double()
        d_min = _min_dots(tau[qi], a64[qi], lo, hi, t64, l2)  # [B', groups]
        passed = torch.empty(d.shape, dtype=torch.bool, device=dev)
        for g, (g0, g1) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
            torch.ge(d[:, g0:g1], d_min[:, g : g + 1], out=passed[:, g0:g1])
        hb, hc = torch.nonzero(passed, as_tuple=True)  # by query, then column
        if hb.numel() == 0:
            continue
        m = (d[hb, hc].long() + bits) >> 1  # d + bits = 2 m
        hq = hb if all_q else qi[hb]  # the query of each pair, in the whole batch
        n_h = nn[hc]
        s = (table[m] * n_h) * a_q[hq]
        if l2:
            s = s - n_h * n_h
        # Survivors side by side per query ([B, most survivors], -inf padded), then one
        # top-c of (estimate desc, row asc) with the running best.
        counts = torch.bincount(hq, minlength=b)
        slot = torch.arange(hq.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[hq]
        width = int(counts.max())
        new_s = torch.full((b, width), -torch.inf, device=dev)
        new_r = torch.zeros((b, width), dtype=torch.int64, device=dev)
        new_s[hq, slot], new_r[hq, slot] = s, r[hc]
        best_s, best_r = merge_topk(
            torch.cat([best_s, new_s], 1), torch.cat([best_r.clamp(min=0), new_r], 1), c
        )
    return best_s, best_r


def _chunk_bound(a: torch.Tensor, lo: float, hi: float, l2: bool) -> torch.Tensor:
    """float64 [B]: no pair of query b and an item of norm in [lo, hi] estimates above this
    (t[m] <= 1; margins as in _min_dots). ip: hi a. l2: the largest n A - n^2 L over
    n in [lo, hi], A = a (1 + e), L = 1 - e. -inf never: an empty chunk does not occur."""
    eps = _UB_MARGIN
    big_a = a * (1 + eps)
    if not l2:
        return torch.where(big_a >= 0, big_a * hi, big_a * lo)
    n = (big_a / (2 * (1 - eps))).clamp(lo, hi)
    return n * big_a - n * n * (1 - eps)


def _min_dots(
    tau: torch.Tensor,
    a: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    t: torch.Tensor,
    l2: bool,
) -> torch.Tensor:
    """int32 [B, G]: the smallest dot (2 m - bits) a pair of query b and norm group g
    needs to reach estimate tau[b], from float64 tau [B], a_q [B], the group's norm range
    lo, hi [G] and the table t [bits + 1] (increasing).

    A pair's estimate is at most f(t[m]) a (1 + e) - L (1 - e) with f(t) = max(t hi, t lo)
    and L = lo^2 for l2 (else 0): e = _UB_MARGIN covers its float32 roundings. f is
    increasing, so the pair can reach tau only if f(t[m]) >= phi, i.e. t[m] >= phi / hi
    (phi >= 0) or t[m] >= phi / lo (phi < 0); one step of m below that is kept as well,
    for the rounding of the division. tau = -inf (fewer than c found) lets all through."""
    bits = t.shape[0] - 1
    eps = _UB_MARGIN
    big_l = (lo * lo)[None, :] if l2 else torch.zeros_like(lo)[None, :]
    phi = (tau[:, None] + big_l * (1 - eps)) / (a[:, None] * (1 + eps))  # [B, G]
    t_pos = torch.where(hi[None, :] > 0, phi / hi[None, :], torch.inf)
    t_neg = torch.where(lo[None, :] > 0, phi / lo[None, :], -torch.inf)
    t_star = torch.where(phi >= 0, t_pos, t_neg)
    t_star = torch.where(torch.isnan(t_star) | (a[:, None] <= 0), -torch.inf, t_star)
    m_min = torch.searchsorted(t, t_star.contiguous(), side="left") - 1
    return (2 * m_min.clamp(0, bits) - bits).to(torch.int32)
