"""Recall@k against ground truth, with ties and short result lists counted correctly.

recall@k of one query = |returned items that are true top-k items| / |true top-k items|, where
the true top-k holds min(k, items matching the filter) items. A query whose filter matches
nothing has no true items: its recall is NaN, left out of averages and counted separately.

Ties: when several items share the k-th best exact score, any of them is a correct answer. The
caller marks such returned items (`tie_hits`), from exact scores computed here in float64.
"""

from __future__ import annotations

import numpy as np

# A returned item whose exact (float64) score is within this fraction of the score scale
# (|q| |x| for ip, 1 for cosine, |q|^2 + |x|^2 for l2) of the k-th true score ties with it.
# 1e-5 is ~10x the worst-case float32 rounding of a 128-dim dot product (D * 2^-24 ~ 8e-6),
# and ~1000x below int8 quantization error (~1e-2), so it forgives rounding, not quantization.
TIE_RTOL = 1e-5

SELECTIVITY_EDGES = (0.0, 0.001, 0.01, 0.1, 1.0)
SELECTIVITY_BUCKETS = ("<0.1%", "0.1-1%", "1-10%", "10-100%")


def recall_at_k(
    found: np.ndarray, truth: np.ndarray, k: int, tie_hits: np.ndarray | None = None
) -> np.ndarray:
    """Per-query recall@k.

    found: int [B, >=k'] returned rows, -1 padded (only the first k are read);
    truth: int [B, >=k] true rows in rank order, -1 padded (only the first k are read);
    tie_hits: optional bool like found: True where a returned row not in the true top-k still
    counts (it ties with the k-th true score and matches the filter).
    Returns float64 [B]: hits / min(k, valid truth); NaN where the truth is empty.
    """
    f = np.asarray(found, dtype=np.int64)[:, :k]
    t = np.asarray(truth, dtype=np.int64)[:, :k]
    if f.shape[0] != t.shape[0]:
        raise ValueError(f"{f.shape[0]} result rows but {t.shape[0]} ground-truth rows")
    n_true = (t >= 0).sum(axis=1)
    valid = (f >= 0) & _first_occurrence(f)
    in_truth = (f[:, :, None] == np.where(t >= 0, t, -2)[:, None, :]).any(axis=2)
    hit = in_truth
    if tie_hits is not None:
        hit = hit | np.asarray(tie_hits, dtype=bool)[:, : f.shape[1]]
    hits = np.minimum((hit & valid).sum(axis=1), n_true)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_true > 0, hits / np.maximum(n_true, 1), np.nan)


def _first_occurrence(f: np.ndarray) -> np.ndarray:
    """True at the first occurrence of each value in its row (a duplicate never counts twice)."""
    order = np.argsort(f, axis=1, kind="stable")
    s = np.take_along_axis(f, order, axis=1)
    first_sorted = np.ones_like(s, dtype=bool)
    first_sorted[:, 1:] = s[:, 1:] != s[:, :-1]
    out = np.empty_like(first_sorted)
    np.put_along_axis(out, order, first_sorted, axis=1)
    return out


def score_scale(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """The magnitude a score of q against x is rounded relative to: [B, m]."""
    if metric == "cosine":
        return np.ones(x.shape[:2])
    qn = np.linalg.norm(np.asarray(q, dtype=np.float64), axis=-1)[:, None]
    xn = np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1)
    return qn * xn if metric == "ip" else qn**2 + xn**2


def tie_hits(
    found_scores: np.ndarray, kth_true: np.ndarray, scale: np.ndarray, matches: np.ndarray
) -> np.ndarray:
    """bool [B, m]: returned rows that match the filter and score at least the k-th true score
    (exact, float64) less TIE_RTOL x scale. kth_true: [B] (-inf where no truth)."""
    return matches & (found_scores >= kth_true[:, None] - TIE_RTOL * scale)


def bucket_of(selectivity: np.ndarray) -> np.ndarray:
    """Index into SELECTIVITY_BUCKETS for each selectivity in [0, 1]."""
    inner = np.asarray(SELECTIVITY_EDGES[1:-1])
    return np.searchsorted(inner, np.asarray(selectivity, dtype=np.float64), side="right")


def mean_or_none(x: np.ndarray) -> float | None:
    """Mean over the defined (non-NaN) values, None when there are none."""
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else None
