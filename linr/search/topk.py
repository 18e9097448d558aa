"""Top-k selection with the exact tie order of every linr search: score descending, equal
scores by ascending row.

`topk_exact_ties` picks the best k of a block of scores; `merge` keeps the best k of two
candidate lists with `linr.ops.merge_topk` (one packed int64 key per (score, row), so the
order is exact and the scores come back bit for bit).
"""

from __future__ import annotations

import torch

from linr.ops.merge_topk import merge_topk


def merge(
    s1: torch.Tensor, r1: torch.Tensor, s2: torch.Tensor, r2: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best k of two candidate lists [B, *] by (score desc, row asc); -inf entries are
    empty. Returns (scores [B, k] padded -inf, rows int64 [B, k] padded -1)."""
    return merge_topk(torch.cat([s1, s2], dim=1), torch.cat([r1, r2], dim=1), k)


def topk_exact_ties(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """top-k of each row of s [B, C], where ties at the k-th score keep the lowest columns
    (torch.topk picks among ties arbitrarily). Columns of -inf are never needed."""
    c = s.shape[1]
    kk = min(k + 1, c)
    vals, idx = torch.topk(s, kk, dim=1)
    if kk > k:
        tie = (vals[:, k - 1] == vals[:, k]) & (vals[:, k - 1] > -torch.inf)
        for b in torch.nonzero(tie).flatten().tolist():
            vals[b, :k], idx[b, :k] = _resolve_tie(s[b], vals[b, :k], idx[b, :k])
        vals, idx = vals[:, :k], idx[:, :k]
    return vals, idx


def _resolve_tie(
    row: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k of `row` by (score desc, column asc), given topk's k best, whose last
    score ties with a column left out. Only the columns scoring exactly that value are
    looked at again (duplicated vectors make such ties common): the others in `vals` are
    above it and stay. A full sort of the row costs ~30 ms at 300k columns on a CPU core."""
    k = vals.shape[0]
    v = vals[k - 1]
    # NaN (an overflow, inf - inf) sorts above every number in torch.topk: it stays too.
    above = (vals > v) | vals.isnan()
    n_above = int(above.sum())
    tied = torch.nonzero(row == v).flatten()[: k - n_above]  # ascending columns
    cand_s = torch.cat([vals[above], row[tied]])
    cand_i = torch.cat([idx[above], tied])
    # (score desc, column asc): stable sorts on k entries, by column then by score.
    o = torch.argsort(cand_i, stable=True)
    cand_s, cand_i = cand_s[o], cand_i[o]
    o = torch.argsort(cand_s, descending=True, stable=True)
    return cand_s[o], cand_i[o]
