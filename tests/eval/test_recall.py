"""Recall, ties, masks and the chunked ground truth, on hand-made and random cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import linr
from linr.eval import groundtruth
from linr.eval.groundtruth import MaskTable, compute_ground_truth
from linr.eval.modes import _first_k
from linr.eval.recall import (
    SELECTIVITY_BUCKETS,
    bucket_of,
    recall_at_k,
    score_scale,
    tie_hits,
)
from linr.io.source import ArraySource
from linr.knn import scores


def exact_scores(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    return scores(q, x, metric).numpy()


def test_recall_hand_made() -> None:
    truth = np.array(
        [
            [1, 2, 3, 4],  # all found, other order
            [1, 2, 3, 4],  # half found
            [5, 6, -1, -1],  # 2 matching items only, both found, rest padding
            [5, 6, -1, -1],  # 2 matching items, one found, duplicates must not count twice
            [-1, -1, -1, -1],  # nothing matches: undefined
        ]
    )
    found = np.array(
        [
            [4, 3, 2, 1],
            [1, 9, 2, 8],
            [6, 5, -1, -1],
            [5, 5, 5, -1],
            [-1, -1, -1, -1],
        ]
    )
    r = recall_at_k(found, truth, 4)
    np.testing.assert_array_equal(r[:4], [1.0, 0.5, 1.0, 0.5])
    assert np.isnan(r[4])


def test_recall_reads_only_first_k() -> None:
    truth = np.array([[1, 2, 3, 4, 5]])
    found = np.array([[1, 7, 2, 3, 4]])
    assert recall_at_k(found, truth, 2)[0] == 0.5  # true top-2 {1, 2}; returned {1, 7}
    assert recall_at_k(found, truth, 5)[0] == 0.8


def test_ties_count_as_hits() -> None:
    # Items 10 and 11 tie at the k-th (2nd) score: returning 11 instead of 10 is correct,
    # unless 11 fails the filter.
    q = np.array([[1.0, 0.0]])
    base = {0: [3.0, 0.0], 10: [2.0, 5.0], 11: [2.0, -5.0], 12: [1.0, 0.0]}
    truth = np.array([[0, 10]])
    found = np.array([[0, 11]])
    x = np.array([[base[0], base[11]]])
    s = exact_scores(q, x, "ip")
    kth = exact_scores(q, np.array([[base[10]]]), "ip")[:, 0]
    scale = score_scale(q, x, "ip")
    ok = tie_hits(s, kth, scale, np.array([[True, True]]))
    assert recall_at_k(found, truth, 2, ok)[0] == 1.0
    not_matching = tie_hits(s, kth, scale, np.array([[True, False]]))
    assert recall_at_k(found, truth, 2, not_matching)[0] == 0.5
    assert recall_at_k(found, truth, 2)[0] == 0.5
    # A strictly lower score is not a tie.
    low = exact_scores(q, np.array([[base[0], base[12]]]), "ip")
    assert not tie_hits(low, kth, scale, np.array([[True, True]]))[0, 1]


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_scores_of_returned_rows_match_knn(metric: str) -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((3, 17)).astype(np.float32)
    xb = rng.standard_normal((29, 17)).astype(np.float32)
    s_ref, i_ref = linr.knn(q, xb, 5, metric)
    s = exact_scores(q, xb[i_ref.numpy()], metric)
    np.testing.assert_allclose(s, s_ref.numpy(), rtol=1e-12, atol=1e-12)


def test_selectivity_buckets() -> None:
    sel = np.array([0.0, 0.0009, 0.001, 0.0099, 0.01, 0.5, 1.0])
    names = [SELECTIVITY_BUCKETS[b] for b in bucket_of(sel)]
    assert names == ["<0.1%", "<0.1%", "0.1-1%", "0.1-1%", "1-10%", "10-100%", "10-100%"]


def test_first_k_keeps_order_and_pads() -> None:
    cand = np.array([[5, 6, 7, 8, 9], [1, 2, 3, 4, 5]])
    keep = np.array([[False, True, False, True, True], [False] * 5])
    np.testing.assert_array_equal(_first_k(cand, keep, 2), [[6, 8], [-1, -1]])
    np.testing.assert_array_equal(_first_k(cand, keep, 4), [[6, 8, 9, -1], [-1] * 4])


@pytest.mark.parametrize("n", [1, 8, 13, 1001])
def test_mask_table_matches_bool_masks(n: int) -> None:
    rng = np.random.default_rng(n)
    masks = rng.random((4, n)) < rng.random((4, 1))
    table = MaskTable(n)
    for m in masks:
        table.add(m)
    assert table.counts == masks.sum(1).tolist()
    fids = rng.integers(0, 4, 6)
    rows = rng.integers(-1, n, (6, 9))
    want = np.where(rows >= 0, masks[fids[:, None], np.maximum(rows, 0)], False)
    np.testing.assert_array_equal(table.lookup(fids, rows), want)
    np.testing.assert_array_equal(table.dense(fids), masks[fids])
    if n > 8:
        np.testing.assert_array_equal(table.dense(fids, 8, n), masks[fids][:, 8:])


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_chunked_ground_truth_equals_knn(monkeypatch: pytest.MonkeyPatch, metric: str) -> None:
    # Base chunks of 7 rows and query batches of 3: every merge path is used.
    monkeypatch.setattr(groundtruth, "_GT_CHUNK_ROWS", 7)
    monkeypatch.setattr(groundtruth, "_GT_QUERY_BATCH", 3)
    rng = np.random.default_rng(7)
    # Integer values: every score is exact whatever the summation order, so ties are ties on
    # any CPU (BLAS may round a row differently by its place in a chunk) and must go to the
    # lower row; small values make many of them.
    xb = rng.integers(-4, 5, (45, 6)).astype(np.float32)
    xb[20] = xb[3]  # an exact tie: the lower row must come first
    q = rng.integers(-4, 5, (8, 6)).astype(np.float32)
    q[0] = xb[3]
    masks = MaskTable(45)
    m0 = rng.random(45) < 0.3
    m0[[3, 20]] = True
    masks.add(m0)
    masks.add(np.ones(45, bool))
    masks.add(np.zeros(45, bool))
    masks.add(np.eye(45, dtype=bool)[44])  # one match: k > matches
    fids = np.array([0, 1, 2, 3, 0, 1, 3, 0])
    rows, scores = compute_ground_truth(q, ArraySource("mem", xb), 45, 10, metric, masks, fids)
    s_ref, i_ref = linr.knn(q, xb, 10, metric, mask=torch.from_numpy(masks.dense(fids)))
    np.testing.assert_array_equal(rows, i_ref.numpy())
    np.testing.assert_allclose(scores, s_ref.numpy())
    assert (rows[2] == -1).all() and rows[3].tolist() == [44] + [-1] * 9
