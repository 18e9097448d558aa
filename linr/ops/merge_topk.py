"""Merging candidate lists into top-k, ordered by (score desc, position asc).

The fused scan writes a few candidates per lane group; these functions turn candidate
lists into the final top-k. Ties must go to the lowest position (every linr search orders equal
scores by ascending row), which `torch.topk` does not promise. So each (score, position)
pair is packed into one int64 key whose integer order is exactly that order, and the keys
are selected with `torch.topk` (a radix select on CUDA) or sorted. The packing is exact:
the score is recovered bit for bit.

Positions must lie in [0, 2**32 - 1); padding entries have score -inf (position ignored).
Scores of real entries must not be -inf, which means "no entry"; NaN sorts above +inf.
"""

from __future__ import annotations

import torch

_LOW32 = 0xFFFFFFFF
_POSITIVE_NAN = 0x7FC00000


def pack_keys(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (score desc, pos asc): a larger key is a better entry.
    scores: float32, pos: integer (any shape, same shape)."""
    # -0.0 and +0.0 must be one score (else a tie would be decided by the sign bit).
    s = scores.to(torch.float32) + 0.0
    bits = s.view(torch.int32)
    # NaN (an overflow, inf - inf) takes one positive bit pattern: above +inf, where
    # torch.topk puts it too, so a block's top-k and the merge of blocks agree.
    bits = torch.where(s.isnan(), _POSITIVE_NAN, bits)
    # Flip the magnitude bits of negatives so that signed-int order is float order.
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    low = _LOW32 - pos.to(torch.int64).clamp(0, _LOW32 - 1)
    return (ordered << 32) | low


def unpack_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of pack_keys: (scores float32, pos int64); pos is -1 where score is -inf."""
    ordered = (keys >> 32).to(torch.int32)
    bits = torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered)
    scores = bits.view(torch.float32)
    pos = _LOW32 - (keys & _LOW32)
    pos = pos.masked_fill(scores == -torch.inf, -1)
    return scores, pos


def merge_topk(
    scores: torch.Tensor, pos: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k of each row of a candidate matrix. scores: float32 [B, M] (-inf = empty),
    pos: int [B, M]. Returns (scores float32 [B, k] padded -inf, pos int64 [B, k] padded -1),
    ordered by (score desc, pos asc)."""
    b, m = scores.shape
    keys = pack_keys(scores, pos)
    if m < k:
        pad = pack_keys(
            torch.full((b, k - m), -torch.inf, device=scores.device),
            torch.zeros((b, k - m), dtype=torch.int64, device=scores.device),
        )
        keys = torch.cat([keys, pad], dim=1)
    top = torch.topk(keys, k, dim=1, sorted=True).values
    return unpack_keys(top)


def merge_topk_reference(
    scores: torch.Tensor, pos: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain version of merge_topk: Python sort of each row by (-score, pos)."""
    b = scores.shape[0]
    out_s = torch.full((b, k), -torch.inf)
    out_p = torch.full((b, k), -1, dtype=torch.int64)
    for i in range(b):
        items = [
            (float(s), int(p))
            for s, p in zip(scores[i].tolist(), pos[i].tolist(), strict=True)
            if s != -torch.inf
        ]
        items.sort(key=lambda t: (-t[0], t[1]))
        for j, (s, p) in enumerate(items[:k]):
            out_s[i, j], out_p[i, j] = s, p
    return out_s, out_p


def segmented_topk(
    seg: torch.Tensor, scores: torch.Tensor, pos: torch.Tensor, n_seg: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k of each segment of a flat candidate list. seg: int64 [P] in [0, n_seg),
    scores: float32 [P], pos: int [P]. Returns ([n_seg, k] scores, [n_seg, k] pos), padded
    -inf / -1, ordered by (score desc, pos asc). Memory O(P + n_seg * k)."""
    dev = scores.device
    out_keys = pack_keys(
        torch.full((n_seg, k), -torch.inf, device=dev),
        torch.zeros((n_seg, k), dtype=torch.int64, device=dev),
    )
    if seg.numel():
        keys = pack_keys(scores, pos)
        # Sort by key descending, then stably by segment: each segment's entries end up
        # together and in key order.
        order = torch.argsort(keys, descending=True, stable=True)
        order = order[torch.argsort(seg[order], stable=True)]
        seg_s, keys_s = seg[order], keys[order]
        counts = torch.bincount(seg_s, minlength=n_seg)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(seg_s.numel(), device=dev) - starts[seg_s]
        keep = rank < k
        out_keys[seg_s[keep], rank[keep]] = keys_s[keep]
    return unpack_keys(out_keys)


def segmented_topk_reference(
    seg: torch.Tensor, scores: torch.Tensor, pos: torch.Tensor, n_seg: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain version of segmented_topk: group the entries in Python, then merge_topk_reference."""
    rows: list[list[tuple[float, int]]] = [[] for _ in range(n_seg)]
    for g, s, p in zip(seg.tolist(), scores.tolist(), pos.tolist(), strict=True):
        rows[g].append((s, p))
    width = max([len(r) for r in rows] + [1])
    s_mat = torch.full((n_seg, width), -torch.inf)
    p_mat = torch.zeros((n_seg, width), dtype=torch.int64)
    for g, r in enumerate(rows):
        for j, (s, p) in enumerate(r):
            s_mat[g, j], p_mat[g, j] = s, p
    return merge_topk_reference(s_mat, p_mat, k)
