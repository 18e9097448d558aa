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
