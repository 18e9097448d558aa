"""Argument checks of linr.ops.scan_topk: a ValueError that names the bad argument."""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch

from linr.limits import MAX_K

MAX_POSITIONS = (1 << 31) - (1 << 24)  # positions are int32 in the kernel


class Checked(NamedTuple):
    q: torch.Tensor  # fp32, contiguous
    k: int
    scales: torch.Tensor | None  # fp32, contiguous
    bias: torch.Tensor | None
    mask_words: torch.Tensor | None  # contiguous
    rows: torch.Tensor | None


def check_inputs(
    q: torch.Tensor,
    codes: torch.Tensor,
    k: int,
    scales: torch.Tensor | None,
    bias: torch.Tensor | None,
    mask_words: torch.Tensor | None,
    rows: torch.Tensor | None,
) -> Checked:
    """Raise ValueError naming the bad argument; else the inputs as the kernels take them."""
    if q.dim() != 2 or not q.is_floating_point():
        raise ValueError(f"q must be a float [B, D] tensor, got {q.dtype} {tuple(q.shape)}")
    if codes.dim() != 2 or codes.dtype not in (torch.int8, torch.float16, torch.float32):
        raise ValueError(
            f"codes must be an int8, float16 or float32 [N, D] tensor, "
            f"got {codes.dtype} {tuple(codes.shape)}"
        )
    n, dim = codes.shape
    if q.shape[1] != dim:
        raise ValueError(f"q has dimension {q.shape[1]}, codes have dimension {dim}")
    if dim == 0:
        raise ValueError("dimension must be at least 1")
    if dim > 1 and codes.stride(1) != 1:
        raise ValueError(f"codes must have unit stride along D, got strides {codes.stride()}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer in 1..{MAX_K}, got {k!r}")
    if mask_words is not None and rows is not None:
        raise ValueError("mask_words and rows are mutually exclusive; pass one of them")
    for name, t in (("codes", codes), ("scales", scales), ("bias", bias)):
        if t is not None and t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, q is on {q.device}")
    for name, t in (("scales", scales), ("bias", bias)):
        if t is not None and (t.dim() != 1 or t.shape[0] != n):
            raise ValueError(f"{name} must have shape [{n}], got {tuple(t.shape)}")
    if mask_words is not None:
        want = (n + 31) // 32
        if mask_words.dtype != torch.int32 or mask_words.shape != (want,):
            raise ValueError(
                f"mask_words must be int32 [{want}], got {mask_words.dtype} "
                f"{tuple(mask_words.shape)}"
            )
        if mask_words.device != q.device:
            raise ValueError(f"mask_words is on {mask_words.device}, q is on {q.device}")
    n_pos = n
    if rows is not None:
        if rows.dtype != torch.int64 or rows.dim() != 1 or rows.device != q.device:
            raise ValueError(
                f"rows must be an int64 [P] tensor on {q.device}, got {rows.dtype} "
                f"{tuple(rows.shape)} on {rows.device}"
            )
        if rows.numel():  # one host synchronization for the three checks
            lo, hi, up = torch.stack(
                [rows.min(), rows.max(), (rows[1:] > rows[:-1]).all().long()]
            ).tolist()
            if lo < 0 or hi >= n:
                raise ValueError(f"rows must lie in [0, {n}), got [{lo}, {hi}]")
            if not up:
                raise ValueError("rows must be sorted ascending without repeats")
        n_pos = rows.shape[0]
    if n_pos > MAX_POSITIONS:
        raise ValueError(f"at most {MAX_POSITIONS} rows per scan, got {n_pos}")
    return Checked(
        q.to(torch.float32).contiguous(),
        int(k),
        None if scales is None else scales.to(torch.float32).contiguous(),
        None if bias is None else bias.to(torch.float32).contiguous(),
        None if mask_words is None else mask_words.contiguous(),
        None if rows is None else rows.contiguous(),
    )
