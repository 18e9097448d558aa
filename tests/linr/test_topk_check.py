"""The near-tie allowance of linr.testing.topk rejects real differences."""

import pytest

from linr.testing.topk import assert_same_topk


def test_near_ties_may_trade_places():
    assert_same_topk([[2, 1, 3]], [[5.0, 5.0, 1.0]], [[1, 2, 3]], [[5.0, 5.0, 1.0]], 1e-6)
    # at the k-th place, an item cut from the reference by a near-tie may stand in
    assert_same_topk([[1, 7]], [[5.0, 1.0]], [[1, 3]], [[5.0, 1.0]], 1e-6)
    # padding past the matches is not a repeated id
    inf = float("-inf")
    assert_same_topk(
        [[2, 1, -1, -1]], [[5.0, 5.0, inf, inf]], [[1, 2, -1, -1]], [[5, 5, inf, inf]], 0
    )


@pytest.mark.parametrize(
    "rows,scores",
    [
        ([[2, 1, 3]], [[5.0, 4.0, 1.0]]),  # swapped, though 1.0 apart
        ([[1, 7, 3]], [[5.0, 4.0, 1.0]]),  # 7, cut by the reference, placed above its k-th
        ([[1, 2, 3]], [[5.0, 4.0, 1.1]]),  # a score off by more than the tolerance
        ([[1, 2, -1]], [[5.0, 4.0, float("-inf")]]),  # a match missing
    ],
)
def test_real_differences_fail(rows, scores):
    want = ([[1, 2, 3]], [[5.0, 4.0, 1.0]])
    with pytest.raises(AssertionError):
        assert_same_topk(rows, scores, *want, 1e-6)


def test_cut_item_is_checked_against_its_reference_score():
    every = [[0.0, 5.0, 4.0, 1.0, 0.0, 0.0, 0.0, 0.5]]  # row 7 truly scores 0.5

    with pytest.raises(AssertionError):  # 7 reports the k-th score but truly scores 0.5
        assert_same_topk(
            [[1, 2, 7]], [[5.0, 4.0, 1.0]], [[1, 2, 3]], [[5.0, 4.0, 1.0]], 1e-6, 0, every
        )
