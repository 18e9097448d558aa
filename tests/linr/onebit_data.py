"""Data for the 1-bit tests."""

import numpy as np


def clustered(rng: np.random.Generator, n: int, dim: int, n_clusters: int = 8) -> np.ndarray:
    """Clustered, anisotropic float32 rows with varying norms (not uniform noise)."""
    centres = rng.standard_normal((n_clusters, dim)) * 2.0
    scale = np.linspace(2.0, 0.1, dim)  # a few strong directions
    x = centres[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, dim)) * scale
    return (x * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float32)
