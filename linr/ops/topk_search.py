"""scan_topk: exact filtered top-k over int8 / fp16 / fp32 codes with the fused scan.

"Exact" means: the top-k of the scores computed by one fp32 function, rescore.py's, for
every allowed row (ordered by score desc, then row asc). Algorithm, one pass over the codes
and then work proportional to B x k:
1. The fused scan (fused_scan.py) splits the positions into `n_splits` runs and keeps, for
   each query and each *lane group* (positions of one run that share a lane), the best KT
   entries by an upper bound u(r) >= exact(r). Candidates: [B, n_splits * KT * BLOCK_N],
   independent of N.
2. Refine: rescore the best m candidates by bound exactly (rescore.py) and merge them
   (merge_topk.py); if the (m+1)-th bound is below the k-th exact score, no other candidate
   can be a winner (its exact score is below its bound); else m grows. The bounds are tight
   (~2e-4 of ||q|| ||c|| for the fp16 query, ~7e-3 for the int8 query on Gaussian data),
   so m = 2k nearly always suffices.
3. Exactness check: a lane group can hide a winner w only if its KT candidates all have
   bounds >= u(w) >= exact(w) >= the k-th exact score S_k found in step 2. Such groups are
   *flagged*; every row of a flagged group is rescored and merged in. With >= 16 k lane
   groups a group holds 1/16 winner on average, so with KT = 2 a fraction ~(1/16)**2 / 2
   of the groups is flagged (rows in random order); adversarial data (many equal scores)
   makes step 3 slower, never wrong.
Queries are processed in chunks so the candidate buffers stay under _CAND_BUDGET_BYTES.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from linr.ops.fused_scan import (
    MODE_FP16,
    MODE_FP32,
    MODE_INT8,
    allowed_rows,
    code_norms,
    compiled_resources,
    exact_scores,
    scan_partial,
)
from linr.ops.inputs import check_inputs
from linr.ops.merge_topk import merge_topk, segmented_topk
from linr.ops.occupancy import limits_of, programs_per_sm
from linr.ops.rescore import rescore

# Not yet measured on a GPU (written without one); initial values from the arithmetic in
# docs/gpu.md, to be tuned with benchmarks/bench_scan.py. The register and shared-memory
# figures quoted below are ptxas's for sm_90 (`make gpu-compile`, docs/gpu.md).
_BLOCK_N = 64  # rows per tile = lanes per program
_KT = 2  # candidates kept per lane group: flagged fraction ~ lambda**KT / KT!
_GROUPS_PER_K = 16  # lane groups per wanted result: lambda = 1/16 winners per group
# From this batch on, int8 codes use the int8 x int8 dot. The fp16 dot does 2 B flops per
# int8 code byte, so it meets an H100's compute roof (~990 fp16 TFLOP/s over ~3.35 TB/s,
# ~295 flops/byte) near B = 150; the int8 dot runs at twice the rate. Below that both are
# bound by reading the codes and the fp16 query's tighter bound means fewer rescorings.
_INT8_QUERY_MIN_BATCH = 128
# A program keeps its [BLOCK_B, D] query tile in registers across the tiles it scans: from
# this many bytes on, BLOCK_B = 32 instead of 64. At 64 x 128 fp32 (32 KiB) and 64 x 384
# fp16 (48 KiB) ptxas spilled at 255 registers; 64 x 384 int8 (24 KiB) fit (docs/gpu.md).
_QUERY_TILE_BYTES = 32 << 10
_QUERY_BYTES = {MODE_FP32: 4, MODE_FP16: 2, MODE_INT8: 1}
# Shared memory of a pipelined scan: (num_stages - 1) [BLOCK_N, D] code tiles in flight plus
# the [BLOCK_B, D] query tile (ptxas, sm_90: fp32 codes, D = 384, BLOCK_B = 32 took 240.2
# KiB at 3 stages, the model says 240). Up to this many bytes 3 stages, else 2: under the
# 227 KiB a program may have, with room for layout-conversion scratch.
_SMEM_BUDGET = 216 << 10
# Candidate buffers: 8 bytes per slot (bound + position), counted twice for the temporaries
# of topk and of the lane-group check.
_CAND_BUDGET_BYTES = 512 << 20
_BYTES_PER_SLOT = 16
_PAIR_CHUNK = 1 << 21  # (query, row) pairs rescored per launch: ~50 MB of temporaries


@dataclass(frozen=True)
class KernelShape:
    """The compile-time part of a plan: one Triton compilation per distinct value (with the
    codes' dtype, D and which of scales / bias / mask / rows are given)."""

    mode: int
    kt: int
    block_b: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int
    norms: bool  # code norms computed once per search (code_norms), not per query block


@dataclass(frozen=True)
class ScanPlan:
    """Launch geometry of one search; make_plan chooses it, tests may force parts of it."""

    mode: int
    kt: int
    block_b: int
    block_n: int
    block_d: int
    n_splits: int
    tiles_per_split: int
    query_chunk: int
    num_warps: int = 4
    num_stages: int = 3
    norms: bool = False


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).multi_processor_count)
    return 2  # Triton's CPU interpreter: few programs keep it fast


