"""Small query batches on CPU: one pass over the bytes the filter needs.

A single query is bound by reading the codes (38,695 x 384 fp32 is 59 MB; 1M x 128 is
512 MB), so this path reads each needed byte once and does little else:
- all rows, or most: one matrix-vector product over the codes in place, rejected rows set
  to -inf, and the bound selection of linr.cpu.select;
- few rows: only the allowed rows are scored, in place (faiss's
  fvec_inner_products_by_idx on the index's own buffer, split over the torch threads),
  with no copy of them;
- int8 codes: integer products over the codes (linr.cpu.int8), exact after a rescore.
The scores are those of the plain path (linr/search/scanner.py: float32 products of the
query with the decoded rows, l2 as 2<q - c, x> - ||x - c||^2 - (||q||^2 - ||c||^2)) up to float32
summation order, which BLAS does not fix either.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np
import torch

from linr.cpu import int8
from linr.cpu.select import topk_ordered_np

# Queries up to this many take this path; beyond, products are compute bound and the
# blocked scan of linr/search/scanner.py is the better loop.
MAX_BATCH = 16
# Score only the allowed rows when fewer than this fraction of the rows is allowed. At
# 1M x 128 (one query, 2 threads) scoring rows in place cost 32 ns per allowed row at 10%
# and 48 ns at 34%, against 23 ns per row for the full product: even near 50%.
_BY_ROWS_BELOW = 0.5
# int8 by rows: decode the allowed rows and score them in float32 when they hold at most
# this many values; beyond, integer products and bounds, which decode only the ~k rows
# that may make the top k. Decoding runs in pieces below torch's grain, ~0.3 us per row of
# 384 here: at 38,695 x 384 with 3,900 rows (1.5M values) decoding all took 2.1 ms.
_DECODE_ALL_BELOW = 1 << 18
# int8 by rows, bounds: gather the allowed codes with numpy (one thread) up to this many
# values, with torch (its threads) beyond: at 1M x 128, 10% (12.8M values) numpy's took
# 14 ms against 6 ms in all.
_GATHER_ALONE_BELOW = 1 << 22
# torch runs an elementwise operation on fewer values than this (its internal GRAIN_SIZE)
# on the calling thread alone.
_GRAIN = 32768
# Rows per thread below which one thread scores the allowed rows alone.
_ROWS_PER_THREAD = 4096
# one_query_by_rows serves fewer allowed rows than this, on one thread: interleaved with
# other systems, two threads were no faster at 13k rows (38,695 x 384, 34%).
_ONE_THREAD_ROWS = 16384

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


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
    Returns (scores float32 [B, k] padded -inf, rows int64 [B, k] padded -1).

    Past the one large product, the work is numpy on one thread (linr.cpu.select says why)."""
    if by_rows(n_allowed, n_rows):
        if rows is None:
            rows = torch.nonzero(allowed).flatten()
    else:
        rows = None
    mask = None if rows is not None or n_allowed == n_rows else allowed[:n_rows].numpy()
    where: np.ndarray | None
    if store.quantization == "int8":
        s, where = _int8_scores(store, metric, queries, k, n_rows, mask, rows, faiss)
    else:
        s, where = _fp32_scores(store, metric, queries, n_rows, mask, rows, faiss)
    vals, out = topk_ordered_np(s, k)
    if where is not None:
        out = np.where(out >= 0, where[np.maximum(out, 0)], -1)
    return torch.from_numpy(vals), torch.from_numpy(out)


def one_query_by_rows(
    store: Any, metric: str, q: np.ndarray, k: int, rows: Any, faiss: Any
) -> tuple[np.ndarray, np.ndarray] | None:
    """One query (float32 [1, D], prepared) against few allowed rows (`rows`: the
    linr.mask_cache.Allowed of the filter): the by-rows path of `search` in as few calls
    as it takes, or None where that path would not serve it (Index.search then takes the
    full one). Returns (scores [1, k], rows [1, k]) as `search` does, in numpy.

    A single query right after other work runs with cold caches: on 38,695 x 384 with 39
    allowed rows the full path took 0.16-0.20 ms after a faiss call or a 1 ms sleep against
    0.09 ms after another linr search (bench_peers.py), so the call count matters."""
    if faiss is None or metric == "l2" or store.device.type != "cpu" or q.shape[0] != 1:
        return None
    n_rows = rows.mask.shape[0]
    if not 0 < rows.count() < _BY_ROWS_BELOW * n_rows or rows.count() >= _ONE_THREAD_ROWS:
        return None
    if os.environ.get("LINR_CPU_SMALL", "") == "off" or not store.codes.is_contiguous():
        return None
    rn = rows.rows().numpy()
    if store.quantization == "fp32":
        s = _dot_rows_faiss(store.codes.numpy(), q, rn, faiss)
    elif (
        store.quantization == "int8"
        and rn.shape[0] * store.dim <= _DECODE_ALL_BELOW
        and int8.supported(store.dim)  # as `applies`: else the blocked scan serves it
    ):
        s = _dot_rows_faiss(_decode(store, rows.rows()), q, np.arange(rn.shape[0]), faiss)
    else:
        return None
    vals, out = topk_ordered_np(s, k)
    return vals, np.where(out >= 0, rn[np.maximum(out, 0)], -1)


