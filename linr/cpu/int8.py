"""int8 x int8 -> int32 products (torch._int_mm: VNNI on x86) over int8 codes, made exact.

The stored vector of a row is x = fl(scale * code) (linr.quantization); its exact score is
<q, x> with a float32 query. The query is rounded to int8 too, q = alpha * q8 + r, so the
integer product gives an approximate score alpha * scale * <q8, code> whose error is bounded
per row: |scale * <r, code>| <= 127 * scale * ||r||_1, plus the roundings of x and of the
float32 rescore (<= (D + 8) * 2^-24 * 127 * scale * (||q||_1 + ||r||_1)). With
lower = approx - e and upper = approx + e, the k-th largest lower bound T is at most the
k-th best exact score, so every row of the exact top k has upper >= T. Only those rows are
scored again, with the float32 formula of the plain path (linr.scan): the results are
those of the plain path, at a quarter of the bytes read (an int8 row is D bytes).
"""

from __future__ import annotations

from functools import cache

import torch

from linr.cpu.select import kth_lower_bound

# Integer products of int8 codes fit int32 while D * 127 * 127 < 2^31.
MAX_DIM = (2**31 - 1) // (127 * 127)


@cache
def supported(d: int) -> bool:
    """torch._int_mm gives exact int32 products at dimension d on this machine. Probed once
    per d, since its CPU kernels vary with the ISA: on torch 2.13 it is wrong at d = 1."""
    if not 1 <= d <= MAX_DIM or not hasattr(torch, "_int_mm"):
        return False
    g = torch.Generator().manual_seed(d)
    a = torch.randint(-127, 128, (3, d), dtype=torch.int8, generator=g)
    b = torch.randint(-127, 128, (37, d), dtype=torch.int8, generator=g)
    try:
        got = torch._int_mm(a, b.T)
    except RuntimeError:
        return False
    return bool(torch.equal(got, a.to(torch.int32) @ b.to(torch.int32).T))


def quantize_queries(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q: float32 [B, D] -> (q8 int8 [B, D], alpha float64 [B], c float64 [B]): q is
    alpha * q8 + r, and a row with amax = 127 * scale has |exact - approx| <= c * amax."""
    q64 = q.double()
    d = q.shape[1]
    amax = q64.abs().amax(1)
    alpha = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q8 = torch.round(q64 / alpha[:, None]).clamp_(-127, 127)
    r1 = (q64 - alpha[:, None] * q8).abs().sum(1)
    q1 = q64.abs().sum(1)
    c = (r1 + (d + 8) * 2.0**-24 * (q1 + r1)) * (1 + 2.0**-20)
    return q8.to(torch.int8), alpha, c


def approx_bounds(
    q8: torch.Tensor,
    alpha: torch.Tensor,
    c: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(approx <q, x>, error bound e) float64 [B, n] for int8 codes [n, D], scales [n]."""
    prod = torch._int_mm(q8, codes.T)  # [B, n] int32, exact
    s64 = scales.double()
    approx = prod.double().mul_(alpha[:, None]).mul_(s64[None, :])
    err = torch.outer(c, 127.0 * s64)
    return approx, err


def candidates(lower: torch.Tensor, upper: torch.Tensor, k: int) -> torch.Tensor:
    """Columns that may hold an exact top-k entry of some query: upper >= T, the k-th
    largest lower bound of the query's row. lower/upper: float64 [B, n], -inf where not
    allowed. Returns columns int64 [m], ascending."""
    # The block bound t0 <= T keeps a superset, among which T itself is found.
    t0 = kth_lower_bound(lower, k)
    cols = torch.nonzero(((upper >= t0) & (upper > -torch.inf)).any(0)).flatten()
    lo, up = lower[:, cols], upper[:, cols]
    t = torch.topk(lo, min(k, cols.shape[0]), dim=1, sorted=False).values.amin(1, keepdim=True)
    return cols[((up >= t) & (up > -torch.inf)).any(0)]
