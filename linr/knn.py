"""The exact reference search: the CPU fallback's oracle, the tests' truth, the recall tool's
ground truth. Deliberately plain: full score rows in float64 (by default), a stable sort.
"""

from __future__ import annotations

import numpy as np
import torch

from linr.metrics import check_metric

# Queries per block: bounds the [block, N] float64 score matrix to ~1 GB at N = 1M.
_QUERY_BLOCK = 128


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def scores(
    xq: np.ndarray | torch.Tensor,
    xb: np.ndarray | torch.Tensor,
    metric: str = "ip",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Exact scores of each query, higher is better, computed in `dtype`: ip <q, x>, cosine
    the cosine, l2 -||q - x||^2 (docs/service.md). xq: [B, D]. xb: [N, D] scores every query
    against every row ([B, N]); xb: [B, m, D] scores query i against its own rows xb[i]
    ([B, m]: what a returned list is checked with)."""
    q, x = _prepare(xq, xb, metric, dtype)
    return _scores(q, x, metric)


def _prepare(
    xq: np.ndarray | torch.Tensor, xb: np.ndarray | torch.Tensor, metric: str, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries [B, D] and rows in `dtype` on the queries' device; unit length for cosine."""
    check_metric(metric)
    q = _as_tensor(xq).to(dtype)
    x = _as_tensor(xb).to(device=q.device, dtype=dtype)
    if q.ndim == 1:
        q = q[None]
    if metric == "cosine":
        q, x = _unit(q), _unit(x)
    return q, x


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def _scores(q: torch.Tensor, x: torch.Tensor, metric: str) -> torch.Tensor:
    if x.ndim == 3:  # [B, m, D]: each query against its own rows
        if metric == "l2":
            return -(x - q[:, None, :]).square().sum(-1)
        return torch.einsum("bd,bmd->bm", q, x)
    if metric == "l2":
        return _neg_sq_l2(q, x)
    return q @ x.T


def knn(
    xq: np.ndarray | torch.Tensor,
    xb: np.ndarray | torch.Tensor,
    k: int,
    metric: str = "ip",
    mask: np.ndarray | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of each query among the rows of xb.

    xq: [B, D] queries; xb: [N, D] database; mask: optional bool [N] (one for all queries) or
    [B, N] (per query): rows where it is False are never returned. Scores as `scores` gives
    them (ip: <q, x>; cosine: cosine; l2: -||q - x||^2), higher is better, in `dtype`.
    Returns (scores [B, k], indices [B, k]) ordered by score descending, equal scores by
    ascending index; short lists are padded with score -inf and index -1.
    """
    q, x = _prepare(xq, xb, metric, dtype)
    m = None if mask is None else _as_tensor(mask).to(device=q.device, dtype=torch.bool)
    n = x.shape[0]
    out_s = torch.full((q.shape[0], k), -torch.inf, dtype=dtype, device=q.device)
    out_i = torch.full((q.shape[0], k), -1, dtype=torch.int64, device=q.device)
    take = min(k, n)
    for b0 in range(0, q.shape[0], _QUERY_BLOCK):
        qb = q[b0 : b0 + _QUERY_BLOCK]
        s = _scores(qb, x, metric)
        if m is not None:
            mb = m if m.ndim == 1 else m[b0 : b0 + _QUERY_BLOCK]
            s = s.masked_fill(~mb, -torch.inf)
        vals, idx = torch.sort(s, dim=1, descending=True, stable=True)
        vals, idx = vals[:, :take], idx[:, :take]
        idx = idx.masked_fill(vals == -torch.inf, -1)
        out_s[b0 : b0 + qb.shape[0], :take] = vals
        out_i[b0 : b0 + qb.shape[0], :take] = idx
    return out_s, out_i


def _neg_sq_l2(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-||q - x||^2. In float64 the expansion's cancellation error (~1e-16 relative to the
    norms) is far below float32 resolution; in lower precision use the direct difference."""
    if q.dtype == torch.float64:
        return 2 * (q @ x.T) - q.square().sum(1, keepdim=True) - x.square().sum(1)[None, :]
    return -torch.cdist(q, x, compute_mode="donot_use_mm_for_euclid_dist").square()
