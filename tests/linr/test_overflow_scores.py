"""Scores that overflow float32: an item whose score is NaN (inf - inf, e.g. a sum
aggregate of +inf and -inf) must not break the exact tie order of the others. Found by the
service fuzz test (tests/service/test_fuzz.py): a 500 from the tie resolution."""

import numpy as np
import pytest

import linr


@pytest.mark.parametrize("k", [1, 3, 4, 5, 6, 17])
def test_nan_scores_next_to_a_tie_at_the_kth_place(k: int) -> None:
    index = linr.Index(2, device="cpu")
    # rows 6-8 score NaN (1e30 * 3e38 overflows to inf, -1e30 * 3e38 to -inf, summed);
    # rows 9-10 score exactly 0 (a tie), every other row -5.
    x = np.array([[0, -5]] * 6 + [[3e38, 0]] * 3 + [[1, 1]] * 2 + [[0, -5]] * 6, np.float32)
    index.upsert(np.arange(len(x)), x)
    q = [np.array([[1e30, 1], [-1e30, 0]], np.float32)]
    res = index.search(q, k, aggregate="sum", backend="torch")
    ids, scores = res.ids[0], res.scores[0]
    assert len(ids) == k
    finite = [i for i, s in zip(ids, scores, strict=True) if not np.isnan(s)]
    # Whatever place the NaN rows take, the numbers come in order, ties by ascending row.
    want = [9, 10, *range(6), *range(11, 17)]
    assert finite == want[: len(finite)]
    assert all(i in (6, 7, 8) for i, s in zip(ids, scores, strict=True) if np.isnan(s))
