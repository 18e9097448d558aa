"""Save/load of 1-bit indexes, and live writes that never re-encode other items."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from linr.index import Index
from tests.linr.onebit_data import clustered


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
@pytest.mark.parametrize("rerank", ["fp16", "int8", "fp32", "none"])
def test_save_load_round_trip(rng, tmp_path, metric, rerank):
    n, dim = 400, 40
    x = clustered(rng, n, dim)
    idx = Index(dim, metric, quantization="1bit", bits=128, rerank=rerank, device="cpu", seed=11)
    idx.upsert(np.arange(n), x, [{"t": int(i % 5)} for i in range(n)])
    idx.delete([3, 7])
    idx.save(tmp_path / "a")
    back = Index.load(tmp_path / "a", device="cpu")
    back.save(tmp_path / "b")
    ta = load_file(str(tmp_path / "a" / "tensors.safetensors"))
    tb = load_file(str(tmp_path / "b" / "tensors.safetensors"))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key  # bit-identical
    meta = json.loads((tmp_path / "a" / "manifest.json").read_text())["onebit"]
    assert meta == {
        "bits": 128,
        "seed": 11,
        "transform": "rotated-sign-oporp",
        "rerank": rerank,
        "rerank_device": "cpu",
    }
    q = rng.standard_normal((5, dim)).astype(np.float32)
    for flt in (None, "t == 2"):
        r1, r2 = idx.search(q, 10, flt), back.search(q, 10, flt)
        np.testing.assert_array_equal(r1.rows, r2.rows)
        np.testing.assert_array_equal(r1.scores, r2.scores)
    # The same new item is encoded alike before and after the load.
    new = rng.standard_normal((2, dim)).astype(np.float32)
    idx.upsert([1000, 1001], new)
    back.upsert([1000, 1001], new)
    assert torch.equal(idx._store.codes[: idx._n_rows], back._store.codes[: back._n_rows])


def test_live_upserts_never_reencode_other_items(rng):
    dim = 30
    idx = Index(dim, "l2", quantization="1bit", bits=64, device="cpu", capacity=4)
    idx.upsert(np.arange(50), clustered(rng, 50, dim))
    before = idx._store.codes[:50].clone(), idx._store.norms[:50].clone()
    idx.upsert(np.arange(50, 5000), clustered(rng, 4950, dim) * 7 + 3)  # grows, new data
    idx.upsert([10], rng.standard_normal((1, dim)))
    keep = torch.ones(50, dtype=torch.bool)
    keep[10] = False
    assert torch.equal(idx._store.codes[:50][keep], before[0][keep])
    assert torch.equal(idx._store.norms[:50][keep], before[1][keep])


def test_memory_split_between_codes_and_rerank(rng):
    idx = Index(128, quantization="1bit", bits=128, rerank="fp16", device="cpu", capacity=1000)
    mem = idx.memory_bytes()
    assert mem["vectors"] == 1000 * (16 + 4 + 1)  # codes, norm, liveness
    assert mem["rerank"] == 1000 * 128 * 2
