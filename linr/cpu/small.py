"""Small query batches on CPU: one pass over the bytes the filter needs.

A single query is bound by reading the codes (38,695 x 384 fp32 is 59 MB; 1M x 128 is
512 MB), so this path reads each needed byte once and does little else:
- all rows, or most: one matrix-vector product over the codes in place, rejected rows set
  to -inf, and the bound selection of linr.cpu.select;
- few rows: only the allowed rows are scored, in place (faiss's
  fvec_inner_products_by_idx on the index's own buffer, split over the torch threads),
  with no copy of them;
- int8 codes: integer products over the codes (linr.cpu.int8), exact after a rescore.
The scores are those of the plain path (linr.scan: float32 products of the query with the
decoded rows, l2 as 2<q - c, x> - ||x - c||^2 - (||q||^2 - ||c||^2)) up to float32
summation order, which BLAS does not fix either.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from linr.cpu import int8
from linr.cpu.select import topk_ordered

# Queries up to this many take this path; beyond, products are compute bound and the
# blocked scan of linr.scan is the better loop.
MAX_BATCH = 16
# Score only the allowed rows when fewer than this fraction of the rows is allowed. At
# 1M x 128 (one query, 2 threads) scoring rows in place cost 32 ns per allowed row at 10%
# and 48 ns at 34%, against 23 ns per row for the full product: even near 50%.
_BY_ROWS_BELOW = 0.5
# Rows per thread below which one thread scores the allowed rows alone.
_ROWS_PER_THREAD = 4096

_pool: ThreadPoolExecutor | None = None


def applies(store: Any, queries: Any, k: int, n_rows: int) -> bool:
    """True when this path serves the search: CPU, plain (single-vector) queries, a small
    batch, fp32 or int8 codes, and a score block that fits the scan budget."""
    if store.device.type != "cpu" or queries.multi or queries.batch > MAX_BATCH:
        return False
    if os.environ.get("LINR_CPU_SMALL", "") == "off":
        return False
    if store.quantization == "int8":
        return int8.supported(store.dim)
    return store.quantization == "fp32"


def by_rows(n_allowed: int, n_rows: int) -> bool:
    """Score only the allowed rows (else every row, masked)."""
    return n_allowed < _BY_ROWS_BELOW * n_rows


def search(
    store: Any,
    metric: str,
    queries: Any,
    k: int,
    n_rows: int,
    allowed: torch.Tensor,
    n_allowed: int,
    rows: torch.Tensor | None = None,
    faiss: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k over rows [0, n_rows) where allowed [n_rows] holds; `rows`: the allowed rows
    (ascending) when known. queries are prepared (l2: centred, with l2_const). faiss: the
    module, when the caller's backend may use it (fvec_inner_products_by_idx).
    Returns (scores float32 [B, k] padded -inf, rows int64 [B, k] padded -1)."""
    if by_rows(n_allowed, n_rows):
        if rows is None:
            rows = torch.nonzero(allowed).flatten()
    else:
        rows = None
    where: torch.Tensor | None
    if store.quantization == "int8":
        s, where = _int8_scores(store, metric, queries, k, n_rows, allowed, rows)
    else:
        s, where = _fp32_scores(store, metric, queries, n_rows, allowed, rows, faiss)
    vals, cols = topk_ordered(s, k)
    out_r = where[cols.clamp(min=0)] if where is not None else cols
    return vals, out_r.masked_fill(vals == -torch.inf, -1)


def _finish(s: torch.Tensor, metric: str, queries: Any, sqn: torch.Tensor | None) -> torch.Tensor:
    if metric == "l2":
        assert sqn is not None and queries.l2_const is not None
        s = 2 * s - sqn[None, :] - queries.l2_const[:, None]
    return s


