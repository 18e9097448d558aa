"""Comparing a top-k list with a reference computed another way (float64, another kernel,
another summation order).

Ids are compared exactly, with one exception: two items whose scores lie within the
scorer's rounding error of each other have no reliable order, so they may trade places,
and at the k-th place one may stand in for the other. Seen in CI: fp32 gave two different
vectors the same score, and BLAS summed a gathered subset of rows in a different order
than the full matrix (3e-6 apart at d = 64)."""

from __future__ import annotations

import numpy as np


def assert_same_topk(
    rows,
    scores,
    want_rows,
    want_scores,
    rtol: float,
    atol: float = 0.0,
    every=None,
):
    """rows/scores [B, k] against want_rows/want_scores [B, k]: scores position by position
    within |s - w| <= atol + rtol * |w|; ids equal except among items closer than twice
    that (each side may be off by the tolerance). `every` [B, n], the reference score of
    every row, checks an item the reference cut at the k-th place; without it, the item's
    own reported score stands in."""
    rows, want_rows = np.asarray(rows), np.asarray(want_rows)
    scores = np.asarray(scores, np.float64)
    want_scores = np.asarray(want_scores, np.float64)
    assert rows.shape == want_rows.shape, (rows.shape, want_rows.shape)
    # The j-th largest of perturbed scores is within the perturbation of the j-th largest.
    np.testing.assert_allclose(scores, want_scores, rtol=rtol, atol=atol)
    for b in range(rows.shape[0]):
        got, want, ws = rows[b].tolist(), want_rows[b].tolist(), want_scores[b]
        if got == want:
            continue
        real = [r for r in got if r != -1]  # -1: padding past the matches
        assert len(set(real)) == len(real), (b, got)
        at = {r: j for j, r in enumerate(want)}
        for j, r in enumerate(got):
            if r == want[j]:
                continue
            if r in at:  # placed elsewhere by the reference: it must tie with this place
                s_r, s_m = ws[j], ws[at[r]]
            else:  # cut by the reference: it must tie with the reference's last place
                s_r = every[b][r] if every is not None else ws[j]
                s_m = ws[-1]
            tie = 2 * (atol + rtol * max(abs(s_r), abs(s_m)))
            assert abs(s_r - s_m) <= tie, (b, j, r, want[j], s_r, s_m)


def centred_l2_error_bound(q, x, centre) -> float:
    """Worst-case float32 error of the index's l2 scores of queries q [B, D] against rows
    x [n, D] (float64 arrays) with centre c: the D-term product 2<q - c, x> (D roundings
    of terms up to 2|q_i - c_i||x_i|), the rounding of q - c, of ||x - c||^2 and of
    ||q||^2 - ||c||^2 to float32, and two subtractions: at most (D + 4) * 2^-24 times the
    sum of the magnitudes involved."""
    q, x, c = (np.asarray(a, np.float64) for a in (q, x, centre))
    qc = q - c
    mags = 2 * np.abs(qc) @ np.abs(x).T + ((x - c) ** 2).sum(1)[None, :]
    mags += np.abs((q**2).sum(1) - (c**2).sum())[:, None]
    return float((q.shape[1] + 4) * 2.0**-24 * mags.max())


def scores_by_row(scores, rows, n: int) -> np.ndarray:
    """A top list (scores, rows [B, m], rows -1 padded) spread over all n rows: [B, n]
    float64, -inf where the list has no entry. With m = n, every row's score."""
    scores, rows = np.asarray(scores, np.float64), np.asarray(rows)
    out = np.full((rows.shape[0], n), -np.inf)
    for b in range(rows.shape[0]):
        keep = rows[b] >= 0
        out[b, rows[b][keep]] = scores[b][keep]
    return out


def exact_l2(q, x, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """float64 l2 scores -||q - x||^2 of every row [B, n] (-inf where `allowed` is False),
    and the top-k rows [B, k], ties by row."""
    import torch

    from linr.knn import scores

    q, x = np.asarray(q, np.float64), np.asarray(x, np.float64)
    # Each query against its own (broadcast) copy of the rows: the direct difference.
    rows = torch.from_numpy(x).expand(q.shape[0], *x.shape)
    full = scores(q, rows, "l2").numpy()
    if allowed is not None:
        full[:, ~np.asarray(allowed, bool)] = -np.inf
    return full, np.argsort(-full, axis=1, kind="stable")[:, :k]
