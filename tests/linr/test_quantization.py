"""int8 is judged by quality: recall against exact fp32 on data that is not uniform noise."""

import numpy as np
import torch

import linr
from linr import Index
from linr.quantization import dequantize_int8, quantize_int8


def clustered(rng, n, d, n_clusters=64):
    """Clustered, anisotropic vectors: cluster centres plus noise with decaying variances."""
    centres = rng.standard_normal((n_clusters, d)) * 2
    scales = np.exp(-np.arange(d) / (d / 4))  # anisotropic: a few dominant directions
    rot = np.linalg.qr(rng.standard_normal((d, d)))[0]
    labels = rng.integers(0, n_clusters, n)
    x = centres[labels] + (rng.standard_normal((n, d)) * scales) @ rot
    return x.astype(np.float32)


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def test_int8_recall_on_clustered_data(rng):
    n, d = 20_000, 128
    x = clustered(rng, n + 500, d)
    base, queries = x[:n], x[n:]
    index = Index(d, "ip", "int8", "cpu")
    index.upsert(np.arange(n), base)
    for k in (10, 100):
        _, truth = linr.knn(queries, base, k)
        found = index.search(queries, k).rows
        r = recall(found.tolist(), truth.tolist())
        print(f"int8 recall@{k} = {r:.4f}")
        assert r >= 0.95


def test_int8_reconstruction_error_bound(rng):
    x = torch.from_numpy(rng.standard_normal((500, 77)).astype(np.float32) * 10)
    codes, scales = quantize_int8(x)
    err = (dequantize_int8(codes, scales) - x).abs()
    # Rounding to the nearest of 255 levels costs at most half a step, scale / 2. The fp32
    # arithmetic adds three roundings of values up to 127 steps (x / scale, code * scale, the
    # difference), each at most 127 * u steps with u = 2**-24: seed 3359596273 exceeds half a
    # step by 8e-6 steps, inside the 2.3e-5 this allows.
    u = 2.0**-24
    assert bool((err <= scales[:, None] * (0.5 + 3 * 127 * u)).all())


def test_zero_vector_round_trips():
    codes, scales = quantize_int8(torch.zeros(2, 5))
    assert bool((dequantize_int8(codes, scales) == 0).all())
