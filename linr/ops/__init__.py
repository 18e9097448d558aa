"""GPU kernels (Triton) for the exhaustive filtered scan.

`import linr.ops` needs only torch: the kernel modules (which import Triton) load when a
kernel is first used, so CPU-only installs (no Triton) can import linr. Triton reads
TRITON_INTERPRET when a kernel is defined, so the CPU interpreter (tests) is chosen per
process, before the first use. See docs/gpu.md for the design.

    scores, rows = linr.ops.scan_topk(q, codes, k, scales=s, bias=b, mask_words=m)
"""

from __future__ import annotations

import importlib.util
import os

import torch

__all__ = ["available", "scan_topk"]


def interpreting() -> bool:
    """True when Triton's CPU interpreter is switched on (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def available(device: torch.device | str) -> bool:
    """True when scan_topk can run on tensors of `device`: Triton is installed and the
    device is CUDA, or Triton's CPU interpreter is on (TRITON_INTERPRET=1, for tests)."""
    if importlib.util.find_spec("triton") is None:
        return False
    if interpreting():
        return True
    dev = torch.device(device)
    return dev.type == "cuda" and torch.cuda.is_available()


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
    """Exact filtered top-k; see linr.ops.topk_search.scan_topk for the full contract."""
    from linr.ops.topk_search import scan_topk as impl

    return impl(q, codes, k, scales=scales, bias=bias, mask_words=mask_words, rows=rows)
