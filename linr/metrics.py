"""Similarity metrics. Higher is better for every metric (docs/service.md gives each score)."""

from __future__ import annotations

import torch

from linr.errors import InvalidInput

METRICS = ("ip", "cosine", "l2")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """L2-normalize rows for the cosine metric; a zero row cannot be normalized."""
    # float64 norms: float32 squares overflow above ~1e19 and underflow below ~1e-23
    norms = torch.linalg.vector_norm(x.to(torch.float64), dim=-1, keepdim=True)
    if bool((norms == 0).any()):
        bad = int(torch.nonzero(norms.flatten() == 0)[0])
        raise InvalidInput(
            f"vector {bad} is all zeros and cannot be normalized for metric 'cosine'"
        )
    return (x.to(torch.float64) / norms).to(x.dtype)
