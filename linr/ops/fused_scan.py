"""Fused filtered scan: scores, filter and a per-lane partial top-k in one pass over the codes.

One program owns a block of BLOCK_B queries and a contiguous run of `tiles_per_split` tiles
of BLOCK_N positions. For each tile it converts the codes in registers, computes the
[BLOCK_B, BLOCK_N] scores with one tensor-core dot per D step, applies per-vector scale and
bias, drops rows the packed mask rejects, and inserts each score into the running top-KT of
its *lane* (lane j collects positions j, j + BLOCK_N, j + 2 BLOCK_N, ... of the run).
Insertion into a sorted list of KT is 2 KT compare-selects per score: no sort, no shared
memory, no atomics. Each program writes KT x BLOCK_N candidates per query, so the candidate
buffer is [B, n_splits * KT * BLOCK_N], independent of N (topk_search.py sizes it and makes
the result exact).

Positions index either all rows (row = position, optionally filtered by the mask) or a
compacted, sorted row list (explicit pre-filtering: row = rows[position]; only those rows'
codes are read, nothing is copied). Rows arrive in ascending order in each lane and the
insertion is strict (>), so equal values keep the lower row.

The kernel writes *upper bounds* of the exact fp32 score, not scores: the fast dot rounds
the query (and, for fp32 codes, the codes: tf32), and the bound adds what that rounding can
cost: err = A_b * ||c_r||_2 * |scale_r| + 3 * 16 u * |bias_r|, with A_b from
prepare_queries (it also covers the fp32 rounding of the value, which is at most about
||q|| ||c_r|| |scale_r| + |bias_r|) and ||c_r||_2 accumulated alongside the dot.
topk_search.py rescores the candidates that can matter with one exact function
(rescore.py), so every returned score comes from the same arithmetic (equal vectors tie
exactly, then go by row).

Modes (which dot, chosen per batch size in topk_search.py):
- MODE_FP32: fp32 codes, tf32 dot (both operands lose at most 2**-10 relative).
- MODE_FP16: int8 or fp16 codes converted to fp16 in registers (exact); the query is scaled
  by a power of two and rounded to fp16 on the host; fp16 dot with fp32 accumulation.
- MODE_INT8: int8 codes, query quantized per row to int8 (symmetric); int8 x int8 -> int32
  dot: half the operations of fp16 at twice the tensor-core rate.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MODE_FP32 = 0
MODE_FP16 = 1
MODE_INT8 = 2

_U = 2.0**-24  # fp32 unit roundoff
# Rounding of the kernel's value (a handful of fp32 operations) and of the rescoring's scale
# and bias steps: under 16 u of |q| |c| |scale| + |bias| each (the |bias| part counted 3x).
_ROUND_REL = 16 * _U
# Relative slack on A_b for the roundings of the bound's own arithmetic (norms, sqrt).
_SLACK = 1.0 + 2.0**-8
_NORM_ROWS = 1 << 18  # rows per step of code_norms: 128 MiB of fp32 temporaries at D = 128


@triton.jit
def _scan_topk_kernel(
    qa_ptr,  # [B, D] query operand: fp32 (FP32), fp16 (FP16), int8 (INT8)
    qs_ptr,  # fp32 [B] per-query factor the dot is multiplied by
    qerr_ptr,  # fp32 [B] A_b: bound factor on ||c_r||_2 * |scale_r|
    codes_ptr,  # [N, D] int8 | fp16 | fp32, rows contiguous
    scales_ptr,  # fp32 [N]
    bias_ptr,  # fp32 [N]
    mask_ptr,  # int32 [ceil(N / 32)]
    rows_ptr,  # int64 [P] sorted row list
    norms_ptr,  # fp32 [P] ||codes[row]||_2 per position, read when HAS_NORMS (else computed)
    out_v_ptr,  # fp32 [B, n_splits * KT * BLOCK_N]
    out_p_ptr,  # int32, same shape: positions, -1 for empty slots
    B,
    P,
    tiles_per_split,
    eps_round,  # bound factor on |bias| (fp32 roundings of the value and of the rescoring)
    stride_qa,
    stride_c,
    stride_out,
    D: tl.constexpr,  # one compilation per dimension: the D loop unrolls
    MODE: tl.constexpr,
    HAS_SCALES: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_MASK: tl.constexpr,
    HAS_ROWS: tl.constexpr,
    HAS_NORMS: tl.constexpr,
    KT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_b = tl.program_id(0)
    split = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    b_ok = offs_b < B
    lanes = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    qs = tl.load(qs_ptr + offs_b, mask=b_ok, other=0.0)
    qerr = tl.load(qerr_ptr + offs_b, mask=b_ok, other=0.0)
    qa_rows = qa_ptr + offs_b[:, None].to(tl.int64) * stride_qa

    # Running top-KT per (query, lane), sorted: v0 >= v1 >= ... (slots past KT unused).
    v0 = tl.full([BLOCK_B, BLOCK_N], float("-inf"), tl.float32)
    v1 = tl.full([BLOCK_B, BLOCK_N], float("-inf"), tl.float32)
    v2 = tl.full([BLOCK_B, BLOCK_N], float("-inf"), tl.float32)
    v3 = tl.full([BLOCK_B, BLOCK_N], float("-inf"), tl.float32)
    p0 = tl.full([BLOCK_B, BLOCK_N], -1, tl.int32)
    p1 = tl.full([BLOCK_B, BLOCK_N], -1, tl.int32)
    p2 = tl.full([BLOCK_B, BLOCK_N], -1, tl.int32)
    p3 = tl.full([BLOCK_B, BLOCK_N], -1, tl.int32)

    t0 = split * tiles_per_split
    for t in range(t0, t0 + tiles_per_split):
        pos = t * BLOCK_N + lanes
        ok = pos < P
        if HAS_ROWS:
            row = tl.load(rows_ptr + pos, mask=ok, other=0)
        else:
            row = pos.to(tl.int64)
        if HAS_MASK:
            word = tl.load(mask_ptr + (row >> 5), mask=ok, other=0)
            ok = ok & (((word >> (row & 31).to(tl.int32)) & 1) != 0)
        # Rows the filter rejects are masked out of the code loads: a masked-off row is never
        # fetched, and the loop stays free of data-dependent branches, so Triton pipelines
        # its loads (async copies) with or without a mask (docs/gpu.md, "Compiled for sm_90").
        c_rows = codes_ptr + row[:, None] * stride_c
        if MODE == 2:
            acc_i = tl.zeros([BLOCK_B, BLOCK_N], dtype=tl.int32)
        else:
            acc = tl.zeros([BLOCK_B, BLOCK_N], dtype=tl.float32)
        if not HAS_NORMS:
            cn2 = tl.zeros([BLOCK_N], dtype=tl.float32)
        for d0 in tl.static_range(0, D, BLOCK_D):  # unrolled: D is a constexpr
            d = d0 + offs_d
            d_ok = d < D
            c = tl.load(c_rows + d[None, :], mask=ok[:, None] & d_ok[None, :], other=0)
            a = tl.load(qa_rows + d[None, :], mask=b_ok[:, None] & d_ok[None, :], other=0)
            if not HAS_NORMS:
                cf = c.to(tl.float32)
                cn2 += tl.sum(cf * cf, axis=1)
            if MODE == 0:
                acc = tl.dot(a, tl.trans(c), acc)
            elif MODE == 1:
                acc = tl.dot(a, tl.trans(c.to(tl.float16)), acc)
            else:
                # Triton 3.6 needs the int32 result type spelled out (later versions infer it).
                acc_i = tl.dot(a, tl.trans(c), acc_i, out_dtype=tl.int32)
        if MODE == 2:
            s = acc_i.to(tl.float32) * qs[:, None]
        else:
            s = acc * qs[:, None]
        if HAS_NORMS:
            cn = tl.load(norms_ptr + pos, mask=ok, other=0.0)
        else:
            cn = tl.sqrt(cn2)
        if HAS_SCALES:
            sc = tl.load(scales_ptr + row, mask=ok, other=1.0)
            s = s * sc[None, :]
            cn = cn * tl.abs(sc)
        # The bound is rank one plus a per-row term: 2 operations per score.
        s += qerr[:, None] * cn[None, :]
        if HAS_BIAS:
            bi = tl.load(bias_ptr + row, mask=ok, other=0.0)
            s += (bi + eps_round * tl.abs(bi))[None, :]
        x = tl.where(b_ok[:, None] & ok[None, :], s, float("-inf"))
        xp = tl.full([BLOCK_B, BLOCK_N], 0, tl.int32) + pos[None, :]
        # Insert x into the sorted slots; the displaced entry moves down one slot.
        take = x > v0
        nv = tl.where(take, x, v0)
        np_ = tl.where(take, xp, p0)
        x = tl.where(take, v0, x)
        xp = tl.where(take, p0, xp)
        v0 = nv
        p0 = np_
        if KT > 1:
            take = x > v1
            nv = tl.where(take, x, v1)
            np_ = tl.where(take, xp, p1)
            x = tl.where(take, v1, x)
            xp = tl.where(take, p1, xp)
            v1 = nv
            p1 = np_
        if KT > 2:
            take = x > v2
            nv = tl.where(take, x, v2)
            np_ = tl.where(take, xp, p2)
            x = tl.where(take, v2, x)
            xp = tl.where(take, p2, xp)
            v2 = nv
            p2 = np_
        if KT > 3:
            take = x > v3
            v3 = tl.where(take, x, v3)
            p3 = tl.where(take, xp, p3)

    out = offs_b[:, None].to(tl.int64) * stride_out + split * (KT * BLOCK_N) + lanes[None, :]
    st = b_ok[:, None]
    tl.store(out_v_ptr + out, v0, mask=st)
    tl.store(out_p_ptr + out, p0, mask=st)
    if KT > 1:
        tl.store(out_v_ptr + out + BLOCK_N, v1, mask=st)
        tl.store(out_p_ptr + out + BLOCK_N, p1, mask=st)
    if KT > 2:
        tl.store(out_v_ptr + out + 2 * BLOCK_N, v2, mask=st)
        tl.store(out_p_ptr + out + 2 * BLOCK_N, p2, mask=st)
    if KT > 3:
        tl.store(out_v_ptr + out + 3 * BLOCK_N, v3, mask=st)
        tl.store(out_p_ptr + out + 3 * BLOCK_N, p3, mask=st)


def prepare_queries(q: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel operands (qa, qs, qerr) for fp32 queries q [B, D]: the dot uses qa, its result
    is multiplied by qs, and qerr (A_b) bounds how far the kernel's value can be from the
    exact rescoring, per unit of ||c_r||_2 * |scale_r| (Cauchy-Schwarz on the error vector).
    """
    dim = q.shape[1]
    qd = q.double()
    qnorm = qd.norm(dim=1)
    # Both the kernel's and the rescoring's fp32 accumulations: each under (D + 2) u
    # sum|q_i c_i| <= (D + 2) u ||q|| ||c||; 4 (D + 4) u covers both, truncating adds too.
    acc_err = 4.0 * (dim + 4) * _U * qnorm
    amax = q.abs().amax(dim=1)
    if mode == MODE_FP32:
        # tf32 keeps 10 of fp32's 23 mantissa bits in both operands (truncated or rounded):
        # each product is off by < 2**-9 (1 + 2**-10) of |q_i c_i|.
        qerr = (2.0**-9 + 2.0**-19) * qnorm + acc_err
        qa, qs = q, torch.ones_like(amax)
    elif mode == MODE_FP16:
        # Scale each row by a power of two (exact) so its largest element lies in
        # [2**14, 2**15): far from fp16 overflow (65504), little left in its subnormals.
        _, e = torch.frexp(amax)
        e = torch.where(amax > 0, e, torch.zeros_like(e)).clamp(-100, 100)
        f = torch.ldexp(torch.ones_like(amax), 15 - e)
        qa = (q * f[:, None]).to(torch.float16)
        qs = 1.0 / f
        qerr = (qd - qa.double() * qs.double()[:, None]).norm(dim=1) + acc_err
    elif mode == MODE_INT8:
        # Symmetric per-row quantization q ~ qs * q8, |q8| <= 127.
        qs = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        qa = torch.round(q / qs[:, None]).clamp(-127, 127).to(torch.int8)
        qerr = (qd - qa.double() * qs.double()[:, None]).norm(dim=1) + acc_err
    else:
        raise ValueError(f"unknown scan mode {mode}")
    # Rounding of the values: |value| <= (||q|| + ||q - qa qs||) ||c|| |scale| + |bias|
    # (the bias part is added in the kernel).
    qerr = qerr + _ROUND_REL * (qnorm + qerr)
    qerr = (qerr * _SLACK).to(torch.float32) * _SLACK  # fp32 rounding of qerr itself
    return qa.contiguous(), qs.to(torch.float32).contiguous(), qerr.contiguous()