def _finish(s: np.ndarray, metric: str, queries: Any, sqn: np.ndarray | None) -> np.ndarray:
    """The plain path's l2 formula on float32 products s [B, m], in place."""
    if metric == "l2":
        assert sqn is not None and queries.l2_const is not None
        s *= 2
        s -= sqn[None, :]
        s -= queries.l2_const.numpy()[:, None]
    return s


def _fp32_scores(
    store: Any,
    metric: str,
    queries: Any,
    n_rows: int,
    mask: np.ndarray | None,
    rows: torch.Tensor | None,
    faiss: Any,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores [B, m], the row of each column, or None when column = row)."""
    q = queries.q
    sqn = None if store.sqnorms is None else store.sqnorms.numpy()
    if rows is not None:
        s = dot_rows(store.codes, q, rows, faiss).numpy()
        rn = rows.numpy()
        return _finish(s, metric, queries, None if sqn is None else sqn[rn]), rn
    s = _products(q, store.codes[:n_rows], faiss).numpy()
    s = _finish(s, metric, queries, None if sqn is None else sqn[:n_rows])
    if mask is not None:
        s[:, ~mask] = -np.inf
    return s, None


def _products(q: torch.Tensor, x: torch.Tensor, faiss: Any = None) -> torch.Tensor:
    """q [B, D] @ x [n, D].T. One query: faiss's fvec_inner_products_ny where it scores each
    row alone (as fvec_inner_products_by_idx does, bit for bit), else a 2-row product:
    gemv's sums depend on a row's place in x (tail rows), so equal rows would score
    differently. faiss's loop reads the rows at the memory's rate on either CPU of the dev
    machine, where MKL's sgemm (torch's BLAS) is 4-9x off it on AMD EPYC (1M x 128: 17 ms
    against 153 ms; 38,695 x 384: 1.4 ms against 13 ms)."""
    if q.shape[0] == 1:
        if faiss is not None and _ny_rowwise(x, faiss):
            return torch.from_numpy(_dot_rows_faiss(x.numpy(), q.contiguous().numpy(), None, faiss))
        return (torch.cat([q, q]) @ x.T)[:1]
    return q @ x.T


def _ny_rowwise(x: torch.Tensor, faiss: Any) -> bool:
    """Whether fvec_inner_products_ny scores each row of x alone: its x86 kernels for 2, 4,
    8 and 12 dimensions score rows in blocks (a row's sum then depends on its place), and
    other builds may block others; checked once per dimension (_ny_scores_rows_alone)."""
    if x.dtype != torch.float32 or not x.is_contiguous() or x.shape[1] <= 12:
        return False
    return _ny_scores_rows_alone(x.shape[1], faiss)


@cache
def _ny_scores_rows_alone(d: int, faiss: Any) -> bool:
    """fvec_inner_products_ny equals fvec_inner_products_by_idx bit for bit at dimension d,
    on 67 random rows and on the same rows from the 6th on."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((67, d), dtype=np.float32)
    q = rng.standard_normal((1, d), dtype=np.float32)
    ptr = faiss.swig_ptr
    ny, tail = np.empty(67, np.float32), np.empty(62, np.float32)
    faiss.fvec_inner_products_ny(ptr(ny), ptr(q), ptr(x), d, 67)
    faiss.fvec_inner_products_ny(ptr(tail), ptr(q), ptr(x[5:]), d, 62)
    by_idx = _dot_rows_faiss(x, q, np.arange(67, dtype=np.int64), faiss)[0]
    return bool(np.array_equal(ny, by_idx) and np.array_equal(ny[5:], tail))


def _dot_all(q: torch.Tensor, block: np.ndarray, faiss: Any) -> np.ndarray:
    """q [B, D] @ block [m, D].T for a small decoded block, each row scored alone (as
    dot_rows: no BLAS thread team for a few hundred rows)."""
    x = torch.from_numpy(block)
    return dot_rows(x, q, torch.arange(block.shape[0]), faiss).numpy()


def dot_rows(
    codes: torch.Tensor, q: torch.Tensor, rows: torch.Tensor, faiss: Any = None
) -> torch.Tensor:
    """<q_b, codes[r]> for r in rows: float32 [B, len(rows)], reading only those rows
    (with faiss; without, a gathered copy). codes: float32 [N, D]; rows: int64, each < N."""
    if faiss is None or not codes.is_contiguous():
        return q @ codes.index_select(0, rows).T
    return torch.from_numpy(
        _dot_rows_faiss(codes.numpy(), q.contiguous().numpy(), rows.numpy(), faiss)
    )


def _dot_rows_faiss(
    cn: np.ndarray, qn: np.ndarray, rn: np.ndarray | None, faiss: Any
) -> np.ndarray:
    """dot_rows with faiss's fvec_inner_products_by_idx, numpy in and out; rn None: every
    row of cn, with fvec_inner_products_ny (one query; _ny_rowwise(cn) holds)."""
    b, d = qn.shape
    m = cn.shape[0] if rn is None else rn.shape[0]
    on = np.empty((b, m), dtype=np.float32)
    parts = max(1, min(torch.get_num_threads(), m // _ROWS_PER_THREAD))
    step = math.ceil(m / parts)

    def part(bi: int, r0: int) -> None:
        r1 = min(r0 + step, m)
        if rn is None:  # no OpenMP in it
            faiss.fvec_inner_products_ny(
                faiss.swig_ptr(on[bi, r0:r1]),
                faiss.swig_ptr(qn[bi]),
                faiss.swig_ptr(cn[r0:r1]),
                d,
                r1 - r0,
            )
            return
        # One OpenMP thread for this call (the setting is per calling thread): with nx = 1
        # faiss would open a team whose end barrier waits on idle threads, and on a loaded
        # machine a preempted one (25 ms for 387 rows, against 0.03 ms alone).
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            faiss.fvec_inner_products_by_idx(
                faiss.swig_ptr(on[bi, r0:r1]),
                faiss.swig_ptr(qn[bi]),
                faiss.swig_ptr(cn),
                faiss.swig_ptr(rn[r0:r1]),
                d,
                1,
                r1 - r0,
            )
        finally:
            faiss.omp_set_num_threads(before)

    jobs = [(bi, r0) for bi in range(b) for r0 in range(0, m, step)]
    # faiss releases the GIL: the parts run on separate cores, the last on this thread (a
    # hand-off less: 38,695 x 384 unfiltered took 1.4 ms so against 2.0 ms all pooled)
    waits = [_threads().submit(part, *j) for j in jobs[:-1]]
    part(*jobs[-1])
    for f in waits:
        f.result()
    return on


def _int8_scores(
    store: Any,
    metric: str,
    queries: Any,
    k: int,
    n_rows: int,
    mask: np.ndarray | None,
    rows: torch.Tensor | None,
    faiss: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores [B, m] of the candidate rows (linr.cpu.int8), and those rows [m]."""
    q = queries.q
    scales_all = store.scales.numpy()
    if rows is not None and rows.shape[0] * store.dim <= _DECODE_ALL_BELOW:
        # so few rows that decoding them all is cheaper than bounds
        s = _dot_all(q, _decode(store, rows), faiss)
        rn = rows.numpy()
        sqn = None if store.sqnorms is None else store.sqnorms.numpy()[rn]
        return _finish(s, metric, queries, sqn), rn
    where: np.ndarray | None = None
    if rows is not None:
        where = rows.numpy()
        scales = scales_all[where]
        if where.shape[0] * store.dim <= _GATHER_ALONE_BELOW:  # on this thread, no team
            codes = torch.from_numpy(store.codes.numpy()[where])
        else:  # large enough for two threads to pay
            codes = store.codes.index_select(0, rows)
    else:
        codes, scales = store.codes[:n_rows], scales_all[:n_rows]
    quant = int8.quantize_queries(q)
    prod = int8.products(quant[0], codes)
    l2 = None
    if metric == "l2":
        assert store.sqnorms is not None and queries.l2_const is not None
        sqn_all = store.sqnorms.numpy()
        l2 = (
            sqn_all[:n_rows] if where is None else sqn_all[where],
            queries.l2_const.double().numpy(),
        )
    cand = int8.candidates(prod, quant, scales, k, mask, l2)
    if where is not None:
        cand = where[cand]
    s = _dot_all(q, _decode(store, torch.from_numpy(cand)), faiss)
    sqn = None if store.sqnorms is None else store.sqnorms.numpy()[cand]
    return _finish(s, metric, queries, sqn), cand


def _decode(store: Any, rows: torch.Tensor) -> np.ndarray:
    """linr.quantization.decode of the int8 rows `rows`: float32(code) * scale, one float32
    rounding, the plain path's inputs. torch's cast (numpy's took 152 us against 79 us on
    one thread for 632 x 384 codes here), in pieces below torch's parallel grain so that
    no thread team is opened (linr.cpu.select says why: a 1% filter at 1M x 128 took 22 ms
    instead of 2.7 ms beside a niced process)."""
    d = store.dim
    out = torch.empty((rows.shape[0], d), dtype=torch.float32)
    step = max(1, _GRAIN // d)
    for r0 in range(0, rows.shape[0], step):
        r = rows[r0 : r0 + step]
        piece = out[r0 : r0 + step]
        piece.copy_(store.codes.index_select(0, r))
        piece.mul_(store.scales.index_select(0, r)[:, None])
    return out.numpy()


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:  # two indexes may search at once
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max(torch.get_num_threads(), 2), thread_name_prefix="linr-cpu"
            )
    return _pool
