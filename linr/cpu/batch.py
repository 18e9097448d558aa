"""Batches of queries on CPU (more than linr.cpu.small.MAX_BATCH): products in blocks that
stay in cache, then a look at only the entries that can reach the top k.

A batch is bound by arithmetic, and by what is done with the [rows, B] scores after it:
faiss's knn (BLAS + a heap per query) spends 5.6 s of its 7.9 s at 1M x 128, B = 1,024,
k = 100 on the dev machine in the heaps, against 2.3 s in the products. Here each block of
rows is scored (torch.mm for fp32 and fp16, torch._int_mm for int8), then:
- the maxima of groups of _GROUP consecutive rows bound every score of the group, and each
  query keeps T, a lower bound of its k-th best score (the k-th largest lower bound of the
  rows seen so far). Only the (group, query) pairs whose bound reaches T are opened;
- the entries of an opened group that reach T are kept, with their bounds, and T rises.
int8 products (stored codes and the screen below) start T from a sample of blocks spread
over the rows (_warm_up), so that from the first block on a block costs its product, one
pass of maxima and a look at a few pairs. int8
tests the integer maxima, then the entries, against thresholds on the products
(_thresholds) before any float64 bound is taken. The scan order is kept until a write
(_layout).

int8: the product of int8 codes with the query rounded to int8 gives, per row, bounds
lower <= exact <= upper (linr.cpu.int8 derives them). The rows of a block are ordered by
scale so that a group's scale range is narrow and its integer maxima bound it tightly; the
kept rows whose upper bound reaches the final T are decoded and scored again with the
float32 formula of the plain path. fp32 and fp16, 256 queries or more (_screens): each
block's rows are rounded to int8 at their own scale and screened the same way, the bounds
widened by the rounding; the kept rows are scored again in float32 (an int8 product costs
a third to a fifth of a float32 one on AMD EPYC). Fewer queries: the products are the scores, as in
the plain path (linr/search/scanner.py), up to float32 summation order, which BLAS does not
fix either; l2 rows are ordered by squared norm for the same reason as int8 rows by scale.
Ties keep ascending rows (linr.ops.merge_topk).
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from linr.cpu import int8
from linr.cpu.small import MAX_BATCH, _dot_rows_faiss
from linr.ops.merge_topk import merge_topk, segmented_topk
from linr.search.plan import faiss_module

# Entries of one [C, B] product block: 2^21 (8 MB) stays in the caches of the dev machine.
# At 1M x 128, B = 1,024, an int8 product plus the group maxima took 0.39-0.43 s with
# 2,048-row blocks against 1.4-1.9 s with 4,096 or 8,192 rows (the block left the cache).
_BLOCK_ENTRIES = 1 << 21
_MAX_CHUNK = 1 << 16
# Rows per group of the bound: 16, 32 and 64 cost the same pass of maxima (0.10-0.11 s
# over 1G entries); 32 keeps the [C / 32, B] bound matrix small.
_GROUP = 32
# Kept entries are pruned against the current T when they have doubled since the last
# prune, which bounds their memory by ~2x what the final T keeps.
_PRUNE_MIN = 1 << 16
# Fewer allowed rows than this many blocks take the blocked scan of linr/search/scanner.py:
# the first block, which sets T, costs a full selection. At 1M x 128 with a 1% filter (10k
# rows) this path took 6-91 ms against 5-20 ms there (B = 17-256); at 34% it took 2-8x less.
_MIN_BLOCKS = 4
# and fewer than this many rows: at B = 1,024 with a 1% filter (10k rows, 5 blocks) this
# path took 169 ms (int8 421 ms) against 114 ms (127 ms) there (bench_peers.py).
_MIN_ROWS = 1 << 15
# fp32 and fp16 batches of at least this many queries are screened with int8 products
# (_screens).
_SCREEN_MIN_BATCH = 256
# ... and where a float32 block product costs at least this many int8 ones. At 1M x 128 on
# the dev machine's AMD EPYC, where that ratio measured 3.2-4.2 (B = 1,024) and 2.3 (256),
# the screen took 0.55x the float path's time at B = 1,024, 0.58x at 512, 0.50x at 256 and
# 1.07x at 64: the rescore and the looser bounds cost less than a float32 product.
_SCREEN_GAIN = 2.0
# int8 and screened rows are decoded and scored again this many values at a time (16 MB).
_RESCORE_VALUES = 1 << 22
# New lower bounds are merged into the top k when this many (or B) have come.
_MERGE_MIN = 4096
# Blocks scanned first to raise T (_warm_up): at most this many, and one in _WARM_SHARE.
_WARM_BLOCKS = 64
_WARM_SHARE = 8


def applies(store: Any, queries: Any, k: int, n_allowed: int) -> bool:
    """True when this path serves the search: CPU, plain (single-vector) queries, a batch
    above linr.cpu.small.MAX_BATCH, fp32, fp16 or int8 codes, and at least _MIN_BLOCKS
    blocks and _MIN_ROWS rows allowed."""
    if store.device.type != "cpu" or queries.multi or queries.batch <= MAX_BATCH:
        return False
    if os.environ.get("LINR_CPU_BATCH", "") == "off":
        return False
    if n_allowed < max(_MIN_BLOCKS * _chunk_rows(queries.batch), _MIN_ROWS):
        return False
    if store.quantization == "int8":
        return int8.supported(store.dim)
    return store.quantization in ("fp32", "fp16")


def _screens(store: Any, b: int) -> bool:
    """fp32 and fp16 rows are screened with int8 products (each row rounded to int8 at
    its own scale, block by block; the bounds cover the rounding) and the kept entries
    scored again in float32, where int8 products are enough cheaper to pay for the looser
    bounds: at 1M x 128, B = 1,024 on AMD EPYC the int8 products took 0.35-0.4 s against
    1.6-2.1 s in float32; the whole search took 0.55x the float path's time at B = 1,024
    and 0.50x at 256 (_SCREEN_GAIN). Measured once per dimension, batch size and thread
    count (_screen_pays)."""
    if store.quantization not in ("fp32", "fp16") or b < _SCREEN_MIN_BATCH:
        return False
    if os.environ.get("LINR_CPU_SCREEN", "") == "off" or not int8.supported(store.dim):
        return False
    return _screen_pays(store.dim, 1 << min(b.bit_length() - 1, 10), torch.get_num_threads())


@cache
def _screen_pays(d: int, b: int, threads: int) -> bool:
    """Whether rounding a block of 2,048 rows to int8 and its int8 product with b queries
    take at most 1 / _SCREEN_GAIN of the float32 product on this machine, with `threads`
    torch threads (best of 5). Timed, so two machines may choose differently; either way
    the results are the plain path's, up to float32 summation order:
    3.2-5.7x at B = 1,024 and 2.3x at B = 256 on the dev machine's AMD EPYC; 3.3x at
    1,024 on its Intel Xeon, where MKL's sgemm is fast."""
    g = torch.Generator().manual_seed(d)
    x = torch.randn((2048, d), generator=g)
    q = torch.randn((b, d), generator=g)
    q8 = torch.randint(-127, 128, (b, d), dtype=torch.int8, generator=g)
    sc = (torch.maximum(-x.amin(1), x.amax(1)) / 127).clamp_(min=1e-30)[:, None]

    def best(f: Any) -> float:
        f()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    fp = best(lambda: torch.mm(q, x.T))
    i8 = best(
        lambda: torch._int_mm(q8, torch.div(x, sc).round_().clamp_(-127, 127).to(torch.int8).T)
    )
    return fp >= _SCREEN_GAIN * i8