def _fp32_scores(
    store: Any,
    metric: str,
    queries: Any,
    n_rows: int,
    allowed: torch.Tensor,
    rows: torch.Tensor | None,
    faiss: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scores [B, m], the row of each column, or None when column = row)."""
    q = queries.q
    sqn = store.sqnorms
    if rows is not None:
        s = dot_rows(store.codes, q, rows, faiss)
        return _finish(s, metric, queries, None if sqn is None else sqn[rows]), rows
    codes = store.codes[:n_rows]
    s = _products(q, codes)
    s = _finish(s, metric, queries, None if sqn is None else sqn[:n_rows])
    if n_rows and not bool(allowed[:n_rows].all()):
        s = s.masked_fill_(~allowed[None, :n_rows], -torch.inf)
    return s, None


def _products(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """q [B, D] @ x [n, D].T. One query as a 2-row product: gemv's sums depend on a row's
    place in x (tail rows), so equal rows would score differently; as fast here (1M x 128:
    227 ms vs 237 ms, a loaded moment of the dev machine)."""
    if q.shape[0] == 1:
        return (torch.cat([q, q]) @ x.T)[:1]
    return q @ x.T


def dot_rows(
    codes: torch.Tensor, q: torch.Tensor, rows: torch.Tensor, faiss: Any = None
) -> torch.Tensor:
    """<q_b, codes[r]> for r in rows: float32 [B, len(rows)], reading only those rows
    (with faiss; without, a gathered copy). codes: float32 [N, D]; rows: int64, each < N."""
    if faiss is None or not codes.is_contiguous():
        return q @ codes.index_select(0, rows).T
    b, d = q.shape
    m = rows.shape[0]
    out = torch.empty((b, m), dtype=torch.float32)
    qn, cn, rn, on = q.contiguous().numpy(), codes.numpy(), rows.numpy(), out.numpy()
    parts = max(1, min(torch.get_num_threads(), m // _ROWS_PER_THREAD))
    step = math.ceil(m / parts)

    def part(bi: int, r0: int) -> None:
        r1 = min(r0 + step, m)
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(on[bi, r0:r1]),
            faiss.swig_ptr(qn[bi]),
            faiss.swig_ptr(cn),
            faiss.swig_ptr(rn[r0:r1]),
            d,
            1,
            r1 - r0,
        )

    jobs = [(bi, r0) for bi in range(b) for r0 in range(0, m, step)]
    if len(jobs) == 1:
        part(*jobs[0])
    else:  # faiss releases the GIL: the parts run on separate cores
        for f in [_threads().submit(part, *j) for j in jobs]:
            f.result()
    return out


def _int8_scores(
    store: Any,
    metric: str,
    queries: Any,
    k: int,
    n_rows: int,
    allowed: torch.Tensor,
    rows: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact scores of the candidate rows (linr.cpu.int8) [B, m] and their rows [m]."""
    q = queries.q
    if rows is not None:
        codes, scales = store.codes.index_select(0, rows), store.scales[rows]
        where = rows
    else:
        codes, scales = store.codes[:n_rows], store.scales[:n_rows]
        where = torch.arange(n_rows)
    q8, alpha, c = int8.quantize_queries(q)
    approx, err = int8.approx_bounds(q8, alpha, c, codes, scales)
    if metric == "l2":  # 2<q - c, x> - ||x - c||^2 - const, and its float32 roundings
        assert store.sqnorms is not None and queries.l2_const is not None
        sqn = store.sqnorms[where].double()
        const = queries.l2_const.double()
        approx = 2 * approx - sqn[None, :] - const[:, None]
        err = 2 * err + 2.0**-20 * (approx.abs() + 2 * err + sqn[None, :] + const.abs()[:, None])
    lower, upper = approx - err, approx + err
    if rows is None and n_rows and not bool(allowed[:n_rows].all()):
        lower.masked_fill_(~allowed[None, :n_rows], -torch.inf)
        upper.masked_fill_(~allowed[None, :n_rows], -torch.inf)
    cols = int8.candidates(lower, upper, k)
    cand = where[cols]
    block = store.gather(cand)  # decoded float32 rows: the plain path's inputs
    s = _products(q, block)
    sqn32 = None if store.sqnorms is None else store.sqnorms[cand]
    return _finish(s, metric, queries, sqn32), cand


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(torch.get_num_threads(), 2), thread_name_prefix="linr-cpu")
    return _pool
