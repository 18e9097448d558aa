"""int8 x int8 -> int32 products (torch._int_mm: VNNI on x86) over int8 codes, made exact.

The stored vector of a row is x = fl(scale * code) (linr.quantization); its exact score is
<q, x> with a float32 query. The query is rounded to int8 too, q = alpha * q8 + r, so the
integer product gives an approximate score alpha * scale * <q8, code> whose error is bounded
per row: |scale * <r, code>| <= 127 * scale * ||r||_1, plus the roundings of x and of the
float32 rescore (<= (D + 8) * 2^-24 * 127 * scale * (||q||_1 + ||r||_1)). With
lower = approx - e and upper = approx + e, the k-th largest lower bound T is at most the
k-th best exact score, so every row of the exact top k has upper >= T. Only those rows are
scored again, with the float32 formula of the plain path (linr/search/scanner.py): the results are
those of the plain path, at a quarter of the bytes read (an int8 row is D bytes).
"""

from __future__ import annotations

from functools import cache

import numpy as np
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
    b = torch.randint(-127, 128, (37, d), dtype=torch.int8, generator=g)
    # 1, 3 and 19 query columns: the kernels of single queries, small batches (`products`)
    # and batches (linr.cpu.batch) may differ.
    for cols in (1, 3, 19):
        a = torch.randint(-127, 128, (cols, d), dtype=torch.int8, generator=g)
        want = a.to(torch.int32) @ b.to(torch.int32).T
        try:
            got = torch._int_mm(b, a.T.contiguous()).T  # the layout of `products`
            # linr.cpu.batch's: queries on the left, the codes transposed, into `out`
            out = torch.empty((cols, b.shape[0]), dtype=torch.int32)
            torch._int_mm(a, b.T, out=out)
        except RuntimeError:
            return False
        if not (torch.equal(got, want) and torch.equal(out, want)):
            return False
    return True


def quantize_queries(q: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """q: float32 [B, D] -> (q8 int8 [B, D], alpha [B], c [B], umax [B], float64): q is
    alpha * q8 + r; a row with amax = 127 * scale has |exact - approx| <= c * amax, and
    |alpha * <q8, code>| <= umax for every code."""
    q64 = q.double().numpy()
    d = q64.shape[1]
    amax = np.abs(q64).max(1)
    alpha = np.where(amax > 0, amax / 127.0, 1.0)
    q8 = np.clip(np.round(q64 / alpha[:, None]), -127, 127)
    r1 = np.abs(q64 - alpha[:, None] * q8).sum(1)
    q1 = np.abs(q64).sum(1)
    u = (d + 8) * 2.0**-24
    c = (r1 + u / (1 - u) * (q1 + r1)) * (1 + 2.0**-20)  # (1 - u): the gamma_D of the sum
    umax = alpha * 127.0 * np.abs(q8).sum(1)
    return q8.astype(np.int8), alpha, c, umax


def products(q8: np.ndarray, codes: torch.Tensor) -> np.ndarray:
    """<q8_b, code_r>: int32 [B, n], exact. codes: int8 [n, D]. The codes are the left
    operand, in their own row-major layout: only the [D, B] queries need a reorder."""
    qt = torch.from_numpy(q8).T.contiguous()
    return torch._int_mm(codes, qt).T.contiguous().numpy()


def candidates(
    prod: np.ndarray,
    quant: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    scales: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    l2: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Columns that may hold an exact top-k entry of some query: upper >= T, the k-th
    largest lower bound in the query's row. prod: int32 [B, n] from `products`; quant:
    from quantize_queries; scales [n]; allowed: bool [n] or None (all); l2: (||x - c||^2
    [n], ||q||^2 - ||c||^2 [B]) for l2 scores 2<q - c, x> - ||x - c||^2 - const.
    Returns columns int64 [m], ascending.

    A float32 screen first, widened past its own rounding (2^-18 of the magnitudes), keeps
    a superset of the columns; their bounds are then taken again in float64."""
    _, alpha, c, umax = quant
    sc = scales.astype(np.float32)
    keep = np.zeros(prod.shape[1], bool)
    if l2 is not None:  # the magnitudes in the float32 l2 screen
        sqn, const = l2
        mags = 2 * float(sc.max(initial=0)), float(sqn.max(initial=0))
    for b in range(prod.shape[0]):
        e = 127.0 * c[b]
        ew = np.float32(e + 2.0**-18 * (umax[b] + e))
        u = np.multiply(prod[b], np.float32(alpha[b]), dtype=np.float32)
        lo = np.subtract(u, ew, out=np.empty_like(u))
        lo *= sc
        up = np.add(u, ew, out=u)
        up *= sc
        if l2 is not None:
            slack = 2.0**-18 * (mags[0] * (umax[b] + e) + mags[1] + abs(const[b]))
            shift = np.float32(float(const[b]) + slack)
            lo = 2 * lo - sqn - shift
            up = 2 * up - sqn - np.float32(float(const[b]) - slack)
        if allowed is not None:
            lo[~allowed] = -np.inf
            up[~allowed] = -np.inf
        t0 = kth_lower_bound(lo, k)  # <= T: the columns kept below are a superset
        cols = np.flatnonzero(up >= t0) if t0 > -np.inf else np.flatnonzero(up > t0)
        # float64 bounds of those columns (the rigorous ones), and T among them.
        s64 = scales[cols].astype(np.float64)
        a = prod[b, cols] * alpha[b] * s64
        err = e * s64
        if l2 is not None:
            sqn64 = l2[0][cols].astype(np.float64)
            const64 = float(l2[1][b])
            a = 2 * a - sqn64 - const64
            err = 2 * err + 2.0**-20 * (np.abs(a) + 2 * err + sqn64 + abs(const64))
        lo64, up64 = a - err, a + err
        if cols.shape[0] > k:
            t = np.partition(lo64, lo64.shape[0] - k)[lo64.shape[0] - k]
            cols = cols[up64 >= t]
        keep[cols] = True
    return np.flatnonzero(keep)