def choose_mode(codes_dtype: torch.dtype, batch: int) -> int:
    if codes_dtype == torch.float32:
        return MODE_FP32
    if codes_dtype == torch.int8 and batch >= _INT8_QUERY_MIN_BATCH:
        return MODE_INT8
    return MODE_FP16


def _block_d(dim: int, mode: int) -> int:
    """D step of the dot: the width that pads D least, the widest of those: D = 384 runs
    as 3 x 128, not 2 x 256 (25% padded work). At most 128 (256-wide steps took up to 255
    registers and spilled, ptxas sm_90), 64 for fp32 codes (fp32, B = 32, D = 128: 255
    registers and 28 bytes of spills at 128; docs/gpu.md). Tensor-core dots need K >= 16
    (fp16) / 32 (int8); D is masked, so any D works."""
    widths = (64, 32) if mode == MODE_FP32 else (128, 64, 32)
    return min((-(-dim // w) * w, -w, w) for w in widths)[2]


def kernel_shape(
    batch: int, dim: int, codes_dtype: torch.dtype, *, mode: int | None = None, kt: int = _KT
) -> KernelShape:
    """Block sizes, warps and pipeline depth of the fused scan for a batch of `batch`."""
    batch = max(batch, 1)
    if mode is None:
        mode = choose_mode(codes_dtype, batch)
    if not 1 <= kt <= 4:
        raise ValueError(f"kt must be 1..4, got {kt}")
    block_b = 16 if batch <= 16 else 32 if batch <= 32 else 64
    if block_b == 64 and 64 * dim * _QUERY_BYTES[mode] >= _QUERY_TILE_BYTES:
        block_b = 32
    block_n = _BLOCK_N
    code_bytes = codes_dtype.itemsize
    smem = 2 * block_n * dim * code_bytes + block_b * dim * _QUERY_BYTES[mode]
    norms = batch > block_b
    return KernelShape(
        mode=mode,
        kt=kt,
        block_b=block_b,
        block_n=block_n,
        block_d=_block_d(dim, mode),
        num_warps=8 if block_b * block_n >= 4096 else 4,
        num_stages=3 if smem <= _SMEM_BUDGET else 2,
        norms=norms,
    )


def shape_candidates(
    batch: int, dim: int, codes_dtype: torch.dtype, *, mode: int | None = None, kt: int = _KT
) -> list[KernelShape]:
    """kernel_shape, then the shapes the planner falls back to, in order, while ptxas spills
    in the one before: the other warp count (4 <-> 8), then half the D step. ptxas trades a
    few bytes of spills for a register count it aims at in some variants, and which ones
    changes with the Triton version (3.9: fp16, B = 1, D = 256 spilled 24 bytes at 96
    registers, none at 8 warps; 3.6: fp32, B = 1024, D = 384 with a row list 8 bytes at
    168). On a GPU plan_search reads the spill count off the compiled kernel and takes the
    first shape without; `make gpu-compile` compiles the same chain (docs/gpu.md)."""
    first = kernel_shape(batch, dim, codes_dtype, mode=mode, kt=kt)
    out = [first, dataclasses.replace(first, num_warps=12 - first.num_warps)]
    if first.block_d > 32:
        out.append(dataclasses.replace(first, block_d=first.block_d // 2))
    return out


def make_plan(
    batch: int,
    n_pos: int,
    dim: int,
    k: int,
    codes_dtype: torch.dtype,
    device: torch.device,
    *,
    mode: int | None = None,
    kt: int = _KT,
    n_splits: int | None = None,
    programs_per_sm: int | None = None,
    shape: KernelShape | None = None,
) -> ScanPlan:
    """The plan of one search. `programs_per_sm`: how many programs of the compiled kernel
    one SM holds (plan_search reads it off the compiled kernel); 1 when not given. `shape`:
    another kernel's compile-time choices (the 1-bit scan's, linr.ops.hamming.kernel_shape)
    instead of the fused scan's kernel_shape."""
    batch, n_pos = max(batch, 1), max(n_pos, 1)
    if shape is None:
        shape = kernel_shape(batch, dim, codes_dtype, mode=mode, kt=kt)
    n_tiles = max(1, _cdiv(n_pos, shape.block_n))
    if n_splits is None:
        # Enough lane groups for k (step 3's flagged fraction), and one full wave of
        # resident programs over the GPU.
        by_k = _cdiv(k * _GROUPS_PER_K, shape.block_n)
        resident = max(1, programs_per_sm or 1) * _sm_count(device)
        n_splits = max(by_k, _cdiv(resident, _cdiv(batch, shape.block_b)))
    n_splits = min(max(n_splits, 1), n_tiles)
    tiles_per_split = _cdiv(n_tiles, n_splits)
    n_splits = _cdiv(n_tiles, tiles_per_split)
    slots = n_splits * shape.kt * shape.block_n
    # The first rescoring handles 2k pairs per query at once: keep it under _PAIR_CHUNK.
    chunk = min(_CAND_BUDGET_BYTES // (slots * _BYTES_PER_SLOT), _PAIR_CHUNK // (2 * k))
    chunk = min(batch, max(shape.block_b, chunk // shape.block_b * shape.block_b))
    return ScanPlan(
        mode=shape.mode,
        kt=shape.kt,
        block_b=shape.block_b,
        block_n=shape.block_n,
        block_d=shape.block_d,
        n_splits=n_splits,
        tiles_per_split=tiles_per_split,
        query_chunk=max(chunk, 1),
        num_warps=shape.num_warps,
        num_stages=shape.num_stages,
        norms=shape.norms,
    )


# The shape and programs per SM of each compiled specialization, per device: read once per
# process.
_RESIDENT: dict[tuple, tuple[KernelShape, int]] = {}


def plan_search(
    q: torch.Tensor,
    codes: torch.Tensor,
    k: int,
    *,
    scales: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    mask_words: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    mode: int | None = None,
) -> ScanPlan:
    """make_plan for these inputs, with the kernel compiled for them (on a CUDA device): the
    first of shape_candidates that ptxas compiled without spills (else the one with fewest),
    and the programs per SM its registers and shared memory allow (linr/ops/occupancy.py)."""
    b, dim = q.shape
    n_pos = rows.shape[0] if rows is not None else codes.shape[0]
    dev = q.device
    ppsm = None
    shape = None
    if dev.type == "cuda":
        shapes = shape_candidates(max(b, 1), dim, codes.dtype, mode=mode)
        flags = (
            scales is not None,
            bias is not None,
            mask_words is not None,
            rows is not None,
            shapes[0].norms,
        )
        key = (dev, codes.dtype, dim, codes.stride(0), b == 1, flags, shapes[0])
        if key not in _RESIDENT:
            best = None
            for cand in shapes:
                n_regs, shared, n_spills = compiled_resources(
                    codes, b, flags, cand.mode, cand.kt, cand.block_b, cand.block_n,
                    cand.block_d, cand.num_warps, cand.num_stages,
                )  # fmt: skip
                if best is None or n_spills < best[0]:
                    best = (n_spills, cand, n_regs, shared)
                if n_spills == 0:
                    break
            assert best is not None
            _, cand, n_regs, shared = best
            _RESIDENT[key] = (cand, programs_per_sm(n_regs, shared, cand.num_warps, limits_of(dev)))
        shape, ppsm = _RESIDENT[key]
    return make_plan(
        b, n_pos, dim, k, codes.dtype, dev, mode=mode, programs_per_sm=ppsm, shape=shape
    )


@dataclass
class _Chunk:
    """One query chunk's inputs, and how positions map to rows."""

    q: torch.Tensor
    codes: torch.Tensor
    scales: torch.Tensor | None
    bias: torch.Tensor | None
    mask_words: torch.Tensor | None
    rows: torch.Tensor | None
    n_pos: int

    def rows_of(self, pos: torch.Tensor) -> torch.Tensor:
        return self.rows[pos] if self.rows is not None else pos

    def score(self, pair_q: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return rescore(self.q, self.codes, pair_q, self.rows_of(pos), self.scales, self.bias)


def _rescore_best(
    cand_v: torch.Tensor,
    cand_p: torch.Tensor,
    qidx: torch.Tensor,
    m: int,
    k: int,
    ch: _Chunk,
    stats: dict[str, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rescore the m best candidates by bound of queries qidx (rows of cand_*). Returns
    their exact top-k (scores, positions) and the (m+1)-th bound (-inf if none). Ties in
    bound need no order here: whatever is left out has a bound <= the (m+1)-th."""
    total = cand_v.shape[1]
    top_u, top_i = torch.topk(cand_v, min(m + 1, total), dim=1)
    if total > m:
        next_up = top_u[:, m]
    else:
        next_up = torch.full_like(top_u[:, 0], -torch.inf)
    sel_u = top_u[:, :m]
    sel_p = cand_p.gather(1, top_i[:, :m]).long().masked_fill(sel_u == -torch.inf, -1)
    width = sel_p.shape[1]
    pair_q = qidx[:, None].expand(-1, width).reshape(-1)
    s = ch.score(pair_q, sel_p.clamp(min=0).reshape(-1)).view(-1, width)
    stats["rescored"] += pair_q.numel()
    ex_v, ex_p = merge_topk(s.masked_fill(sel_p < 0, -torch.inf), sel_p, k)
    return ex_v, ex_p, next_up


def _flags(cand_v: torch.Tensor, kth: torch.Tensor, plan: ScanPlan) -> torch.Tensor:
    """bool [B, n_splits, BLOCK_N]: lane groups whose KT-th bound reaches the k-th exact
    score, so they may hide a winner (step 3)."""
    b = cand_v.shape[0]
    last = cand_v.view(b, plan.n_splits, plan.kt, plan.block_n)[:, :, plan.kt - 1, :]
    return (last > -torch.inf) & (last >= kth[:, None, None])


def _select(
    cand_v: torch.Tensor,
    cand_p: torch.Tensor,
    k: int,
    ch: _Chunk,
    plan: ScanPlan,
    stats: dict[str, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 2 and 3: exact top-k (scores, positions) from the candidates' upper bounds.
    The usual case costs one host synchronization: m = 2k was enough for every query and
    no lane group is flagged."""
    bc, total = cand_v.shape
    dev = cand_v.device
    m = max(1, min(total, 2 * k))
    stats["refine_rounds"] += 1
    top_v, top_p, next_up = _rescore_best(
        cand_v, cand_p, torch.arange(bc, device=dev), m, k, ch, stats
    )
    done = (next_up == -torch.inf) | (next_up < top_v[:, k - 1])
    flagged = _flags(cand_v, top_v[:, k - 1], plan)
    all_done, any_flag = torch.stack([done.all(), flagged.any()]).tolist()
    if not all_done:
        todo = torch.nonzero(~done).flatten()
        while todo.numel():
            m = min(total, 4 * m)
            stats["refine_rounds"] += 1
            left = []
            step = max(1, _PAIR_CHUNK // m)
            for c0 in range(0, todo.numel(), step):
                idx = todo[c0 : c0 + step]
                ex_v, ex_p, nxt = _rescore_best(cand_v[idx], cand_p[idx], idx, m, k, ch, stats)
                ok = (nxt == -torch.inf) | (nxt < ex_v[:, k - 1])
                top_v[idx[ok]], top_p[idx[ok]] = ex_v[ok], ex_p[ok]
                left.append(idx[~ok])
            todo = torch.cat(left)
        flagged = _flags(cand_v, top_v[:, k - 1], plan)
        any_flag = bool(flagged.any())
    if any_flag:
        top_v, top_p = _complete_groups(flagged, top_v, top_p, k, ch, plan, stats)
    return top_v, top_p


def _complete_groups(
    flagged: torch.Tensor,
    top_v: torch.Tensor,
    top_p: torch.Tensor,
    k: int,
    ch: _Chunk,
    plan: ScanPlan,
    stats: dict[str, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 3: rescore every row of each flagged lane group and merge it in."""
    bc = flagged.shape[0]
    bn, tps = plan.block_n, plan.tiles_per_split
    dev = flagged.device
    # Entries of flagged groups come back with the whole group below: drop them here.
    tp = top_p.clamp(min=0)
    qi = torch.arange(bc, device=dev)[:, None]
    hit = flagged[qi, tp // (tps * bn), tp % bn] & (top_p >= 0)
    top_v = top_v.masked_fill(hit, -torch.inf)
    fq, fs, fl = flagged.nonzero(as_tuple=True)
    stats["flagged_groups"] += fq.numel()
    steps = torch.arange(tps, device=dev) * bn
    per_launch = max(1, _PAIR_CHUNK // tps)
    for g0 in range(0, fq.numel(), per_launch):
        start = fs[g0 : g0 + per_launch] * (tps * bn) + fl[g0 : g0 + per_launch]
        pos = (start[:, None] + steps[None, :]).flatten()
        pq = fq[g0 : g0 + per_launch, None].expand(-1, tps).flatten()
        keep = pos < ch.n_pos
        if ch.mask_words is not None:
            r = pos.clamp(max=max(ch.n_pos - 1, 0))
            keep &= ((ch.mask_words[r >> 5].to(torch.int64) >> (r & 31)) & 1).bool()
        pos, pq = pos[keep], pq[keep]
        s = ch.score(pq, pos)
        stats["rescored"] += pq.numel()
        valid = top_v > -torch.inf
        seg = torch.cat([qi.expand(-1, k)[valid], pq])
        top_v, top_p = segmented_topk(
            seg, torch.cat([top_v[valid], s]), torch.cat([top_p[valid], pos]), bc, k
        )
    return top_v, top_p


def run_plan(
    q: torch.Tensor,
    codes: torch.Tensor,
    k: int,
    plan: ScanPlan,
    *,
    scales: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    mask_words: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
    stats: dict[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """scan_topk with a given plan; inputs already checked (see scan_topk). `stats`, when
    given, receives counts: refine_rounds, rescored (pairs), flagged_groups."""
    if stats is None:
        stats = {}
    for key in ("refine_rounds", "rescored", "flagged_groups"):
        stats.setdefault(key, 0)
    b = q.shape[0]
    dev = q.device
    out_s = torch.full((b, k), -torch.inf, device=dev)
    out_r = torch.full((b, k), -1, dtype=torch.int64, device=dev)
    n_pos = rows.shape[0] if rows is not None else codes.shape[0]
    if b == 0 or n_pos == 0:
        return out_s, out_r
    norms = code_norms(codes, rows) if plan.norms else None
    for b0 in range(0, b, plan.query_chunk):
        qc = q[b0 : b0 + plan.query_chunk]
        ch = _Chunk(qc, codes, scales, bias, mask_words, rows, n_pos)
        cand_v, cand_p = scan_partial(
            qc,
            codes,
            scales=scales,
            bias=bias,
            mask_words=mask_words,
            rows=rows,
            mode=plan.mode,
            kt=plan.kt,
            norms=norms,
            n_splits=plan.n_splits,
            tiles_per_split=plan.tiles_per_split,
            block_b=plan.block_b,
            block_n=plan.block_n,
            block_d=plan.block_d,
            num_warps=plan.num_warps,
            num_stages=plan.num_stages,
        )
        top_v, top_p = _select(cand_v, cand_p, k, ch, plan, stats)
        out_s[b0 : b0 + qc.shape[0]] = top_v
        found = top_p >= 0
        out_r[b0 : b0 + qc.shape[0]] = torch.where(found, ch.rows_of(top_p.clamp(min=0)), -1)
    return out_s, out_r


def scan_topk(
    q: torch.Tensor,
    codes: torch.Tensor,
    k: int,
    *,
    scales: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    mask_words: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k rows by score (q[b] . codes[r]) * scales[r] + bias[r].

    q: fp32 [B, D]; codes: int8 | fp16 | fp32 [N, D]; scales, bias: fp32 [N] or None (1, 0);
    mask_words: int32 [ceil(N / 32)], bit r % 32 of word r // 32 allows row r; rows: sorted
    int64 row list to scan instead of all rows (exclusive with mask_words).
    Returns (scores fp32 [B, k] padded with -inf, rows int64 [B, k] padded with -1), ordered
    by score descending, equal scores by ascending row. Scores are fp32 dot products (see
    docs/gpu.md for the error bound); allowed rows must have finite scores.
    """
    c = check_inputs(q, codes, k, scales, bias, mask_words, rows)
    plan = plan_search(
        c.q, codes, c.k, scales=c.scales, bias=c.bias, mask_words=c.mask_words, rows=c.rows
    )
    return run_plan(
        c.q, codes, c.k, plan, scales=c.scales, bias=c.bias, mask_words=c.mask_words, rows=c.rows
    )


def scan_topk_reference(
    q: torch.Tensor,
    codes: torch.Tensor,
    k: int,
    *,
    scales: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    mask_words: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain version of scan_topk: float64 scores of every row, rejected rows set to -inf,
    a stable descending sort (so equal scores keep ascending rows), the first k kept."""
    b, n = q.shape[0], codes.shape[0]
    s = exact_scores(q, codes, scales, bias)
    s = s.masked_fill(~allowed_rows(n, mask_words, rows, q.device)[None, :], -torch.inf)
    vals, idx = torch.sort(s, dim=1, descending=True, stable=True)
    out_s = torch.full((b, k), -torch.inf, dtype=torch.float64, device=q.device)
    out_r = torch.full((b, k), -1, dtype=torch.int64, device=q.device)
    m = min(k, n)
    out_s[:, :m], out_r[:, :m] = vals[:, :m], idx[:, :m]
    out_r = out_r.masked_fill(out_s == -torch.inf, -1)
    return out_s.to(torch.float32), out_r
