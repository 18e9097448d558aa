import numpy as np
import pytest
import torch


@pytest.fixture
def rng() -> np.random.Generator:
    # Fresh random inputs on every run (the seed is printed on failure by pytest's -ra repr).
    seed = int(np.random.SeedSequence().entropy % (2**32))
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def stored_vectors(index, n_rows: int) -> torch.Tensor:
    """The decoded vectors the index scores against (the oracle's database)."""
    return index.stored_vectors(torch.arange(n_rows))


def index_reference(index, q, k, metric, mask):
    """float64 exact top k over the index's stored vectors where mask and liveness hold."""
    import linr

    x = stored_vectors(index, index._n_rows)
    mask = index._valid[: index._n_rows].cpu() & mask
    if metric == "cosine":  # stored vectors are normalized (then quantized) on insert
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        metric = "ip"
    return linr.knn(q, x, k, metric, mask=mask)


def check_filtered_search(rng, metric, quant, n, d, b, k, frac) -> np.ndarray:
    """Index.search (auto) of b queries, with a filter allowing ~frac of n rows and without
    one, against index_reference (one dead row the filter would allow). Tolerance 1e-4
    relative and absolute: float32 sums of D <= 130 terms of N(0, 1) products against
    float64 (as tests/linr/test_scan.py). Returns the filter's rows (bool [n])."""
    from linr import Index
    from linr.testing.topk import assert_same_topk, scores_by_row

    index = Index(d, metric, quant, "cpu")
    x = (rng.standard_normal((n, d)) + 3 * (metric == "l2")).astype(np.float32)
    allow = rng.random(n) < frac
    if frac > 0:
        allow[rng.integers(0, n)] = True
    index.upsert(np.arange(n) * 3, x, [{"ok": bool(a)} for a in allow])
    index.delete([0])  # a dead row the filter would allow
    q = rng.standard_normal((b, d)).astype(np.float32)
    mask = torch.from_numpy(allow)
    for f in ("ok == true", None):
        m = mask if f else torch.ones(n, dtype=torch.bool)
        ref_s, ref_i = index_reference(index, q, k, metric, m)
        full = scores_by_row(*index_reference(index, q, n, metric, m), n)
        res = index.search(q, k, f)
        assert_same_topk(res.rows, res.scores, ref_i.numpy(), ref_s.numpy(), 1e-4, 1e-4, full)
    return allow
