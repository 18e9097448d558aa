"""The two ways of answering a filtered query that the report compares, and their scoring.

pre   the index applies the filter before top-k (linr's way): exact whatever the selectivity.
post  what approximate systems do: search the unfiltered index for k x oversampling items
      and drop the ones that fail the filter. Too few survive when the filter is selective.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from linr.eval.attributes import Filter
from linr.eval.groundtruth import MaskTable
from linr.eval.recall import recall_at_k, score_scale, tie_hits
from linr.io.source import VectorSource
from linr.knn import scores as exact_scores

# Queries per block when gathering base rows for exact scores ([block, k, D] float64).
_SCORE_BLOCK = 256


@dataclass(frozen=True)
class Mode:
    quantization: str
    filtering: str  # "pre" | "post"
    oversampling: int | None = None  # post only
    bits: int | None = None  # quantization 1bit (linr/eval/onebit.py)
    rerank_oversample: int | None = None  # 1bit: passed as index.search(oversample=...)

    @property
    def name(self) -> str:
        if self.bits is not None:
            over = f"-o{self.rerank_oversample}" if self.rerank_oversample else ""
            post = f"-x{self.oversampling}" if self.filtering == "post" else ""
            return f"{self.quantization}-{self.bits}/{self.filtering}{post}{over}"
        if self.filtering == "post":
            return f"{self.quantization}/post-x{self.oversampling}"
        return f"{self.quantization}/{self.filtering}"


@dataclass
class ModeRun:
    """Results of one mode at one k: returned base rows and per-batch latencies."""

    mode: Mode
    k: int
    found: np.ndarray  # int64 [Q, k] base rows, -1 padded
    batch_ms: list[float] = field(default_factory=list)
    batch_size: int = 0


def _batch_filters(filters: Sequence[Filter]) -> Filter | list[Filter]:
    return None if all(f is None for f in filters) else list(filters)


def run_mode(
    index: Any,
    mode: Mode,
    k: int,
    queries: np.ndarray,
    filters: Sequence[Filter],
    query_fids: np.ndarray,
    masks: MaskTable,
    row_to_base: np.ndarray | None,
    batch_size: int,
    progress: Callable[[int], Any] | None = None,
    warm_up: bool = True,
) -> ModeRun:
    """Search all queries in batches, timing each batch; `warm_up` first answers one batch
    untimed (thread pools, allocator, caches: the first search on a fresh index is slow)."""
    nq = queries.shape[0]
    n = masks.n
    found = np.full((nq, k), -1, dtype=np.int64)
    run = ModeRun(mode, k, found, batch_size=batch_size)

    extra = {} if mode.rerank_oversample is None else {"oversample": mode.rerank_oversample}

    def answer(q0: int, q1: int) -> np.ndarray:
        qb = queries[q0:q1]
        if mode.filtering == "pre":
            rows = index.search(qb, k, filter=_batch_filters(filters[q0:q1]), **extra).rows
            return _to_base(rows, row_to_base)
        assert mode.oversampling is not None
        kk = min(k * mode.oversampling, n)
        cand = _to_base(index.search(qb, kk, **extra).rows, row_to_base)
        keep = masks.lookup(query_fids[q0:q1], cand)
        return _first_k(cand, keep, k)

    if warm_up and nq:
        answer(0, min(batch_size, nq))
    for q0 in range(0, nq, batch_size):
        q1 = min(q0 + batch_size, nq)
        t0 = time.perf_counter()
        found[q0:q1] = answer(q0, q1)
        run.batch_ms.append((time.perf_counter() - t0) * 1e3)
        if progress is not None:
            progress(q1 - q0)
    return run


def _to_base(rows: np.ndarray, row_to_base: np.ndarray | None) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if row_to_base is None:
        return rows
    return np.where(rows >= 0, row_to_base[np.maximum(rows, 0)], -1)


def _first_k(cand: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """The first k kept candidates of each row, in order, padded with -1."""
    out = np.full((cand.shape[0], k), -1, dtype=np.int64)
    pos = np.cumsum(keep, axis=1) - 1
    sel = keep & (pos < k)
    r, c = np.nonzero(sel)
    out[r, pos[r, c]] = cand[r, c]
    return out


@dataclass
class Scored:
    recall: np.ndarray  # float64 [Q], NaN where nothing matches the filter
    violations: int  # returned rows that fail their query's filter (must be 0 for pre)
    short: int  # queries returning fewer than min(k, matches) rows


def score_mode(
    found: np.ndarray,
    k: int,
    truth: np.ndarray,
    truth_kth: np.ndarray,
    queries: np.ndarray,
    base: VectorSource,
    metric: str,
    masks: MaskTable,
    query_fids: np.ndarray,
) -> Scored:
    """Per-query recall@k of returned base rows against the true rows (tie-aware)."""
    nq = found.shape[0]
    recall = np.empty(nq)
    violations = 0
    matches_n = np.asarray(masks.counts, dtype=np.int64)[query_fids]
    short = int(((found >= 0).sum(1) < np.minimum(k, matches_n)).sum())
    for q0 in range(0, nq, _SCORE_BLOCK):
        q1 = min(q0 + _SCORE_BLOCK, nq)
        f = found[q0:q1]
        ok = masks.lookup(query_fids[q0:q1], f)
        violations += int(((f >= 0) & ~ok).sum())
        x = base.take(np.maximum(f, 0))
        s = exact_scores(queries[q0:q1], x, metric).numpy()
        ties = tie_hits(s, truth_kth[q0:q1], score_scale(queries[q0:q1], x, metric), ok)
        recall[q0:q1] = recall_at_k(f, truth[q0:q1], k, ties)
    return Scored(recall, violations, short)


def kth_true_scores(
    truth: np.ndarray, k: int, queries: np.ndarray, base: VectorSource, metric: str
) -> np.ndarray:
    """Exact score of each query's last true item within the top k (-inf when none)."""
    t = truth[:, :k]
    n_true = (t >= 0).sum(1)
    last = t[np.arange(t.shape[0]), np.maximum(n_true - 1, 0)]
    out = np.full(t.shape[0], -np.inf)
    has = n_true > 0
    if has.any():
        x = base.take(np.maximum(last[has], 0))[:, None, :]
        out[has] = exact_scores(queries[has], x, metric)[:, 0].numpy()
    return out
