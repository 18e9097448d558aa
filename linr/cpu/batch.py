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
Once T is near the k-th score (after a few blocks) a block costs its product and one pass
of maxima over it.

int8: the product of int8 codes with the query rounded to int8 gives, per row, bounds
lower <= exact <= upper (linr.cpu.int8 derives them). The rows of a block are ordered by
scale so that a group's scale range is narrow and its integer maxima bound it tightly; the
kept rows whose upper bound reaches the final T are decoded and scored again with the
float32 formula of the plain path. fp32 and fp16: the products are the scores, as in the
plain path (linr/search/scanner.py), up to float32 summation order, which BLAS does not
fix either; l2 rows are ordered by squared norm for the same reason as int8 rows by scale.
Ties keep ascending rows (linr.ops.merge_topk).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from linr.cpu import int8
from linr.cpu.small import MAX_BATCH
from linr.ops.merge_topk import merge_topk

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
# int8: kept rows are decoded and scored again this many at a time ([n, D] float32 each).
_RESCORE_ROWS = 1 << 15


def applies(store: Any, queries: Any, k: int, n_rows: int) -> bool:
    """True when this path serves the search: CPU, plain (single-vector) queries, a batch
    above linr.cpu.small.MAX_BATCH, fp32, fp16 or int8 codes."""
    if store.device.type != "cpu" or queries.multi or queries.batch <= MAX_BATCH:
        return False
    if os.environ.get("LINR_CPU_BATCH", "") == "off":
        return False
    if store.quantization == "int8":
        return int8.supported(store.dim)
    return store.quantization in ("fp32", "fp16")


