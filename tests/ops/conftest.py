"""Kernels under test run through Triton's CPU interpreter at small sizes.

TRITON_INTERPRET=1 is set only while each test of this directory runs (monkeypatch), so it
never leaks into other test directories (where linr.ops.available("cpu") must stay False).
linr.ops builds its kernels per setting at launch (linr/ops/_jit.py), so the order in which
tests import things does not matter.

With LINR_TEST_GPU=1 on a CUDA machine the same tests run compiled on the GPU instead.
"""

import os

import pytest
import torch


def _use_gpu() -> bool:
    return os.environ.get("LINR_TEST_GPU") == "1" and torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _use_gpu():
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def dev() -> torch.device:
    return torch.device("cuda" if _use_gpu() else "cpu")


@pytest.fixture
def gen() -> torch.Generator:
    """Fresh random inputs on every run (the seed is printed on failure)."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)
