import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("kafka")


@pytest.fixture
def rng() -> np.random.Generator:
    seed = int(np.random.SeedSequence().entropy) % (2**32)  # type: ignore[arg-type]
    print(f"seed={seed}")
    return np.random.default_rng(seed)