@dataclass
class _Model:
    """How a product P[row, query] bounds the score, per row and per query (float64).

    int8, ip: sc * (a * P -/+ e); l2: 2 * that - sqn - const, widened by `slack`.
    fp32 and fp16: a = sc = 1, e = 0; l2 scores are (2 * P - sqn) - const in float32."""

    int8: bool
    l2: bool
    a: torch.Tensor  # [B]
    e: torch.Tensor  # [B]
    const: torch.Tensor  # [B] (0 for ip)
    slack: torch.Tensor  # [B]: widening of the l2 bounds (float32 rounding)


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
    is8 = store.quantization == "int8"
    const = queries.l2_const.double() if l2 else torch.zeros(b, dtype=torch.float64)
    if is8:
        q8, alpha, c, umax = int8.quantize_queries(q)
        e = torch.from_numpy(127.0 * c)
        smax = float(store.scales[:n_rows].max()) if n_rows else 0.0
        mag = 2 * smax * (torch.from_numpy(umax) + e)
        rhs = torch.from_numpy(q8).T.contiguous()  # [D, B]: _int_mm(codes [C, D], rhs)
        a = torch.from_numpy(alpha)
    else:
        rhs = q.T.contiguous()
        a, e = torch.ones(b, dtype=torch.float64), torch.zeros(b, dtype=torch.float64)
        mag = torch.zeros(b, dtype=torch.float64)
    slack = torch.zeros(b, dtype=torch.float64)
    if l2:
        sqn_max = float(store.sqnorms[:n_rows].max()) if n_rows else 0.0
        slack = 2.0**-18 * (mag + sqn_max + const.abs())
    model = _Model(is8, l2, a, e, const, slack)

    n = n_rows if rows is None else rows.shape[0]
    chunk = max(_GROUP, min(_MAX_CHUNK, _BLOCK_ENTRIES // b // _GROUP * _GROUP))
    state = torch.full((b, k), -torch.inf, dtype=torch.float64)  # top-k lower bounds
    kept = _Kept()
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        sub = torch.arange(c0, c1) if rows is None else rows[c0:c1]
        state = _scan_block(store, model, rhs, sub, state, kept, k)
    return _finish(store, model, q, kept, state[:, k - 1], k)


class _Kept:
    """Entries that may reach the top k: query, row, upper bound (float64), score or
    product (float32 scores for fp32/fp16; int8: the row is scored again at the end)."""

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


def _scan_block(
    store: Any,
    model: _Model,
    rhs: torch.Tensor,
    sub: torch.Tensor,
    state: torch.Tensor,
    kept: _Kept,
    k: int,
) -> torch.Tensor:
    """Scores rows `sub` (ascending) against every query; keeps the entries that reach T
    and returns the updated top-k lower bounds."""
    # Order rows by the per-row term of the bound (int8: scale; l2: squared norm) so that
    # consecutive rows, a group, have nearly equal terms and the group bound is tight.
    key = None
    if model.int8:
        key = store.scales.index_select(0, sub)
    elif model.l2:
        key = store.sqnorms.index_select(0, sub)
    if key is not None:
        order = torch.argsort(key)
        sub, key = sub[order], key[order]
    contiguous = int(sub[-1] - sub[0]) + 1 == sub.shape[0] and key is None
    if contiguous:
        block = store.codes[int(sub[0]) : int(sub[-1]) + 1]
    else:
        block = store.codes.index_select(0, sub)
    if model.int8:
        p = torch._int_mm(block, rhs)  # [C, B] int32, exact
    else:
        p = block.float() @ rhs if block.dtype != torch.float32 else block @ rhs
    c, b = p.shape
    ng = -(-c // _GROUP)
    if c % _GROUP:  # pad the last block with rows that never pass
        fill = torch.iinfo(torch.int32).min if model.int8 else -torch.inf
        p = torch.cat([p, p.new_full((ng * _GROUP - c, b), fill)])
    p3 = p.view(ng, _GROUP, b)
    t = state[:, k - 1]  # [B]
    gbound = _group_bound(store, model, p3.amax(1), sub, key, ng)  # [ng, B] float64
    gi, qi = torch.nonzero(gbound >= t[None, :], as_tuple=True)
    if gi.shape[0] == 0:
        return state
    vals = p3[gi, :, qi]  # [m, G]
    r_idx = gi[:, None] * _GROUP + torch.arange(_GROUP)[None, :]  # positions in the block
    valid = r_idx < c
    r_idx = r_idx.clamp(max=c - 1)
    lower, upper = _entry_bounds(store, model, vals, qi, sub[r_idx])
    hit = valid & (upper >= t[qi][:, None])
    qb = qi[:, None].expand_as(hit)[hit]
    row = sub[r_idx[hit]]
    low, up = lower[hit], upper[hit]
    state = _merge_lower(state, qb, low, k)
    t = state[:, k - 1]
    keep = up >= t[qb]
    kept.add(qb[keep], row[keep], up[keep])
    kept.maybe_prune(t)
    return state


def _group_bound(
    store: Any,
    model: _Model,
    pmax: torch.Tensor,
    sub: torch.Tensor,
    key: torch.Tensor | None,
    ng: int,
) -> torch.Tensor:
    """An upper bound of every score in each (group, query): [ng, B] float64, from the
    group maxima of the products pmax [ng, B]."""
    x = pmax.double()
    c = sub.shape[0]
    if model.int8:
        assert key is not None  # scales, ascending: a group's min and max are its ends
        x = x * model.a[None, :] + model.e[None, :]
        first = torch.arange(ng) * _GROUP
        last = (first + _GROUP - 1).clamp(max=c - 1)
        smin, smax = key[first].double(), key[last].double()
        x = torch.where(x >= 0, x * smax[:, None], x * smin[:, None])
        x = x + x.abs() * 2.0**-40
    if model.l2:
        sq = store.sqnorms.index_select(0, sub).double()
        pad = ng * _GROUP - c
        if pad:
            sq = torch.cat([sq, sq.new_full((pad,), torch.inf)])
        g = sq.view(ng, _GROUP)
        sqmin, sqmax = g.amin(1), g.masked_fill(g == torch.inf, 0).amax(1)
        rel = 2.0**-20 * (2 * x.abs() + sqmax[:, None] + model.const.abs()[None, :])
        x = 2 * x - sqmin[:, None] - model.const[None, :] + rel + model.slack[None, :]
    return x


def _entry_bounds(
    store: Any,
    model: _Model,
    vals: torch.Tensor,
    qi: torch.Tensor,
    rows: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) float64 [m, G] of the entries vals [m, G] (products of rows [m, G]
    with queries qi [m]). fp32/fp16: both are the float32 score."""
    if not model.int8:
        s = vals
        if model.l2:
            sqn = store.sqnorms[rows]
            s = 2 * s - sqn - model.const.float()[qi][:, None]
        s = s.double()
        return s, s
    sc = store.scales[rows].double()
    approx = vals.double() * model.a[qi][:, None] * sc
    err = model.e[qi][:, None] * sc + approx.abs() * 2.0**-40
    if model.l2:
        sqn = store.sqnorms[rows].double()
        cst = model.const[qi][:, None]
        approx = 2 * approx - sqn - cst
        err = 2 * err + 2.0**-20 * (approx.abs() + 2 * err + sqn + cst.abs())
    return approx - err, approx + err


def _merge_lower(state: torch.Tensor, qb: torch.Tensor, low: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest of state [B, k] and the new lower bounds low [m] of queries qb [m]."""
    if qb.shape[0] == 0:
        return state
    b = state.shape[0]
    padded = _per_query(qb, low, b, -torch.inf)
    both = torch.cat([state, padded], dim=1)
    return torch.topk(both, k, dim=1).values


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
    """The exact top k among the kept entries that reach the final T."""
    b = q.shape[0]
    qb, row, up = kept.take(t)
    if model.int8:  # the plain path's float32 formula on the decoded rows
        s = torch.empty(qb.shape[0])
        for i in range(0, qb.shape[0], _RESCORE_ROWS):
            r, qq = row[i : i + _RESCORE_ROWS], qb[i : i + _RESCORE_ROWS]
            x = store.codes[r].float() * store.scales[r][:, None]
            s[i : i + _RESCORE_ROWS] = (x * q[qq]).sum(1)
        if model.l2:
            s = 2 * s - store.sqnorms[row] - model.const.float()[qb]
    else:
        s = up.float()  # fp32/fp16: the bound is the float32 score itself
    if qb.shape[0] == 0:
        empty = torch.full((b, k), -torch.inf)
        return empty, torch.full((b, k), -1, dtype=torch.int64)
    scores = _per_query(qb, s, b, -torch.inf)
    rows = _per_query(qb, row, b, 0)
    return merge_topk(scores, rows, k)


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
