import numpy as np
import pytest
import torch

from linr import knn


def brute(q, x, k, metric, mask=None):
    q = q.astype(np.float64)
    x = x.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if metric == "l2":
        s = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    else:
        s = q @ x.T
    out_i = np.full((q.shape[0], k), -1)
    for b in range(q.shape[0]):
        cand = [(-s[b, j], j) for j in range(x.shape[0]) if mask is None or mask[j]]
        cand.sort()
        for t, (_, j) in enumerate(cand[:k]):
            out_i[b, t] = j
    return out_i


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("n,d,k", [(1, 3, 5), (57, 13, 10), (200, 130, 7)])
def test_knn_matches_brute_force(rng, metric, n, d, k):
    x = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((4, d)).astype(np.float32)
    mask = rng.random(n) < 0.5
    s, i = knn(q, x, k, metric)
    assert (i.numpy() == brute(q, x, k, metric)).all()
    s, i = knn(q, x, k, metric, mask=mask)
    assert (i.numpy() == brute(q, x, k, metric, mask)).all()
    # padding: -1 ids carry -inf scores
    assert ((i.numpy() == -1) == np.isneginf(s.numpy())).all()


def test_ties_by_ascending_index():
    x = np.ones((9, 4), np.float32)
    s, i = knn(np.ones((1, 4), np.float32), x, 5)
    assert i.tolist() == [[0, 1, 2, 3, 4]]


def test_per_query_mask():
    x = np.eye(4, dtype=np.float32)
    q = np.ones((2, 4), np.float32)
    mask = torch.tensor([[True, False, False, False], [False, False, True, True]])
    _, i = knn(q, x, 3, mask=mask)
    assert i.tolist() == [[0, -1, -1], [2, 3, -1]]