def _pointers(qa, qs, qerr, codes, scales, bias, mask_words, rows, norms, out_v, out_p) -> list:
    dummy = qs  # any tensor: pointers of disabled features are never read
    opt = [t if t is not None else dummy for t in (scales, bias, mask_words, rows, norms)]
    return [qa, qs, qerr, codes, *opt, out_v, out_p]


def _meta(dim, mode, scales, bias, mask_words, rows, norms, kt, block_b, block_n, block_d):
    return {
        "D": dim,
        "MODE": mode,
        "HAS_SCALES": scales is not None,
        "HAS_BIAS": bias is not None,
        "HAS_MASK": mask_words is not None,
        "HAS_ROWS": rows is not None,
        "HAS_NORMS": norms is not None,
        "KT": kt,
        "BLOCK_B": block_b,
        "BLOCK_N": block_n,
        "BLOCK_D": block_d,
    }


_QUERY_DTYPE = {MODE_FP32: torch.float32, MODE_FP16: torch.float16, MODE_INT8: torch.int8}


def compiled_resources(
    codes: torch.Tensor,
    batch: int,
    flags: tuple[bool, bool, bool, bool, bool],
    mode: int,
    kt: int,
    block_b: int,
    block_n: int,
    block_d: int,
    num_warps: int,
    num_stages: int,
) -> tuple[int, int, int]:
    """(registers per thread, shared-memory bytes per program, local memory: Triton's
    n_spills, 0 when ptxas spilled nothing) of the kernel scan_partial launches for these
    codes (CUDA) and features (scales, bias, mask, rows, norms given): compiles it, or finds
    it in Triton's cache, without launching it."""
    dev, dim = codes.device, codes.shape[1]
    qa = torch.empty((1, dim), dtype=_QUERY_DTYPE[mode], device=dev)
    f32 = torch.empty(1, dtype=torch.float32, device=dev)
    has_scales, has_bias, has_mask, has_rows, has_norms = flags
    scales = f32 if has_scales else None
    bias = f32 if has_bias else None
    mask_words = torch.empty(1, dtype=torch.int32, device=dev) if has_mask else None
    rows = torch.empty(1, dtype=torch.int64, device=dev) if has_rows else None
    norms = f32 if has_norms else None
    out_p = torch.empty(1, dtype=torch.int32, device=dev)
    # Integer arguments as a launch passes them: Triton specializes on == 1 and % 16 == 0.
    compiled = _scan_topk_kernel.warmup(
        *_pointers(qa, f32, f32, codes, scales, bias, mask_words, rows, norms, f32, out_p),
        batch,
        1 << 20,
        2,
        3 * _ROUND_REL,
        dim,
        codes.stride(0),
        kt * block_n * 2,
        **_meta(dim, mode, scales, bias, mask_words, rows, norms, kt, block_b, block_n, block_d),
        num_warps=num_warps,
        num_stages=num_stages,
        grid=(1,),
    )
    compiled._init_handles()  # loads the binary: ptxas's register count comes with it
    return int(compiled.n_regs), int(compiled.metadata.shared), int(compiled.n_spills)


