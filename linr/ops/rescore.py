"""Exact fp32 scores of a list of (query, row) pairs, reading only those rows' codes.

Used after the fused scan for two things: rescoring the candidates of the int8-query mode
(whose scan scores are approximate) and scoring every row of a lane group that the
exactness check flagged. Each program takes BLOCK_P pairs and accumulates the elementwise
products over D in fp32 on the CUDA cores: the pair lists are short (about k per query), so
this kernel is bound by gathering rows, not by arithmetic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from linr.ops.aot import Variant

_BLOCK_P = 32  # pairs per program
_BLOCK_D = 64  # dimensions per step (D is masked, any size works)


@triton.jit
def _rescore_kernel(
    q_ptr,  # fp32 [B, D]
    codes_ptr,  # [N, D] int8 | fp16 | fp32
    scales_ptr,  # fp32 [N]
    bias_ptr,  # fp32 [N]
    pq_ptr,  # int64 [P] query of each pair
    prow_ptr,  # int64 [P] row of each pair
    out_ptr,  # fp32 [P]
    P,
    D,
    stride_q,
    stride_c,
    HAS_SCALES: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    ok = offs < P
    bq = tl.load(pq_ptr + offs, mask=ok, other=0)
    row = tl.load(prow_ptr + offs, mask=ok, other=0)
    q_rows = q_ptr + bq[:, None] * stride_q
    c_rows = codes_ptr + row[:, None] * stride_c
    acc = tl.full([BLOCK_P], 0, tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        m = ok[:, None] & (d < D)[None, :]
        a = tl.load(q_rows + d[None, :], mask=m, other=0.0)
        c = tl.load(c_rows + d[None, :], mask=m, other=0).to(tl.float32)
        acc += tl.sum(a * c, axis=1)
    if HAS_SCALES:
        acc = acc * tl.load(scales_ptr + row, mask=ok, other=1.0)
    if HAS_BIAS:
        acc = acc + tl.load(bias_ptr + row, mask=ok, other=0.0)
    tl.store(out_ptr + offs, acc, mask=ok)


def rescore(
    q: torch.Tensor,
    codes: torch.Tensor,
    pair_q: torch.Tensor,
    pair_rows: torch.Tensor,
    scales: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """fp32 [P] scores (q[pair_q[i]] . codes[pair_rows[i]]) * scales[row] + bias[row].
    q: fp32 [B, D] contiguous; codes [N, D] with unit stride along D; pair_q, pair_rows:
    integer [P], valid indices (not checked here: callers build them)."""
    # Views such as expand(...).reshape(-1) can have stride 0: the kernel needs dense lists.
    pair_q = pair_q.to(torch.int64).contiguous()
    pair_rows = pair_rows.to(torch.int64).contiguous()
    n_pairs = pair_q.shape[0]
    out = torch.empty(n_pairs, dtype=torch.float32, device=q.device)
    if n_pairs == 0:
        return out
    dummy = out
    grid = (-(-n_pairs // _BLOCK_P),)
    _rescore_kernel[grid](
        q,
        codes,
        scales if scales is not None else dummy,
        bias if bias is not None else dummy,
        pair_q,
        pair_rows,
        out,
        n_pairs,
        q.shape[1],
        q.stride(0),
        codes.stride(0),
        HAS_SCALES=scales is not None,
        HAS_BIAS=bias is not None,
        BLOCK_P=_BLOCK_P,
        BLOCK_D=_BLOCK_D,
    )
    return out


def rescore_reference(
    q: torch.Tensor,
    codes: torch.Tensor,
    pair_q: torch.Tensor,
    pair_rows: torch.Tensor,
    scales: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain float64 version of rescore (returned as float64)."""
    s = (q[pair_q].double() * codes[pair_rows].double()).sum(dim=1)
    if scales is not None:
        s = s * scales[pair_rows].double()
    if bias is not None:
        s = s + bias[pair_rows].double()
    return s


def aot_variants() -> Iterator[Variant]:
    """The rescoring kernel's specializations for linr/ops/aot.py: D is a runtime argument,
    so one per codes dtype and scales / bias combination."""
    for codes_t in ("i8", "fp16", "fp32"):
        for has_scales, has_bias in itertools.product((False, True), repeat=2):
            sig = [
                ("q_ptr", "*fp32"),
                ("codes_ptr", "*" + codes_t),
                ("scales_ptr", "*fp32"),
                ("bias_ptr", "*fp32"),
                ("pq_ptr", "*i64"),
                ("prow_ptr", "*i64"),
                ("out_ptr", "*fp32"),
                ("P", "i32"),
                ("D", "i32"),
                ("stride_q", "i32"),
                ("stride_c", "i32"),
            ]
            yield Variant(
                kernel="rescore",
                fn="linr.ops.rescore:_rescore_kernel",
                signature=tuple(sig),
                constexprs=(
                    ("HAS_SCALES", has_scales),
                    ("HAS_BIAS", has_bias),
                    ("BLOCK_P", _BLOCK_P),
                    ("BLOCK_D", _BLOCK_D),
                ),
                aligned=tuple(n for n, t in sig if t.startswith("*")) + ("stride_q", "stride_c"),
                num_warps=4,
                num_stages=3,
                labels=(
                    ("codes", codes_t.replace("i8", "int8")),
                    ("scales", "y" if has_scales else "n"),
                    ("bias", "y" if has_bias else "n"),
                ),
            )
