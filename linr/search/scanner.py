"""The exhaustive scan: top-k with pre-filtering over the rows of a VectorStore, in row
chunks so that peak extra memory is bounded by `scan_bytes` whatever N is.

Both strategies (linr/search/plan.py) score each row with the same kernel on the same
float32 inputs, so the choice changes the speed; the backends may round differently
(BLAS blocks sums its own way), which the tests bound (tests/linr/test_scan.py). For l2,
rows are stored centred at a point c fixed by the first write (linr/storage.py says why):
queries become q - c here, in one place, and every backend scores 2<q - c, x - c> -
||x - c||^2 less the per-query constant ||q||^2 - ||c||^2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from linr.cpu import batch, small
from linr.ops.mask_words import pack_mask
from linr.search.plan import Backend, Strategy, choose_backend, choose_strategy, faiss_module
from linr.search.topk import merge, topk_exact_ties
from linr.storage import VectorStore

if TYPE_CHECKING:
    from linr.mask_cache import Allowed

# faiss path, mask strategy: a chunk with at most this many rejected rows (times k) is
# searched for k + rejected and the rejected dropped; beyond that, its matching rows are
# gathered. Keeps faiss's heaps small (k' <= 2k).
_SKIP_FACTOR = 1
DEFAULT_SCAN_BYTES = 256 << 20
# faiss's BLAS block of database rows (default 1024): 4096 is 7% faster at 1M x 128,
# B = 1024 (0.955 s vs 1.022 s, medians of 3); restored after each call.
_FAISS_DATABASE_BS = 4096


@dataclass
class Queries:
    """Prepared queries. q: [M, D] float32 on the index's device (normalized for cosine).
    Multi-embedding: M = B * m_max rows, pad [B, m_max] marks padding vectors."""

    q: torch.Tensor
    batch: int
    pad: torch.Tensor | None = None
    aggregate: str | None = None
    # l2, set by Scanner.search: q holds q - c, and this [M] holds ||q||^2 - ||c||^2.
    l2_const: torch.Tensor | None = None

    @property
    def multi(self) -> bool:
        return self.pad is not None


class Scanner:
    """Scores prepared queries against the rows of a VectorStore."""

    def __init__(self, store: VectorStore, metric: str, scan_bytes: int = DEFAULT_SCAN_BYTES):
        self.store = store
        self.metric = metric
        self.scan_bytes = scan_bytes

    def _centred(self) -> bool:
        c = self.store.centre
        return self.metric == "l2" and c is not None and bool(c.any())

    def _l2_queries(self, queries: Queries) -> Queries:
        """q - c, and ||q||^2 - ||c||^2, which turns 2<q - c, x> - ||x - c||^2 into
        -||q - x||^2 (linr.storage.choose_centre says why). float64, then float32."""
        assert self.store.centre is not None
        q64, c64 = queries.q.double(), self.store.centre.double()
        const = (q64.square().sum(1) - c64.square().sum()).float()
        return replace(queries, q=(q64 - c64).float(), l2_const=const)

    def chunk_rows(self, queries: Queries, backend: Backend) -> int:
        # torch: the [M, C] float32 score block and the decoded [C, D] block share the
        # budget. faiss bounds its own score blocks, so only the decoded block counts.
        per_row = 4 * self.store.dim + (0 if backend is Backend.FAISS else 4 * queries.q.shape[0])
        return int(min(max(self.scan_bytes // per_row, 256), 1 << 24))

    def _scores(self, queries: Queries, block: torch.Tensor, sqn: torch.Tensor | None):
        """[B, C] scores of a decoded block, torch backend."""
        q = queries.q
        if q.shape[0] == 1:
            # One query makes MKL use gemv, whose sums depend on a row's position in the
            # block (tail rows): a 2-row gemm scores each row the same way wherever it is.
            s = (torch.cat([q, q]) @ block.T)[:1]
        else:
            s = q @ block.T
        if self.metric == "l2":
            assert sqn is not None and queries.l2_const is not None
            s = 2 * s - sqn[None, :] - queries.l2_const[:, None]
        if queries.pad is not None:
            b, m = queries.pad.shape
            s = s.view(b, m, -1)
            if queries.aggregate == "sum":
                s = s.masked_fill(queries.pad[:, :, None], 0.0).sum(1)
            else:
                s = s.masked_fill(queries.pad[:, :, None], -torch.inf).amax(1)
        return s

    def _block_topk(
        self,
        queries: Queries,
        block: torch.Tensor,
        rows: torch.Tensor,
        k: int,
        reject: torch.Tensor | None,
        backend: Backend,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k candidates of one decoded block whose rows are `rows` (sorted ascending);
        reject: bool [C] of rows to leave out."""
        if backend is Backend.FAISS:
            return self._faiss_topk(queries, block, rows, k, reject)
        sqn = None
        if self.store.sqnorms is not None:
            sqn = self.store.sqnorms[rows]
        s = self._scores(queries, block, sqn)
        if reject is not None:
            s = s.masked_fill(reject[None, :], -torch.inf)
        vals, idx = topk_exact_ties(s, k)
        return vals, rows[idx]

    def _faiss_topk(
        self,
        queries: Queries,
        block: torch.Tensor,
        rows: torch.Tensor,
        k: int,
        reject: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        faiss = faiss_module()
        n_rej = 0 if reject is None else int(reject.sum())
        c = block.shape[0]
        metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        xq = queries.q.numpy()
        if self._centred():  # faiss computes l2 itself: hand it the centred rows too
            assert self.store.centre is not None
            xb = (block - self.store.centre).numpy()
        else:
            xb = np.ascontiguousarray(block.numpy())
        # faiss's heaps break ties arbitrarily. Ask for one more than needed; where the last
        # two tie (rare: exact float ties), redo the block with the torch path, which
        # resolves ties by row exactly within the chunk memory bound.
        want = min(k + n_rej, c)
        ask = min(want + 1, c)
        cv = faiss.cvar
        saved = cv.distance_compute_blas_database_bs
        cv.distance_compute_blas_database_bs = _FAISS_DATABASE_BS
        try:
            d, i = faiss.knn(xq, xb, ask, metric=metric)
        finally:
            cv.distance_compute_blas_database_bs = saved
        if ask > want and ((d[:, want - 1] == d[:, want]) & (i[:, want] >= 0)).any():
            return self._torch_chunks(queries, block, rows, k, reject)
        d_t, i_t = torch.from_numpy(d), torch.from_numpy(i)
        if self.metric == "l2":
            d_t = -d_t
        missing = i_t < 0
        if reject is not None:
            missing |= reject[i_t.clamp(min=0)]
        d_t = d_t.masked_fill(missing, -torch.inf)
        return d_t, rows[i_t.clamp(min=0)]

    def _triton_search(
        self, queries: Queries, k: int, n_rows: int, allowed: torch.Tensor, strategy: Strategy
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One fused launch (linr.ops) instead of the chunk loop; the same contract."""
        from linr import ops

        st = self.store
        q = queries.q
        bias = None
        if self.metric == "l2":  # 2<q - c, x> - ||x - c||^2, then the per-query constant
            q = 2 * q
            assert st.sqnorms is not None
            bias = -st.sqnorms[:n_rows]
        scales = None if st.scales is None else st.scales[:n_rows]
        kw: dict[str, torch.Tensor] = {}
        if strategy is Strategy.GATHER:
            kw["rows"] = torch.nonzero(allowed).flatten()
        elif not bool(allowed.all()):
            kw["mask_words"] = pack_mask(allowed)
        s, r = ops.scan_topk(q, st.codes[:n_rows], k, scales=scales, bias=bias, **kw)
        if self.metric == "l2":
            assert queries.l2_const is not None
            s = s - queries.l2_const[:, None]
        return s, r.masked_fill(s == -torch.inf, -1)

    def _torch_chunks(
        self,
        queries: Queries,
        block: torch.Tensor,
        rows: torch.Tensor,
        k: int,
        reject: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.chunk_rows(queries, Backend.TORCH)
        best_s = torch.full((queries.batch, k), -torch.inf, device=block.device)
        best_r = torch.full((queries.batch, k), -1, dtype=torch.int64, device=block.device)
        for s0 in range(0, block.shape[0], c):
            rej = None if reject is None else reject[s0 : s0 + c]
            s, r = self._block_topk(
                queries, block[s0 : s0 + c], rows[s0 : s0 + c], k, rej, Backend.TORCH
            )
            best_s, best_r = merge(best_s, best_r, s, r, k)
        return best_s, best_r

    def search(
        self,
        queries: Queries,
        k: int,
        n_rows: int,
        allowed: torch.Tensor,
        strategy: Strategy = Strategy.AUTO,
        backend: Backend = Backend.AUTO,
        cached: Allowed | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k over rows [0, n_rows) where `allowed` (bool [>= n_rows]) is True; `cached`:
        the same mask with its count and rows remembered (linr.mask_cache).
        Returns (scores float32 [B, k] padded -inf, rows int64 [B, k] padded -1)."""
        dev = self.store.device
        b = queries.batch
        if self.metric == "l2":
            queries = self._l2_queries(queries)
        allowed = allowed[:n_rows]
        n_allowed = cached.count() if cached is not None else int(allowed.sum())
        auto = strategy is Strategy.AUTO and backend is Backend.AUTO
        if n_allowed and auto and small.applies(self.store, queries, k, n_rows):
            rows = (
                cached.rows() if cached is not None and small.by_rows(n_allowed, n_rows) else None
            )
            return small.search(
                self.store,
                self.metric,
                queries,
                k,
                n_rows,
                allowed,
                n_allowed,
                rows,
                faiss_module(),
            )
        if n_allowed and auto and batch.applies(self.store, queries, k, n_allowed):
            rows = None
            if n_allowed < n_rows:
                rows = cached.rows() if cached is not None else torch.nonzero(allowed).flatten()
            return batch.search(self.store, self.metric, queries, k, n_rows, rows)
        best_s = torch.full((b, k), -torch.inf, device=dev)
        best_r = torch.full((b, k), -1, dtype=torch.int64, device=dev)
        if n_allowed == 0:
            return best_s, best_r
        backend = choose_backend(backend, dev, b, queries.multi, k)
        strategy = choose_strategy(strategy, n_allowed, n_rows, backend)
        if backend is Backend.TRITON:
            return self._triton_search(queries, k, n_rows, allowed, strategy)
        c = self.chunk_rows(queries, backend)
        if (
            backend is Backend.FAISS
            and self.store.quantization == "fp32"
            and n_allowed == n_rows
            and not self._centred()
        ):
            c = n_rows  # blocks are views of the codes (no copy): one faiss call scans all
        if strategy is Strategy.GATHER:
            rows_all = cached.rows() if cached is not None else torch.nonzero(allowed).flatten()
            for c0 in range(0, rows_all.shape[0], c):
                sub = rows_all[c0 : c0 + c]
                s, r = self._block_topk(queries, self.store.gather(sub), sub, k, None, backend)
                best_s, best_r = merge(best_s, best_r, s, r, k)
        else:
            for r0 in range(0, n_rows, c):
                r1 = min(r0 + c, n_rows)
                al = allowed[r0:r1]
                n_ok = int(al.sum())
                if n_ok == 0:
                    continue
                rows = torch.arange(r0, r1, device=dev)
                n_rej = (r1 - r0) - n_ok
                if backend is Backend.FAISS and n_rej > _SKIP_FACTOR * k:
                    sub = rows[al]
                    s, r = self._block_topk(queries, self.store.gather(sub), sub, k, None, backend)
                else:
                    reject = ~al if n_rej else None
                    s, r = self._block_topk(
                        queries, self.store.block(r0, r1), rows, k, reject, backend
                    )
                best_s, best_r = merge(best_s, best_r, s, r, k)
        best_r = best_r.masked_fill(best_s == -torch.inf, -1)
        return best_s, best_r