def _row_scales(store: Any, n_rows: int) -> torch.Tensor:
    """float32 [n_rows]: max |x_i| / 127 per row (at least the smallest normal float32, so
    that a zero row divides), in pieces."""
    out = torch.empty(n_rows, dtype=torch.float32)
    step = max(1, (1 << 22) // max(store.dim, 1))
    for r0 in range(0, n_rows, step):
        r1 = min(r0 + step, n_rows)
        x = store.codes[r0:r1]  # amax and amin: 27 ms at 1M x 128, aminmax 150 ms
        out[r0:r1] = torch.maximum(-x.amin(1), x.amax(1)).float() / 127.0
    return out.clamp_(min=torch.finfo(torch.float32).tiny)


def _chunk_rows(b: int) -> int:
    return max(_GROUP, min(_MAX_CHUNK, _BLOCK_ENTRIES // b // _GROUP * _GROUP))


@dataclass
class _Model:
    """How a product P[row, query] bounds the score, per row and per query (float64).

    int8 (stored or screened), ip: sc * (a * P -/+ e); l2: 2 * that - sqn - const, widened
    by `slack`.
    fp32 and fp16: a = sc = 1, e = 0; l2 scores are (2 * P - sqn) - const in float32."""

    int8: bool  # products of int8 codes (the stored ones, or the screen's)
    screen: bool  # float rows rounded to int8 block by block (_screens)
    l2: bool
    a: torch.Tensor  # [B]
    e: torch.Tensor  # [B]
    const: torch.Tensor  # [B] (0 for ip)
    slack: torch.Tensor  # [B]: widening of the l2 bounds (float32 rounding)
    mag: torch.Tensor  # [B]: bounds |sc * (a * P)| + sc * e over the rows (0 for fp32)


def search(
    store: Any,
    metric: str,
    queries: Any,
    k: int,
    n_rows: int,
    rows: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k over `rows` (the allowed rows, int64 ascending) or, when None, every row of
    [0, n_rows). queries are prepared (l2: centred, with l2_const). Returns (scores float32
    [B, k] padded -inf, rows int64 [B, k] padded -1), by (score desc, row asc)."""
    q = queries.q.contiguous()
    b = q.shape[0]
    l2 = metric == "l2"
    screen = _screens(store, b)
    is8 = store.quantization == "int8" or screen
    layout = _layout(store, is8, screen, l2, n_rows, rows)
    const = queries.l2_const.double() if l2 else torch.zeros(b, dtype=torch.float64)
    if is8:
        q8, alpha, c, umax = int8.quantize_queries(q)
        e = torch.from_numpy(127.0 * c)
        if screen:  # |<q, x - scale * code>| <= scale * (1/2 + 2^-16) * ||q||_1 (the rounding)
            e += (0.5 + 2.0**-16) * q.double().abs().sum(1)
        assert layout.smax is not None
        smax = float(layout.smax.max()) if layout.smax.numel() else 0.0
        mag = smax * (torch.from_numpy(umax) + e)
        lhs = torch.from_numpy(q8)  # [B, D]: _int_mm(lhs, codes [C, D].T)
        a = torch.from_numpy(alpha)
    else:
        lhs = q
        a, e = torch.ones(b, dtype=torch.float64), torch.zeros(b, dtype=torch.float64)
        mag = torch.zeros(b, dtype=torch.float64)
    slack = torch.zeros(b, dtype=torch.float64)
    if l2:
        sqn_max = float(store.sqnorms[:n_rows].max()) if n_rows else 0.0
        slack = 2.0**-18 * (2 * mag + sqn_max + const.abs())
    model = _Model(is8, screen, l2, a, e, const, slack, mag)

    n = layout.rows.shape[0]
    chunk = _chunk_rows(b)
    ends = layout.block_ends(chunk)
    best = _Lower(model, b, k)
    kept = _Kept()
    out = torch.empty((b, chunk), dtype=torch.int32 if is8 else torch.float32)
    sample = _warm_up(store, model, lhs, layout, n, chunk, best, out)
    for j, c0 in enumerate(range(0, n, chunk)):
        c1 = min(c0 + chunk, n)
        _scan_block(store, model, lhs, layout, c0, c1, best, kept, out, ends[j], j not in sample)
    best.merge()
    return _finish(store, model, q, kept, best.widened(), k)


# The scan order of the last rows searched, per store, until its rows change.
_LAYOUTS: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Any, _Layout]] = (
    weakref.WeakKeyDictionary()
)


def _layout(
    store: Any, is8: bool, screen: bool, l2: bool, n_rows: int, rows: torch.Tensor | None
) -> _Layout:
    """The scan order of `rows` (None: [0, n_rows)), kept per store until a write: at 1M x
    128 the sort of int8 rows by scale took 0.1 s of a 1.4 s batch. `rows` is matched by
    identity (linr.mask_cache hands the same tensor to a repeated filter)."""
    ptrs = tuple(
        0 if t is None else t.data_ptr() for t in (store.codes, store.scales, store.sqnorms)
    )
    key = (store.generation, ptrs, n_rows, is8, screen, l2)
    got = _LAYOUTS.get(store)
    if got is not None and got[0] == key and got[1] is rows:
        return got[2]
    sub = torch.arange(n_rows) if rows is None else rows
    view = rows is None and not l2 and (not is8 or screen)  # as _Layout.build orders them
    scales = _row_scales(store, n_rows) if screen else store.scales
    lay = _Layout.build(store, is8, screen, l2, sub, view, scales)
    _LAYOUTS[store] = (key, rows, lay)
    return lay


def _warm_up(
    store: Any,
    model: _Model,
    lhs: torch.Tensor,
    lay: _Layout,
    n: int,
    chunk: int,
    best: _Lower,
    out: torch.Tensor,
) -> frozenset[int]:
    """Raises T before the scan from a sample of blocks spread over the rows: each
    query's best row of every group of those blocks (distinct rows: a lower bound of each
    makes a valid T; _group_lower). Returns the sample's block numbers, whose lower bounds
    the scan then leaves out (a row counted twice could lift T past the k-th score).

    T from the first block alone is the k-th of 2,048 rows: at 1M x 128, B = 1,024 the
    first 10 blocks then took 30 ms each against 2 ms once T had risen (most groups
    opened), 0.3 s of 1.4 s."""
    full = n // chunk
    w = min(_WARM_BLOCKS, full // _WARM_SHARE)
    # int8 products only: they are exact, so the sample's bounds are those the scan would
    # take. A float32 product computed twice need not round alike (BLAS), and T must not
    # rise past the score the scan keeps.
    if w == 0 or not model.int8:
        return frozenset()
    picks = [j * full // w for j in range(w)]  # distinct: full // w >= _WARM_SHARE
    b = lhs.shape[0]
    ng = chunk // _GROUP
    lows = []
    for j in picks:
        p = _product(store, model, lhs, lay, j * chunk, (j + 1) * chunk, out)
        g0 = j * chunk // _GROUP
        lows.append(_group_lower(model, lay, p.view(b, ng, _GROUP).amax(2), g0))
    best.seed(torch.cat(lows))
    return frozenset(picks)


class _Kept:
    """Entries that may reach the top k: query, row, upper bound (float64; fp32/fp16: the
    float32 score itself; int8: the row is scored again at the end)."""

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.size = 0
        self.pruned = 0

    def add(self, qb: torch.Tensor, row: torch.Tensor, upper: torch.Tensor) -> None:
        self.parts.append((qb, row, upper))
        self.size += qb.shape[0]

    def take(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The entries whose upper bound reaches t[query]."""
        if not self.parts:
            empty = torch.empty(0, dtype=torch.int64)
            return empty, empty, torch.empty(0, dtype=torch.float64)
        qb, row, up = (torch.cat(x) for x in zip(*self.parts, strict=True))
        keep = up >= t[qb]
        qb, row, up = qb[keep], row[keep], up[keep]
        self.parts, self.size, self.pruned = [(qb, row, up)], qb.shape[0], qb.shape[0]
        return qb, row, up

    def maybe_prune(self, t: torch.Tensor) -> None:
        if self.size > max(_PRUNE_MIN, 2 * self.pruned):
            self.take(t)


@dataclass
class _Layout:
    """The rows in scan order and, per group of _GROUP consecutive ones, the extremes of
    the per-row terms of the bounds. Stored int8 rows are ordered by scale, l2 rows of
    floats by squared norm: then a group's terms are nearly equal and its bound is tight."""

    rows: torch.Tensor  # [n] int64
    view: bool  # rows are 0..n-1: blocks are views of the codes
    scale: torch.Tensor | None  # int8: [groups * _GROUP] float64, in scan order
    smin: torch.Tensor | None  # int8: [groups]
    smax: torch.Tensor | None
    sqn: torch.Tensor | None  # l2: [groups * _GROUP] float32, in scan order
    sqmin: torch.Tensor | None  # l2: [groups] float64
    sqmax: torch.Tensor | None
    ends: dict[int, list[tuple[float, float, float]]]  # block_ends by chunk

    @classmethod
    def build(
        cls,
        store: Any,
        is8: bool,
        screen: bool,
        l2: bool,
        rows: torch.Tensor,
        view: bool,
        scales: Any,
    ) -> _Layout:
        n = rows.shape[0]
        pad = -n % _GROUP
        scale = smin = smax = sqn = sqmin = sqmax = None
        # Stored int8 rows by scale; l2 rows of floats (screened or not) by squared norm.
        # The screen's ip rows stay in place (the blocks are then views, without a sort
        # and a gather: 1.91 s against 2.07 s at 1M x 128, B = 1,024; their scales, max
        # |x_i| / 127, vary little).
        if l2 and (screen or not is8):
            rows = rows[torch.argsort(store.sqnorms.index_select(0, rows))]
        elif is8 and not screen:
            rows = rows[torch.argsort(scales.index_select(0, rows))]
        if is8:
            key = scales.index_select(0, rows).double()
            scale = torch.cat([key, key[-1:].expand(pad)])
            g = scale.view(-1, _GROUP)
            smin, smax = g.amin(1), g.amax(1)
        if l2:
            sqn = store.sqnorms.index_select(0, rows)
            sq = sqn.double()
            sqmin = torch.cat([sq, sq.new_full((pad,), torch.inf)]).view(-1, _GROUP).amin(1)
            sqmax = torch.cat([sq, sq.new_zeros(pad)]).view(-1, _GROUP).amax(1)
            sqn = torch.cat([sqn, sqn.new_zeros(pad)])
        return cls(rows, view, scale, smin, smax, sqn, sqmin, sqmax, {})

    def block_ends(self, chunk: int) -> list[tuple[float, float, float]]:
        """Per block of `chunk` rows: the extremes (largest scale, smallest scale, smallest
        squared norm) of its groups, for the pre-test of _open (1, 1, 0 where unused)."""
        if chunk not in self.ends:
            per = chunk // _GROUP
            ng = -(-self.rows.shape[0] // _GROUP)

            def fold(v: torch.Tensor | None, big: bool, unused: float) -> list[float]:
                if v is None:
                    return [unused] * (-(-ng // per))
                x = torch.cat([v, v.new_full((-ng % per,), -torch.inf if big else torch.inf)])
                x = x.view(-1, per)
                return (x.amax(1) if big else x.amin(1)).tolist()

            self.ends[chunk] = list(
                zip(
                    fold(self.smax, True, 1.0),
                    fold(self.smin, False, 1.0),
                    fold(self.sqmin, False, 0.0),
                    strict=True,
                )
            )
        return self.ends[chunk]

    def terms(
        self, c0: int, c1: int, at: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(scale, sqn) of the rows at scan positions `at`, or, when None, of [c0, c1) as
        columns [C, 1]."""
        out: list[torch.Tensor | None] = []
        for v in (self.scale, self.sqn):
            if v is None:
                out.append(None)
            elif at is None:
                out.append(v[c0:c1, None])
            else:
                out.append(v.index_select(0, at))
        return out[0], out[1]


def _product(
    store: Any, model: _Model, lhs: torch.Tensor, lay: _Layout, c0: int, c1: int, out: Any
) -> torch.Tensor:
    """[B, C] products of every query with the rows at scan positions [c0, c1): a (query,
    group) pair's products are contiguous (2 cache lines to gather instead of 32 in [C, B],
    one per row). Full blocks write into `out` [B, chunk]: a fresh 8 MB product per block
    cost page faults, up to 440k in one search at 1M x 128 (int8 products 1.9 s instead of
    0.34 s)."""
    block = store.codes[c0:c1] if lay.view else store.codes.index_select(0, lay.rows[c0:c1])
    dst = {"out": out} if c1 - c0 == out.shape[1] else {}
    if model.screen:  # round each row to int8 at its scale (the bound's e covers it)
        assert lay.scale is not None  # float64 of float32 scales: .float() is exact
        x = torch.div(block.float(), lay.scale[c0:c1, None].float())
        block = x.round_().clamp_(-127, 127).to(torch.int8)
    if model.int8:
        return torch._int_mm(lhs, block.T, **dst)  # int32, exact
    return torch.mm(lhs, (block.float() if block.dtype != torch.float32 else block).T, **dst)


def _scan_block(
    store: Any,
    model: _Model,
    lhs: torch.Tensor,
    lay: _Layout,
    c0: int,
    c1: int,
    best: _Lower,
    kept: _Kept,
    out: torch.Tensor,
    ends: tuple[float, float, float],
    adds: bool,
) -> None:
    """Scores the rows at scan positions [c0, c1) (c0 a multiple of _GROUP) against every
    query; keeps the entries that reach T and, when `adds`, passes their lower bounds to
    `best`. ends: the block's extremes (_Layout.block_ends)."""
    p = _product(store, model, lhs, lay, c0, c1, out)
    b, c = p.shape
    ng = -(-c // _GROUP)
    if c % _GROUP:  # pad the last block; the padding entries are dropped below
        p = torch.cat([p, p.new_zeros((b, ng * _GROUP - c))], dim=1)
    seeded = adds and best.empty()
    if seeded:  # T still empty: from this block's own lower bounds, all merged
        best.seed(_lower(model, p[:, :c].T, slice(None), *lay.terms(c0, c1, None)))
    t = best.widened()  # [B]: T, lowered past float64 rounding
    g0 = c0 // _GROUP
    pmax = p.view(b, ng, _GROUP).amax(2)  # [B, ng]
    pair, thr = _open(model, lay, pmax, g0, t, ends)  # (query, group) as qi * ng + gi
    if pair.shape[0] == 0:
        return
    qi, gi = pair // ng, pair % ng
    vals = p.view(b * ng, _GROUP).index_select(0, pair)  # [m, G]
    # int8: the entries whose products reach their pair's threshold; then exact bounds.
    hit = vals >= thr[:, None] if thr is not None else torch.ones_like(vals, dtype=torch.bool)
    if c % _GROUP:
        hit[gi == ng - 1, c % _GROUP :] = False
    flat = torch.nonzero(hit.view(-1)).squeeze(1)
    which = flat // _GROUP
    qb = qi.index_select(0, which)
    at = (gi.index_select(0, which) + g0) * _GROUP + flat % _GROUP  # scan positions
    v = vals.view(-1).index_select(0, flat)
    sc, sqn = lay.terms(0, 0, at)
    up = _upper(model, v, qb, sc, sqn)
    keep = torch.nonzero(up >= t.index_select(0, qb)).squeeze(1)
    qb, at, v, up = (x.index_select(0, keep) for x in (qb, at, v, up))
    if adds and not seeded:
        sc, sqn = (None if x is None else x.index_select(0, keep) for x in (sc, sqn))
        if best.add(qb, _lower(model, v, qb, sc, sqn)):  # T rose: drop what no longer reaches it
            keep = torch.nonzero(up >= best.widened().index_select(0, qb)).squeeze(1)
            qb, at, up = (
                qb.index_select(0, keep),
                at.index_select(0, keep),
                up.index_select(0, keep),
            )
    kept.add(qb, lay.rows.index_select(0, at), up)
    kept.maybe_prune(best.widened())


def _open(
    model: _Model,
    lay: _Layout,
    pmax: torch.Tensor,
    g0: int,
    t: torch.Tensor,
    ends: tuple[float, float, float],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (query, group) pairs, as positions q * ng + g of pmax [B, ng] (the group maxima
    of the products, groups g0.. of the layout), of which some score may reach t [B];
    int8: with each pair's threshold on its products (_thresholds).

    int8: first the integer maxima against one threshold per query, from the block's
    extremes (`ends`), then one per pair from its group's: each is a threshold for every
    product of its range of rows (_thresholds), so neither drops an entry that may reach t."""
    if not model.int8:
        return torch.nonzero(_opened_float(model, lay, pmax, g0, t).view(-1)).squeeze(1), None
    smax_b, smin_b, sqmin_b = ends
    pair = torch.nonzero((pmax >= _thresholds(model, t, smax_b, smin_b, sqmin_b)[:, None]).view(-1))
    pair = pair.squeeze(1)
    if pair.shape[0] == 0:
        return pair, None
    assert lay.smin is not None and lay.smax is not None
    ng = pmax.shape[1]
    qi, gi = pair // ng, pair % ng + g0
    sqmin = 0.0 if lay.sqmin is None else lay.sqmin.index_select(0, gi)
    thr = _thresholds(
        model,
        t.index_select(0, qi),
        lay.smax.index_select(0, gi),
        lay.smin.index_select(0, gi),
        sqmin,
        qi,
    )
    keep = torch.nonzero(pmax.view(-1).index_select(0, pair) >= thr).squeeze(1)
    return pair.index_select(0, keep), thr.index_select(0, keep)


def _thresholds(
    model: _Model,
    t: torch.Tensor,
    smax: Any,
    smin: Any,
    sqmin: Any,
    q: torch.Tensor | None = None,
) -> torch.Tensor:
    """int8: int32 thresholds on the product P (per query, or per entry of q when given,
    with t and the row terms per entry): every P whose bound s * (a * P + e) reaches t,
    for a scale s in [smin, smax] (l2: 2 * that - sqn - const + slack, for sqn >= sqmin),
    is at least the threshold. The bound rises with P: y below is the least a * P + e."""

    def at(v: torch.Tensor) -> torch.Tensor:
        return v if q is None else v.index_select(0, q)

    r = t
    if model.l2:
        const, slack = at(model.const), at(model.slack)
        r = (t + sqmin + const - slack) / 2
        # Widened by 2^-40 of these magnitudes, past the float64 rounding of this sum and
        # of the exact test's (2^-52 of them), which may cancel.
        r = r - 2.0**-40 * (t.abs() + sqmin + const.abs() + slack)
    y = torch.where(r > 0, r / smax, r / smin)  # s * y >= r, s in [smin, smax]
    thr = ((y - at(model.e)) / at(model.a)).nan_to_num_(nan=-torch.inf, posinf=torch.inf)
    # - 1: past the float64 rounding of y and thr: their error is 2^-52 of |y| / a and
    # |e| / a, both < 2^32 (P and e / a are < 2^31) where thr is within the int32 range.
    return (thr.floor_() - 1).clamp_(-(2.0**31), 2.0**31 - 1).to(torch.int32)


def _opened_float(
    model: _Model, lay: _Layout, pmax: torch.Tensor, g0: int, t: torch.Tensor
) -> torch.Tensor:
    """fp32 and fp16: whether some score of each (query, group) may reach t [B]: bool
    [B, ng], from the group maxima of the products pmax [B, ng] (ip: the scores; groups
    g0.. of the layout)."""
    if not model.l2:  # the maxima are the largest scores
        return pmax >= t.float()[:, None]
    assert lay.sqmin is not None and lay.sqmax is not None
    g1 = g0 + pmax.shape[1]
    sqmin, sqmax = lay.sqmin[None, g0:g1], lay.sqmax[None, g0:g1]
    x = pmax.double()
    x = x + 2.0**-20 * (2 * x.abs() + sqmax + model.const.abs()[:, None])  # float32 rounding
    x = 2 * x - sqmin - model.const[:, None] + model.slack[:, None]
    return x >= t[:, None]


def _upper(
    model: _Model,
    vals: torch.Tensor,
    q: torch.Tensor,
    sc: torch.Tensor | None,
    sqn: torch.Tensor | None,
) -> torch.Tensor:
    """Upper bounds float64 [n] of products vals [n] of queries q [n] with rows whose terms
    are sc (int8 scale, float64) and sqn (l2). fp32/fp16: the float32 score."""
    if not model.int8:
        s = vals
        if model.l2:
            assert sqn is not None
            s = 2 * s - sqn - model.const.float().index_select(0, q)
        return s.double()
    assert sc is not None
    x = (vals.double() * model.a.index_select(0, q) + model.e.index_select(0, q)) * sc
    if model.l2:
        assert sqn is not None
        x = 2 * x - sqn.double() - (model.const - model.slack).index_select(0, q)
    return x


def _group_lower(model: _Model, lay: _Layout, pmax: torch.Tensor, g0: int) -> torch.Tensor:
    """Lower bounds float64 [ng, B] of the score of each query's best row in groups g0..
    of the layout, from the group maxima of the products pmax [B, ng]: the row is not
    known (amax took 0.12 ms a block, max with indices 1 ms), so the group's extremes
    stand for its scale and squared norm. int8 products only (_warm_up)."""
    g1 = g0 + pmax.shape[1]
    assert model.int8 and lay.smin is not None and lay.smax is not None
    x = (pmax.double() * model.a[:, None] - model.e[:, None]).T  # [ng, B]
    x = torch.where(x >= 0, x * lay.smin[g0:g1, None], x * lay.smax[g0:g1, None])
    if model.l2:
        assert lay.sqmax is not None
        x = 2 * x - lay.sqmax[g0:g1, None] - model.const[None, :] - model.slack[None, :]
    return x - 2.0**-40 * (x.abs() + model.mag[None, :])


def _lower(
    model: _Model,
    vals: torch.Tensor,
    q: torch.Tensor | slice,
    sc: torch.Tensor | None,
    sqn: torch.Tensor | None,
) -> torch.Tensor:
    """Lower bounds float64 of products vals: of queries q (an index per entry, or
    slice(None): every query along the last dimension) with rows whose terms sc (int8
    scale, float64) and sqn (l2) broadcast against vals. fp32/fp16: the float32 score."""

    def at(v: torch.Tensor) -> torch.Tensor:
        return v if isinstance(q, slice) else v.index_select(0, q)

    if not model.int8:
        s = vals
        if model.l2:
            assert sqn is not None
            s = 2 * s - sqn - at(model.const).float()
        return s.double()
    assert sc is not None
    x = (vals.double() * at(model.a) - at(model.e)) * sc
    if model.l2:
        assert sqn is not None
        x = 2 * x - sqn.double() - at(model.const) - at(model.slack)
    return x - 2.0**-40 * (x.abs() + at(model.mag))


class _Lower:
    """The k largest lower bounds of each query, T = the k-th. New bounds wait until a few
    thousand have come (T may lag: it stays a lower bound of the k-th best score)."""

    def __init__(self, model: _Model, b: int, k: int) -> None:
        self.state = torch.full((b, k), -torch.inf, dtype=torch.float64)
        self.k = k
        self.mag = model.mag
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.n_pending = 0
        self.merge_at = max(b, _MERGE_MIN)
        self._empty = True
        self._kth = self.state[:, k - 1].contiguous()
        self._t = self._widen()

    def empty(self) -> bool:
        if self._empty:  # the state only rises: once not empty, never again
            self._empty = bool(torch.isneginf(self.state[:, 0]).all())
        return self._empty

    def seed(self, low: torch.Tensor) -> None:
        """Merges the lower bounds low [C, B] (of distinct rows, none merged before)."""
        both = torch.cat([self.state, low.T], dim=1)
        self.state = torch.topk(both, self.k, dim=1).values.contiguous()
        self._changed()

    def widened(self) -> torch.Tensor:
        """T [B], lowered past the float64 rounding of the bounds compared with it."""
        return self._t

    def _changed(self) -> None:
        self._kth = self.state[:, self.k - 1].contiguous()
        self._t = self._widen()

    def _widen(self) -> torch.Tensor:
        t = self._kth
        # +inf (k or more scores overflowed) stays: inf - inf would be NaN, which no
        # comparison passes.
        return torch.where(torch.isfinite(t), t - 2.0**-40 * (t.abs() + self.mag), t)

    def add(self, qb: torch.Tensor, low: torch.Tensor) -> bool:
        """Takes lower bounds low [m] of queries qb [m]; True when the pending bounds were
        merged (T may have risen)."""
        up = torch.nonzero(low > self._kth.index_select(0, qb)).squeeze(1)
        if up.shape[0]:
            self.pending.append((qb.index_select(0, up), low.index_select(0, up)))
            self.n_pending += up.shape[0]
        if self.n_pending >= self.merge_at:
            self.merge()
            return True
        return False

    def merge(self) -> None:
        if not self.pending:
            return
        qb, low = (torch.cat(x) for x in zip(*self.pending, strict=True))
        self.pending, self.n_pending = [], 0
        touched, local = torch.unique(qb, return_inverse=True)
        padded = _per_query(local, low, touched.shape[0], -torch.inf)
        both = torch.cat([self.state[touched], padded], dim=1)
        self.state[touched] = torch.topk(both, self.k, dim=1).values
        self._changed()


def _per_query(qb: torch.Tensor, v: torch.Tensor, b: int, fill: float) -> torch.Tensor:
    """Values v [m] of queries qb [m] laid out as rows [B, max count], padded with fill."""
    order = torch.argsort(qb, stable=True)
    qs, vs = qb[order], v[order]
    counts = torch.bincount(qs, minlength=b)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(qs.shape[0]) - starts[qs]
    out = torch.full((b, int(counts.max())), fill, dtype=v.dtype)
    out[qs, pos] = vs
    return out


def _finish(
    store: Any, model: _Model, q: torch.Tensor, kept: _Kept, t: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact top k among the kept entries that reach the final T. int8 and screened
    rows are scored again query by query, each query's rows against its own vector (no
    [entries, D] gather of the queries: at 1M x 128, B = 1,024, int8 that took 0.35 s for
    ~490k entries), at most _RESCORE_VALUES decoded values at a time (a zero query keeps
    every row)."""
    b = q.shape[0]
    qb, row, up = kept.take(t)
    if not model.int8:  # fp32/fp16: the bound is the float32 score itself
        return segmented_topk(qb, up.float(), row, b, k)
    order = torch.argsort(qb, stable=True)
    qb, row = qb[order], row[order]
    qs, rs = qb.numpy(), row.numpy()
    bounds = np.searchsorted(qs, np.arange(b + 1))
    s = np.empty(rs.shape[0], dtype=np.float32)
    codes, qn = store.codes.numpy(), q.numpy()
    scales = None if model.screen else store.scales.numpy()
    # Screened fp32 rows: faiss's fvec_inner_products_by_idx scores them where they lie
    # (a numpy gather of ~700k rows took 0.21 s of 0.37 s here), as linr.cpu.small does.
    faiss = None
    if model.screen and codes.dtype == np.float32 and store.codes.is_contiguous():
        faiss = faiss_module()
    step = max(1, _RESCORE_VALUES // store.dim)

    # Overflow goes to +inf, as in the plain path's float32 product.
    with np.errstate(over="ignore", invalid="ignore"):
        for i in np.flatnonzero(bounds[1:] > bounds[:-1]):
            for r0 in range(bounds[i], bounds[i + 1], step):
                r1 = min(r0 + step, bounds[i + 1])
                s[r0:r1] = _rescore(codes, scales, qn[i : i + 1], rs[r0:r1], faiss)
    scores = torch.from_numpy(s)
    if model.l2:  # the plain path's l2 formula, as before
        scores = 2 * scores - store.sqnorms[row] - model.const.float()[qb]
    return segmented_topk(qb, scores, row, b, k)


def _rescore(
    codes: np.ndarray, scales: np.ndarray | None, q: np.ndarray, r: np.ndarray, faiss: Any
) -> np.ndarray:
    """<q, x_r> in float32 for q [1, D]: the plain path's decoded rows (int8: float32(code)
    * scale), with linr.cpu.small's by-index scoring where faiss is given (float32 rows,
    in place)."""
    if faiss is not None:
        return _dot_rows_faiss(codes, q, r, faiss)[0]
    x = codes[r].astype(np.float32)
    if scales is not None:
        x *= scales[r][:, None]
    x *= q[0]
    return x.sum(1)


def reference(
    store: Any, metric: str, queries: Any, k: int, n_rows: int, rows: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain twin: decode every allowed row, score with one float32 product, top k by
    (score desc, row asc). For tests."""
    sub = torch.arange(n_rows) if rows is None else rows
    x = store.codes[sub].float()
    if store.scales is not None:
        x = x * store.scales[sub][:, None]
    s = queries.q @ x.T
    if metric == "l2":
        s = 2 * s - store.sqnorms[sub][None, :] - queries.l2_const[:, None]
    pos = sub[None, :].expand_as(s)
    return merge_topk(s, pos, k)
