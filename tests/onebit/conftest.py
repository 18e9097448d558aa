import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    # Fresh random inputs on every run; the seed is printed for a failing test.
    seed = int(np.random.SeedSequence().entropy % (2**32))
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def clustered(rng: np.random.Generator, n: int, dim: int, n_clusters: int = 8) -> np.ndarray:
    """Clustered, anisotropic float32 rows with varying norms (not uniform noise)."""
    centres = rng.standard_normal((n_clusters, dim)) * 2.0
    scale = np.linspace(2.0, 0.1, dim)  # a few strong directions
    x = centres[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, dim)) * scale
    return (x * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float32)
