"""Storage codes for embeddings: fp32, fp16, or int8 (symmetric, one scale per vector).

int8 uses one fp32 scale per vector, scale = max|x_i| / 127, codes = round(x / scale).
Per-vector (not per-dimension) scales keep the code of an item independent of every other
item, so a live upsert never re-quantizes the index. Recall measured on clustered,
anisotropic data is in README.md (tests/linr/test_quantization.py checks the bound).
"""

from __future__ import annotations

import torch

from linr.errors import InvalidInput

QUANTIZATIONS = ("fp32", "fp16", "int8", "1bit")  # 1bit: linr/onebit
CODE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}


def check_quantization(quantization: str) -> str:
    if quantization not in QUANTIZATIONS:
        raise InvalidInput(
            f"unknown quantization {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}"
        )
    return quantization


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [n, D] float32 -> (codes int8 [n, D], scales float32 [n]). Assumes symmetric ranges."""
    amax = x.abs().amax(dim=1)
    scales = amax / 127.0
    # A zero vector keeps scale 0 and codes 0: it dequantizes back to exactly zero.
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(x / safe[:, None]).clamp_(-127, 127).to(torch.int8)
    return codes, scales.to(torch.float32)


def dequantize_int8(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """codes int8 [n, D], scales [n] -> float32 [n, D]."""
    return codes.to(torch.float32) * scales[:, None]


def encode(x: torch.Tensor, quantization: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """float32 [n, D] -> (codes, scales or None)."""
    if quantization == "int8":
        return quantize_int8(x)
    return x.to(CODE_DTYPES[quantization]), None


def decode(codes: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
    """codes -> float32 vectors, exactly the vectors the index scores against."""
    if scales is not None:
        return dequantize_int8(codes, scales)
    return codes.to(torch.float32)
