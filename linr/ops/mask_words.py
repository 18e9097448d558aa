"""The row-mask layout the kernels read: int32 words, bit r % 32 of word r // 32 allows
row r. `pack_mask` builds it for `linr.ops.scan_topk(mask_words=...)`; `unpack_mask` is its
plain inverse."""

from __future__ import annotations

import torch


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """bool [n] -> int32 [ceil(n / 32)] words, on the mask's device."""
    pad = (-mask.numel()) % 32
    bits = torch.nn.functional.pad(mask.to(torch.int64), (0, pad)).view(-1, 32)
    words = (bits << torch.arange(32, device=mask.device)).sum(1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def unpack_mask(words: torch.Tensor, n: int) -> torch.Tensor:
    """int32 [ceil(n / 32)] words -> bool [n]."""
    r = torch.arange(n, device=words.device)
    return ((words[r >> 5].to(torch.int64) >> (r & 31)) & 1).bool()
