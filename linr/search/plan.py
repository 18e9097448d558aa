"""How a search runs: the scoring backend and the filter strategy, as validated enums, and
the rules that pick them when the caller says "auto".

Two strategies (LiNR paper, section 3): *mask* scores every row of a chunk and masks the
rows the filter rejects; *gather* collects the matching rows and scores only those. Three
backends: faiss's exact knn (BLAS + heap) on CPU for large query batches, the fused Triton
kernels (linr.ops) on CUDA, and torch (any device; multi-embedding queries). On CPU, "auto"
usually takes neither: small batches go to linr.cpu.small, larger ones to linr.cpu.batch
(linr/search/scanner.py picks), and these rules serve what those leave.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Any, TypeVar

import torch

from linr.errors import InvalidInput
from linr.limits import MAX_K

# Gather when fewer than this fraction of the scanned rows match. On CPU (2 cores) the
# gather strategy costs ~1 row copy per matching row; scoring costs ~B dot products per row,
# so gather wins well past 25% for B >= 32 and breaks even near 50% at B = 1 (bench_search).
_GATHER_BELOW = 0.3
# Triton kernels: the mask form still reads every tile holding an allowed row (~47% of the
# tiles at 1% selectivity), the rows form only the allowed rows (docs/gpu.md). Not yet
# measured on a GPU: the switch point is to be set from benchmarks/bench_scan.py.
_GATHER_BELOW_TRITON = 0.05
# faiss's knn uses BLAS only for large query batches; below, its per-pair path is 2-7x slower
# than torch mm + topk (1M x 128, k=100, 2 cores: B=512 faiss 9.3 s vs torch 1.4 s;
# B=1024 faiss 1.07 s vs torch 2.95 s). So faiss scores only batches of >= 1024 queries.
_FAISS_MIN_BATCH = 1024


E = TypeVar("E", bound=Enum)


class Backend(str, Enum):
    AUTO = "auto"
    TORCH = "torch"
    FAISS = "faiss"
    TRITON = "triton"


class Strategy(str, Enum):
    AUTO = "auto"
    MASK = "mask"
    GATHER = "gather"


def _parse(kind: type[E], value: str | E, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(str(m.value) for m in kind)
        raise InvalidInput(f"unknown {what} {value!r}; expected one of {names}") from None


def parse_backend(value: str | Backend) -> Backend:
    if value == "auto":  # the common case, without Enum's lookup (a search's hot path)
        return Backend.AUTO
    return _parse(Backend, value, "backend")


def parse_strategy(value: str | Strategy) -> Strategy:
    if value == "auto":
        return Strategy.AUTO
    return _parse(Strategy, value, "strategy")


def faiss_module() -> Any:
    """faiss if it is installed and not turned off (LINR_CPU_BACKEND=torch), else None."""
    if os.environ.get("LINR_CPU_BACKEND", "") == "torch":
        return None
    try:
        import faiss  # type: ignore[import-untyped]
    except ImportError:
        return None
    return faiss


def choose_backend(
    requested: Backend, device: torch.device, batch: int, multi: bool, k: int
) -> Backend:
    """The backend for a search of `batch` queries (`multi`: multi-embedding). An explicit
    request is kept, except faiss for multi-embedding queries (it cannot aggregate)."""
    if requested is Backend.FAISS and not multi:
        if faiss_module() is None:
            raise InvalidInput(
                "backend 'faiss' needs faiss-cpu installed (and LINR_CPU_BACKEND unset)"
            )
        return requested
    if requested is not Backend.AUTO and requested is not Backend.FAISS:
        return requested
    if multi:
        return Backend.TORCH
    if device.type == "cpu" and batch >= _FAISS_MIN_BATCH and faiss_module() is not None:
        return Backend.FAISS
    if device.type == "cuda" and os.environ.get("LINR_GPU_BACKEND", "") != "torch" and k <= MAX_K:
        from linr import ops

        if ops.available(device):
            return Backend.TRITON
    return Backend.TORCH


def choose_strategy(requested: Strategy, n_allowed: int, n_rows: int, backend: Backend) -> Strategy:
    if requested is not Strategy.AUTO:
        return requested
    limit = _GATHER_BELOW_TRITON if backend is Backend.TRITON else _GATHER_BELOW
    return Strategy.GATHER if n_allowed < limit * n_rows else Strategy.MASK
