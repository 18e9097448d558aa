"""A 1-bit search: estimate every allowed row from the codes, keep the best
oversample x k, rescore those exactly against the rerank store (none: keep the estimate).

Scans: hamming_topk_cpu (linr.onebit.cpu_scan) anywhere, the Triton kernel
(linr.ops.hamming) on CUDA; both equal linr.onebit.estimate.hamming_topk_reference.
"""

from __future__ import annotations

from typing import Any

import torch

from linr.errors import InvalidInput
from linr.onebit.cpu_scan import hamming_topk_cpu
from linr.onebit.estimate import query_factors
from linr.onebit.store import OneBitStore
from linr.ops.mask_words import pack_mask
from linr.ops.merge_topk import merge_topk
from linr.search import Queries

DEFAULT_OVERSAMPLE = 10
MAX_OVERSAMPLE = 1000
_GATHER_BELOW = 0.3  # gather the codes of allowed rows below this fraction (64 B copies)
_RERANK_BYTES = 64 << 20  # float64 [chunk, c, D] block of candidate vectors


def check_oversample(oversample: object) -> int:
    if oversample is None:
        return DEFAULT_OVERSAMPLE
    if (
        isinstance(oversample, bool)
        or not isinstance(oversample, int)
        or not 1 <= oversample <= MAX_OVERSAMPLE
    ):
        raise InvalidInput(
            f"oversample must be an integer from 1 to {MAX_OVERSAMPLE}, got {oversample!r}"
        )
    return oversample


def rerank_exact(
    store: OneBitStore, q: torch.Tensor, cand: torch.Tensor, k: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact scores of the candidate rows cand int64 [B, c] (-1: none) against the rerank
    store's vectors, in float64 then float32 (ip / cosine: <q, x>; l2: -||q - x||^2);
    the best k by (score desc, row asc). Reads only the candidates' rows."""
    assert store.vectors is not None
    b, c = cand.shape
    out_s = torch.full((b, k), -torch.inf, device=q.device)
    out_r = torch.full((b, k), -1, dtype=torch.int64, device=q.device)
    step = max(1, _RERANK_BYTES // max(1, 8 * c * store.dim))
    for b0 in range(0, b, step):
        cb = cand[b0 : b0 + step]
        valid = cb >= 0
        flat = cb.clamp(min=0).reshape(-1)
        v = store.vectors.gather(flat.to(store.rerank_device)).to(q.device)
        v = v.double().view(cb.shape[0], c, store.dim)
        qb = q[b0 : b0 + step].double()[:, None, :]
        s = -(v - qb).square().sum(-1) if metric == "l2" else (v * qb).sum(-1)
        s = s.float().masked_fill(~valid, -torch.inf)
        out_s[b0 : b0 + step], out_r[b0 : b0 + step] = merge_topk(s, cb, k)
    return out_s, out_r


class OneBitScanner:
    """Searches prepared queries against a OneBitStore (the Scanner of quantization 1bit)."""

    def __init__(self, store: OneBitStore, metric: str):
        self.store = store
        self.metric = metric

    def candidates(
        self,
        queries: Queries,
        c: int,
        n_rows: int,
        allowed: torch.Tensor,
        strategy: str = "auto",
        backend: str = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(est [B, c], rows [B, c], per-query constant [B]) of the best c allowed rows."""
        st = self.store
        qc = st.centred(queries.q)
        a_q, const = query_factors(qc, self.metric)
        q_codes = st.transform.encode(qc).to(st.device)
        allowed = allowed[:n_rows]
        n_allowed = int(allowed.sum())
        if strategy == "auto":
            strategy = "gather" if n_allowed < _GATHER_BELOW * n_rows else "mask"
        if strategy not in ("mask", "gather"):
            raise ValueError(f"unknown strategy {strategy!r}; expected auto, mask or gather")
        rows = torch.nonzero(allowed).flatten() if strategy == "gather" else None
        mask = None if rows is not None or n_allowed == n_rows else allowed
        if backend == "auto":
            backend = self._auto_backend()
        codes, norms = st.codes[:n_rows], st.norms[:n_rows]
        l2 = self.metric == "l2"
        if backend == "triton":
            from linr.ops.hamming import hamming_topk

            words = None if mask is None else pack_mask(mask)
            est, r = hamming_topk(q_codes, codes, norms, a_q, c, l2, mask_words=words, rows=rows)
        elif backend in ("torch", "cpu"):
            est, r = hamming_topk_cpu(q_codes, codes, norms, a_q, c, l2, mask, rows)
        else:
            raise InvalidInput(
                f"backend {str(getattr(backend, 'value', backend))!r} does not apply to "
                "quantization 1bit (auto, torch or triton)"
            )
        return est, r, const

    def _auto_backend(self) -> str:
        if self.store.device.type == "cuda":
            from linr import ops

            if ops.available(self.store.device):
                return "triton"
        return "cpu"

    def search(
        self,
        queries: Queries,
        k: int,
        n_rows: int,
        allowed: torch.Tensor,
        strategy: str = "auto",
        backend: str = "auto",
        oversample: int | None = None,
        cached: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k over rows [0, n_rows) where `allowed` is True, as Scanner.search (`cached`,
        the mask's remembered count and rows, is not needed here)."""
        if queries.multi:
            raise InvalidInput("multi-embedding queries are not supported with quantization 1bit")
        over = check_oversample(oversample)
        dev = self.store.device
        b = queries.batch
        n_allowed = int(allowed[:n_rows].sum())
        if n_allowed == 0:
            return (
                torch.full((b, k), -torch.inf, device=dev),
                torch.full((b, k), -1, dtype=torch.int64, device=dev),
            )
        rerank = self.store.vectors is not None
        c = min(over * k, n_allowed) if rerank else min(k, n_allowed)
        est, rows, const = self.candidates(queries, c, n_rows, allowed, strategy, backend)
        if rerank:
            s, r = rerank_exact(self.store, queries.q, rows, k, self.metric)
        else:
            s, r = est, rows
            s = s + const[:, None]  # -inf stays -inf
        if s.shape[1] < k:
            pad = k - s.shape[1]
            s = torch.cat([s, torch.full((b, pad), -torch.inf, device=s.device)], 1)
            r = torch.cat([r, torch.full((b, pad), -1, dtype=torch.int64, device=r.device)], 1)
        return s, r.masked_fill(s == -torch.inf, -1)
