"""Filtered Hamming-estimate scan of 1-bit codes with a per-lane partial top-k (GPU).

The 1-bit twin of fused_scan.py: one program owns BLOCK_B queries and a run of
`tiles_per_split` tiles of BLOCK_N positions; for each tile it XORs the query's and the
rows' 32-bit code words, counts the differing bits (popc on CUDA; a shift-and-mask count
under Triton's CPU interpreter, which has no libdevice), turns matches into the estimate of
linr/onebit/estimate.py (table lookup times the row's norm times the query's factor, minus
the squared norm for l2), drops rows the packed attribute mask rejects, and inserts the
value into the running top-KT of its lane. Rows arrive ascending per lane and insertion is
strict, so equal values keep the lower row.

The word loop is a loop at run time, not unrolled: unrolled (static_range), the query
words of the block are loop-invariant loads that Triton hoists out of the tile loop, so all
W of them stay in registers, and ptxas spilled from 256 bits on (up to 3.5 KB at 1536).
kernel_shape gives each thread 8 of the BLOCK_B x BLOCK_N estimates (num_warps = BLOCK_B *
BLOCK_N / 256; at 16 a thread ptxas took 223 registers). The launch and `make gpu-compile`
both take the shape from kernel_shape (docs/gpu.md).

The kernel writes the estimate plus 2**-20 of its magnitude: an upper bound of the float32
estimate that topk_search._select rescores, whatever the compiler contracts into FMAs
(each contraction moves the value by at most a rounding, 2**-24 relative). The exact top-c
then comes from linr.ops.topk_search's refine and lane-group check, with scores from
`estimate_pairs` (the same float32 operations as every other scan).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from linr.ops import interpreting
from linr.ops.topk_search import _KT, KernelShape, _select, make_plan

if TYPE_CHECKING:
    from linr.ops.aot import Variant

_EPS = 2.0**-20  # bound's relative widening (see the module docstring)
_LUT = [bin(i).count("1") for i in range(256)]


@triton.jit
def _hamming_topk_kernel(
    q_ptr,  # int32 [B, W] query code words
    qa_ptr,  # fp32 [B] the query's factor a_q
    codes_ptr,  # int32 [N, W] code words, rows contiguous
    norms_ptr,  # fp32 [N]
    table_ptr,  # fp32 [32 W + 1] cos(pi (1 - m / bits))
    mask_ptr,  # int32 [ceil(N / 32)]
    rows_ptr,  # int64 [P] sorted row list
    out_v_ptr,  # fp32 [B, n_splits * KT * BLOCK_N]
    out_p_ptr,  # int32, same shape: positions, -1 for empty slots
    B,
    P,
    tiles_per_split,
    stride_q,
    stride_c,
    stride_out,
    W: tl.constexpr,  # words per code: the word loop unrolls
    L2: tl.constexpr,
    HAS_MASK: tl.constexpr,
    HAS_ROWS: tl.constexpr,
    POPC: tl.constexpr,  # libdevice popc (compiled) or the shift-and-mask count
    KT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0)
    split = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    b_ok = offs_b < B
    lanes = tl.arange(0, BLOCK_N)
    qa = tl.load(qa_ptr + offs_b, mask=b_ok, other=0.0)
    q_rows = q_ptr + offs_b.to(tl.int64) * stride_q

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
        c_rows = codes_ptr + row * stride_c
        diff = tl.full([BLOCK_B, BLOCK_N], 0, tl.int32)
        for w in range(W):  # not static_range: see the module docstring
            cw = tl.load(c_rows + w, mask=ok, other=0)
            qw = tl.load(q_rows + w, mask=b_ok, other=0)
            x = qw[:, None] ^ cw[None, :]
            if POPC:
                diff += libdevice.popc(x)
            else:
                x = x - ((x >> 1) & 0x55555555)
                x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
                x = (x + (x >> 4)) & 0x0F0F0F0F
                x = x + (x >> 8)
                x = x + (x >> 16)
                diff += x & 0x3F
        tv = tl.load(table_ptr + (W * 32 - diff))
        nr = tl.load(norms_ptr + row, mask=ok, other=0.0)
        s = (tv * nr[None, :]) * qa[:, None]
        mag = tl.abs(s)
        if L2:
            nn = nr * nr
            s = s - nn[None, :]
            mag = mag + nn[None, :]
        s = s + 9.5367431640625e-07 * mag  # _EPS = 2**-20
        x = tl.where(b_ok[:, None] & ok[None, :], s, float("-inf"))
        xp = tl.full([BLOCK_B, BLOCK_N], 0, tl.int32) + pos[None, :]
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


_BLOCK_N = 64  # positions per tile = lanes per program
_PER_THREAD = 8  # estimates of the [BLOCK_B, BLOCK_N] block per thread (num_warps)
_NO_DOT = -1  # KernelShape.mode: this kernel has no dot


def kernel_shape(batch: int) -> KernelShape:
    """The 1-bit scan's compile-time choices for a batch of `batch` queries, as the launch
    (hamming_topk) and the ahead-of-time compile (aot_variants) take them: BLOCK_B 16 / 32
    / 64 by batch, BLOCK_N 64, KT 2, num_warps so that a thread holds _PER_THREAD estimates
    (4 / 8 / 16 warps), num_stages 3 (Triton's default, which the launch used before it
    passed one; the loads are not staged in shared memory). On sm_90 (Triton 3.6 and 3.9)
    every variant compiles to at most 128 registers and no spills (docs/gpu.md)."""
    batch = max(batch, 1)
    block_b = 16 if batch <= 16 else 32 if batch <= 32 else 64
    return KernelShape(
        mode=_NO_DOT,
        kt=_KT,
        block_b=block_b,
        block_n=_BLOCK_N,
        block_d=0,
        num_warps=max(4, block_b * _BLOCK_N // (32 * _PER_THREAD)),
        num_stages=3,
        norms=False,
    )


def estimate_pairs(
    q_codes: torch.Tensor,
    codes: torch.Tensor,
    norms: torch.Tensor,
    a_q: torch.Tensor,
    table: torch.Tensor,
    l2: bool,
    pair_q: torch.Tensor,
    pair_rows: torch.Tensor,
) -> torch.Tensor:
    """float32 [P] estimates of (query, row) pairs: linr.onebit.estimate's formula."""
    lut = torch.tensor(_LUT, dtype=torch.int64, device=codes.device)
    diff = lut[(q_codes[pair_q] ^ codes[pair_rows]).long()].sum(1)
    n = norms[pair_rows]
    s = (table[codes.shape[1] * 8 - diff] * n) * a_q[pair_q]
    return s - n * n if l2 else s


