"""The fused scan's kernel variants for `make gpu-compile` (linr/ops/aot.py).

Each is what scan_partial launches for a plan of `kernel_shape` (the planner's compile-time
choices), so the ahead-of-time compile checks the kernels that will run.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import torch

from linr.ops.aot import Variant
from linr.ops.fused_scan import MODE_FP16, MODE_FP32, MODE_INT8
from linr.ops.topk_search import KernelShape, choose_mode, shape_candidates

_AOT_CODES = {torch.float32: "fp32", torch.float16: "fp16", torch.int8: "int8"}
_AOT_QUERY = {MODE_FP32: "fp32", MODE_FP16: "fp16", MODE_INT8: "i8"}
_AOT_MODE = {MODE_FP32: "FP32", MODE_FP16: "FP16", MODE_INT8: "INT8"}
_AOT_TC = {MODE_FP32: "tf32", MODE_FP16: "f16", MODE_INT8: "s8"}


def aot_variants(
    batches: tuple[int, ...] = (1, 32, 1024), dims: tuple[int, ...] = (128, 256, 384)
) -> Iterator[Variant]:
    """The fused scan's specializations for linr/ops/aot.py: every codes dtype, batch,
    dimension, filter form (none / mask / row list) and scales / bias combination, in the
    mode the planner picks and, for int8 codes, the other mode (forced: tests only; with
    scales, as the index's int8 codes always have them). k does
    not change the kernel (it sets the grid: n_splits), so it is not part of the grid. Each
    default variant carries the planner's fallback shapes (shape_candidates)."""
    for dtype, b, dim in itertools.product(_AOT_CODES, batches, dims):
        default = choose_mode(dtype, b)
        modes = [default] + [m for m in (MODE_FP16, MODE_INT8) if dtype == torch.int8]
        for mode in dict.fromkeys(modes):
            shapes = shape_candidates(b, dim, dtype, mode=mode)
            for filt in ("none", "mask", "rows"):
                for has_scales, has_bias in itertools.product((False, True), repeat=2):
                    if mode != default and not has_scales:
                        continue  # forced modes: int8 codes as the index stores them, scaled
                    chain = [
                        _variant(shape, dtype, b, dim, mode, default, filt, has_scales, has_bias)
                        for shape in shapes
                    ]
                    first = chain[0]
                    if mode == default:
                        first = dataclasses.replace(first, fallbacks=tuple(chain[1:]))
                    yield first


def _variant(
    shape: KernelShape,
    dtype: torch.dtype,
    b: int,
    dim: int,
    mode: int,
    default: int,
    filt: str,
    has_scales: bool,
    has_bias: bool,
) -> Variant:
    """One compiled specialization: the launch of scan_partial for `shape`."""
    has_mask, has_rows = filt == "mask", filt == "rows"
    # Integer arguments equal to 1 are compile-time constants of a launch.
    ints = [("B", "i32"), ("P", "i32"), ("tiles_per_split", "i32")]
    consts: dict[str, object] = {"B": 1} if b == 1 else {}
    consts.update(
        D=dim,
        MODE=mode,
        HAS_SCALES=has_scales,
        HAS_BIAS=has_bias,
        HAS_MASK=has_mask,
        HAS_ROWS=has_rows,
        HAS_NORMS=shape.norms,
        KT=shape.kt,
        BLOCK_B=shape.block_b,
        BLOCK_N=shape.block_n,
        BLOCK_D=shape.block_d,
    )
    sig = [
        ("qa_ptr", "*" + _AOT_QUERY[mode]),
        ("qs_ptr", "*fp32"),
        ("qerr_ptr", "*fp32"),
        ("codes_ptr", "*" + _AOT_CODES[dtype].replace("int8", "i8")),
        ("scales_ptr", "*fp32"),
        ("bias_ptr", "*fp32"),
        ("mask_ptr", "*i32"),
        ("rows_ptr", "*i64"),
        ("norms_ptr", "*fp32"),
        ("out_v_ptr", "*fp32"),
        ("out_p_ptr", "*i32"),
        *ints,
        ("eps_round", "fp32"),
        ("stride_qa", "i32"),
        ("stride_c", "i32"),
        ("stride_out", "i32"),
    ]
    aligned = tuple(n for n, t in sig if t.startswith("*"))
    aligned += ("stride_out",) + (("stride_qa", "stride_c") if dim % 16 == 0 else ())
    return Variant(
        kernel="fused_scan",
        fn="linr.ops.fused_scan:_scan_topk_kernel",
        signature=tuple(sig),
        constexprs=tuple(consts.items()),
        aligned=aligned,
        num_warps=shape.num_warps,
        num_stages=shape.num_stages,
        labels=(
            ("mode", _AOT_MODE[mode]),
            ("codes", _AOT_CODES[dtype]),
            ("B", b),
            ("D", dim),
            ("filter", filt),
            ("scales", "y" if has_scales else "n"),
            ("bias", "y" if has_bias else "n"),
        ),
        tensor_core=_AOT_TC[mode],
        default=mode == default,
        note=_note(shape, shape_candidates(b, dim, dtype, mode=mode)[0]),
    )


def _note(shape: KernelShape, first: KernelShape) -> str:
    """How a fallback shape differs from the planner's first choice ("" for that one)."""
    diff = [
        f"{k}={getattr(shape, k)}"
        for k in ("num_warps", "block_d")
        if getattr(shape, k) != getattr(first, k)
    ]
    return "fallback " + " ".join(diff) if diff else ""
