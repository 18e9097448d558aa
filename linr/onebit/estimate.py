"""The metric estimate of 1-bit codes, and the plain reference of the Hamming top-k.

For sign codes of independent random projections, P(bit differs) = angle / pi, so m
matching bits of `bits` estimate the angle as pi (1 - m / bits). The codes say nothing of
length, so each item's stored norm n_x = ||x - c|| (c = 0 except for l2, see
linr.storage.choose_centre) goes into the estimate:
    ip, cosine:  est = (t[m] * n_x) * a_q                with a_q = ||q||
    l2:          est = (t[m] * n_x) * a_q - n_x * n_x    with a_q = 2 ||q - c||
where t[m] = cos(pi (1 - m / bits)) in float32. For l2 the per-query -||q - c||^2 completes
-||q - x||^2 after the top-k (it does not change the order). Every scan computes exactly
these float32 operations in this order, so all of them rank alike, ties by row.

Ranking by plain Hamming similarity instead loses most of the recall on data whose norms
vary: recall@10 0.40 vs 0.985 on clustered 1M x 128 ip data at 512 bits (BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
import torch


def cos_table(bits: int) -> torch.Tensor:
    """float32 [bits + 1]: t[m] = cos(pi (1 - m / bits)), from float64."""
    m = torch.arange(bits + 1, dtype=torch.float64)
    return torch.cos(torch.pi * (1.0 - m / bits)).to(torch.float32)


def query_factors(qc: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_q, the constant added after the top-k) for queries qc [B, D] (q - c for l2):
    float32 [B] each. Norms summed in float64."""
    n = qc.double().norm(dim=1)
    if metric == "l2":
        return (2.0 * n).float(), -(n * n).float()
    return n.float(), torch.zeros_like(n, dtype=torch.float32)


def estimate(
    matches: torch.Tensor, norms: torch.Tensor, a_q: torch.Tensor, table: torch.Tensor, l2: bool
) -> torch.Tensor:
    """float32 estimates of matches int [B, C] against items of norms [B, C] (or [C]) for
    queries with factors a_q [B]; the module docstring gives the formula."""
    s = (table[matches.long()] * norms) * a_q[:, None]
    if l2:
        s = s - norms * norms
    return s


def estimate_numpy(matches, norms, a_q, table, l2: bool) -> np.ndarray:
    """estimate() in numpy float32, the same operations in the same order."""
    t = np.asarray(table, np.float32)[np.asarray(matches, np.int64)]
    n = np.asarray(norms, np.float32)
    s = (t * n) * np.asarray(a_q, np.float32)[:, None]
    if l2:
        s = s - n * n
    return s.astype(np.float32)


def matches_numpy(q_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """int64 [B, N] matching bits of packed codes uint8 [B, W8] and [N, W8] (numpy's
    bitwise_count on the XOR, one query at a time)."""
    bits = codes.shape[1] * 8
    out = np.empty((q_codes.shape[0], codes.shape[0]), np.int64)
    for b in range(q_codes.shape[0]):
        diff = np.bitwise_count(np.bitwise_xor(codes, q_codes[b][None, :])).sum(1)
        out[b] = bits - diff
    return out


def hamming_topk_reference(
    q_codes: np.ndarray,
    codes: np.ndarray,
    norms: np.ndarray,
    a_q: np.ndarray,
    c: int,
    metric: str,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain top-c rows by estimate: (est float32 [B, c] padded -inf, rows int64 [B, c]
    padded -1), ordered by estimate descending, equal estimates by ascending row."""
    bits = codes.shape[1] * 8
    m = matches_numpy(q_codes, codes)
    table = cos_table(bits).numpy()
    s = estimate_numpy(m, np.broadcast_to(norms, m.shape), a_q, table, metric == "l2")
    s = s.astype(np.float64)
    if allowed is not None:
        s[:, ~np.asarray(allowed, bool)] = -np.inf
    b, n = s.shape
    out_s = np.full((b, c), -np.inf, np.float32)
    out_r = np.full((b, c), -1, np.int64)
    for i in range(b):
        order = sorted(range(n), key=lambda r: (-s[i, r], r))[:c]
        keep = [r for r in order if s[i, r] > -np.inf]
        out_s[i, : len(keep)] = s[i, keep]
        out_r[i, : len(keep)] = keep
    return out_s, out_r