@dataclass
class _Chunk:
    """What topk_search._select needs of one query chunk: exact scores of positions."""

    q_codes: torch.Tensor  # uint8 [Bc, W8]
    a_q: torch.Tensor
    codes: torch.Tensor  # uint8 [N, W8]
    norms: torch.Tensor
    table: torch.Tensor
    l2: bool
    mask_words: torch.Tensor | None
    rows: torch.Tensor | None
    n_pos: int

    def rows_of(self, pos: torch.Tensor) -> torch.Tensor:
        return self.rows[pos] if self.rows is not None else pos

    def score(self, pair_q: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        r = self.rows_of(pos)
        return estimate_pairs(
            self.q_codes, self.codes, self.norms, self.a_q, self.table, self.l2, pair_q, r
        )


def hamming_topk(
    q_codes: torch.Tensor,
    codes: torch.Tensor,
    norms: torch.Tensor,
    a_q: torch.Tensor,
    c: int,
    l2: bool,
    *,
    mask_words: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-c rows by the 1-bit estimate, as linr.onebit.cpu_scan.hamming_topk_cpu, on
    tensors of one device (CUDA, or CPU under TRITON_INTERPRET=1). q_codes uint8 [B, W8],
    codes uint8 [N, W8] (W8 a multiple of 8), norms fp32 [N], a_q fp32 [B]; mask_words
    int32 [ceil(N / 32)] or rows int64 sorted. Returns (est [B, c], rows [B, c]) padded
    -inf / -1, by estimate descending, ties by ascending row."""
    from linr.onebit.estimate import cos_table

    b, n, w8 = q_codes.shape[0], codes.shape[0], codes.shape[1]
    dev = codes.device
    table = cos_table(w8 * 8).to(dev)
    out_s = torch.full((b, c), -torch.inf, device=dev)
    out_r = torch.full((b, c), -1, dtype=torch.int64, device=dev)
    n_pos = rows.shape[0] if rows is not None else n
    if b == 0 or n_pos == 0:
        return out_s, out_r
    plan = make_plan(b, n_pos, w8, c, torch.uint8, dev, shape=kernel_shape(b))
    q_words = q_codes.contiguous().view(torch.int32)
    c_words = codes.contiguous().view(torch.int32)
    stats: dict[str, int] = {"refine_rounds": 0, "rescored": 0, "flagged_groups": 0}
    for b0 in range(0, b, plan.query_chunk):
        sl = slice(b0, b0 + plan.query_chunk)
        ch = _Chunk(q_codes[sl], a_q[sl], codes, norms, table, l2, mask_words, rows, n_pos)
        cand_v, cand_p = hamming_partial(
            q_words[sl], a_q[sl], c_words, norms, table, l2, mask_words, rows, plan
        )
        top_v, top_p = _select(cand_v, cand_p, c, ch, plan, stats)  # type: ignore[arg-type]
        out_s[sl] = top_v
        out_r[sl] = torch.where(top_p >= 0, ch.rows_of(top_p.clamp(min=0)), -1)
    return out_s, out_r


def hamming_partial(
    q_words: torch.Tensor,
    a_q: torch.Tensor,
    c_words: torch.Tensor,
    norms: torch.Tensor,
    table: torch.Tensor,
    l2: bool,
    mask_words: torch.Tensor | None,
    rows: torch.Tensor | None,
    plan,  # linr.ops.topk_search.ScanPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the kernel: per (split, slot, lane) candidates, as fused_scan.scan_partial."""
    b, w = q_words.shape
    n_pos = rows.shape[0] if rows is not None else c_words.shape[0]
    width = plan.n_splits * plan.kt * plan.block_n
    out_v = torch.empty((b, width), dtype=torch.float32, device=q_words.device)
    out_p = torch.empty((b, width), dtype=torch.int32, device=q_words.device)
    dummy = a_q
    _hamming_topk_kernel[(-(-b // plan.block_b), plan.n_splits)](
        q_words,
        a_q.contiguous(),
        c_words,
        norms.contiguous(),
        table,
        mask_words if mask_words is not None else dummy,
        rows if rows is not None else dummy,
        out_v,
        out_p,
        b,
        n_pos,
        plan.tiles_per_split,
        q_words.stride(0),
        c_words.stride(0),
        width,
        W=w,
        L2=l2,
        HAS_MASK=mask_words is not None,
        HAS_ROWS=rows is not None,
        POPC=not interpreting(),
        KT=plan.kt,
        BLOCK_B=plan.block_b,
        BLOCK_N=plan.block_n,
        num_warps=plan.num_warps,
        num_stages=plan.num_stages,
    )
    return out_v, out_p


# Bit counts compiled by `make gpu-compile` (any multiple of 64 runs; the default is the
# dimension rounded up to 64: these cover D = 64 .. 1536), and batches, one per BLOCK_B (a
# batch of 1 is its own specialization: Triton makes an integer argument equal to 1 a
# constant).
AOT_WORDS = (2, 4, 8, 12, 16, 24, 32, 48)
AOT_BATCHES = (1, 16, 32, 1024)


def aot_variants() -> list[dict[str, object]]:
    """The specializations hamming_topk launches on a GPU (POPC on), for an ahead-of-time
    compile: signature of the runtime arguments, the constexprs, the launch options and the
    batch of each variant. All are default paths: no test forces another shape."""
    sig = {
        "q_ptr": "*i32",
        "qa_ptr": "*fp32",
        "codes_ptr": "*i32",
        "norms_ptr": "*fp32",
        "table_ptr": "*fp32",
        "mask_ptr": "*i32",
        "rows_ptr": "*i64",
        "out_v_ptr": "*fp32",
        "out_p_ptr": "*i32",
        "B": "i32",
        "P": "i32",
        "tiles_per_split": "i32",
        "stride_q": "i32",
        "stride_c": "i32",
        "stride_out": "i32",
    }
    out: list[dict[str, object]] = []
    for words in AOT_WORDS:
        for l2 in (False, True):
            for mask, rows_ in ((False, False), (True, False), (False, True)):
                for batch in AOT_BATCHES:
                    shape = kernel_shape(batch)
                    consts: dict[str, object] = {"B": 1} if batch == 1 else {}
                    consts.update(
                        W=words,
                        L2=l2,
                        HAS_MASK=mask,
                        HAS_ROWS=rows_,
                        POPC=True,
                        KT=shape.kt,
                        BLOCK_B=shape.block_b,
                        BLOCK_N=shape.block_n,
                    )
                    # Pointers are 16-byte aligned; stride_out (n_splits * KT * 64) is a
                    # multiple of 16, the code strides (W words) when W is.
                    aligned = [n for n, t in sig.items() if t.startswith("*")] + ["stride_out"]
                    if words % 16 == 0:
                        aligned += ["stride_q", "stride_c"]
                    out.append(
                        {
                            "kernel": "hamming",
                            "fn": "linr.ops.hamming:_hamming_topk_kernel",
                            "signature": dict(sig),
                            "constexprs": consts,
                            "aligned": aligned,
                            "batch": batch,
                            "num_warps": shape.num_warps,
                            "num_stages": shape.num_stages,
                        }
                    )
    return out


def aot_variant_specs() -> Iterator[Variant]:
    """aot_variants() as the compile harness's Variants (linr/ops/aot.py, docs/gpu.md)."""
    from linr.ops.aot import Variant

    for spec in aot_variants():
        sig: dict[str, str] = spec["signature"]  # type: ignore[assignment]
        consts: dict[str, Any] = spec["constexprs"]  # type: ignore[assignment]
        filt = "mask" if consts["HAS_MASK"] else "rows" if consts["HAS_ROWS"] else "none"
        yield Variant(
            kernel="hamming",
            fn=str(spec["fn"]),
            signature=tuple(sig.items()),
            constexprs=tuple(consts.items()),
            aligned=tuple(spec["aligned"]),  # type: ignore[arg-type]
            default=True,  # what hamming_topk launches; gated on spills like any default
            num_warps=int(spec["num_warps"]),  # type: ignore[call-overload]
            num_stages=int(spec["num_stages"]),  # type: ignore[call-overload]
            labels=(
                ("bits", 32 * consts["W"]),
                ("metric", "l2" if consts["L2"] else "ip"),
                ("filter", filt),
                ("B", spec["batch"]),
                ("BLOCK_B", consts["BLOCK_B"]),
            ),
        )