def scan_partial(
    q: torch.Tensor,
    codes: torch.Tensor,
    *,
    scales: torch.Tensor | None,
    bias: torch.Tensor | None,
    mask_words: torch.Tensor | None,
    rows: torch.Tensor | None,
    mode: int,
    kt: int,
    n_splits: int,
    norms: torch.Tensor | None = None,
    tiles_per_split: int,
    block_b: int,
    block_n: int,
    block_d: int,
    num_warps: int = 4,
    num_stages: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused scan. q: fp32 [B, D]; codes [N, D] with unit stride along D; norms:
    code_norms(codes, rows), or None to compute them in the kernel (per query block).
    Returns (values fp32 [B, n_splits * kt * block_n], positions int32, same shape): for each
    split s, slot j < kt and lane l, the (j+1)-th best of lane l's positions in split s
    (values are upper bounds in MODE_INT8); -inf / -1 where the lane has fewer entries."""
    b, dim = q.shape
    n_pos = rows.shape[0] if rows is not None else codes.shape[0]
    qa, qs, qerr = prepare_queries(q, mode)
    width = n_splits * kt * block_n
    out_v = torch.empty((b, width), dtype=torch.float32, device=q.device)
    out_p = torch.empty((b, width), dtype=torch.int32, device=q.device)
    grid = (-(-b // block_b), n_splits)
    _scan_topk_kernel[grid](
        *_pointers(qa, qs, qerr, codes, scales, bias, mask_words, rows, norms, out_v, out_p),
        b,
        n_pos,
        tiles_per_split,
        3 * _ROUND_REL,
        qa.stride(0),
        codes.stride(0),
        width,
        **_meta(dim, mode, scales, bias, mask_words, rows, norms, kt, block_b, block_n, block_d),
        num_warps=num_warps,
        num_stages=num_stages,
    )
    return out_v, out_p


def code_norms(codes: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 [P] ||codes[r]||_2 of every row r (rows None) or of rows[p], in steps of
    _NORM_ROWS rows (bounded temporaries): the kernel's `norms` argument."""
    n = codes.shape[0] if rows is None else rows.shape[0]
    out = torch.empty(n, dtype=torch.float32, device=codes.device)
    for r0 in range(0, n, _NORM_ROWS):
        part = codes[r0 : r0 + _NORM_ROWS] if rows is None else codes[rows[r0 : r0 + _NORM_ROWS]]
        out[r0 : r0 + _NORM_ROWS] = part.float().norm(dim=1)
    return out


def exact_scores(
    q: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """float64 [B, N] scores (q . codes[r]) * scales[r] + bias[r]: the plain definition."""
    s = q.double() @ codes.double().T
    if scales is not None:
        s = s * scales.double()[None, :]
    if bias is not None:
        s = s + bias.double()[None, :]
    return s


def allowed_rows(
    n: int, mask_words: torch.Tensor | None, rows: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """bool [N]: rows a search may return (all, the mask's set bits, or the row list)."""
    if rows is not None:
        allowed = torch.zeros(n, dtype=torch.bool, device=device)
        allowed[rows] = True
        return allowed
    if mask_words is not None:
        r = torch.arange(n, device=device)
        return ((mask_words[r >> 5].to(torch.int64) >> (r & 31)) & 1).bool()
    return torch.ones(n, dtype=torch.bool, device=device)


def scan_partial_reference(
    q: torch.Tensor,
    codes: torch.Tensor,
    *,
    scales: torch.Tensor | None,
    bias: torch.Tensor | None,
    mask_words: torch.Tensor | None,
    rows: torch.Tensor | None,
    kt: int,
    n_splits: int,
    tiles_per_split: int,
    block_n: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain version of scan_partial for the exact modes: float64 scores, and for every
    (split, lane) a stable descending sort of its positions' scores, first kt kept."""
    b, n = q.shape[0], codes.shape[0]
    s = exact_scores(q, codes, scales, bias)
    allowed = allowed_rows(n, mask_words, rows, q.device)
    s = s.masked_fill(~allowed[None, :], -torch.inf)
    if rows is not None:
        s = s[:, rows]
    n_pos = s.shape[1]
    full = n_splits * tiles_per_split * block_n
    pad = torch.full((b, full), -torch.inf, dtype=torch.float64)
    pad[:, :n_pos] = s
    # [B, split, tile, lane]: a lane's positions run along the tile axis, ascending.
    grid = pad.view(b, n_splits, tiles_per_split, block_n)
    vals, order = torch.sort(grid, dim=2, descending=True, stable=True)
    if tiles_per_split < kt:  # fewer positions per lane than slots: pad the slots
        fill = (b, n_splits, kt - tiles_per_split, block_n)
        vals = torch.cat([vals, torch.full(fill, -torch.inf, dtype=vals.dtype)], dim=2)
        order = torch.cat([order, torch.zeros(fill, dtype=order.dtype)], dim=2)
    vals, order = vals[:, :, :kt, :], order[:, :, :kt, :]
    split = torch.arange(n_splits).view(1, n_splits, 1, 1)
    lane = torch.arange(block_n).view(1, 1, 1, block_n)
    pos = (split * tiles_per_split + order) * block_n + lane
    pos = pos.masked_fill(vals == -torch.inf, -1)
    return vals.reshape(b, -1), pos.reshape(b, -1)
