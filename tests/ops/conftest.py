"""The kernel tests run in their own pytest process: `make test-kernels` (part of `make test`).

Triton fixes a kernel to the CPU interpreter or to the GPU compiler when it is defined, that
is when linr's kernel modules are imported, so TRITON_INTERPRET=1 must be in the environment
before the process starts (`TRITON_INTERPRET=1 python -m pytest tests/ops`). With
LINR_TEST_GPU=1 on a CUDA machine the same tests run compiled on the GPU instead. In any
other process (the main `pytest` run) the modules that need Triton are not collected, so
nothing here runs the kernels compiled on a CPU; the torch-only ones (merge_topk) still run.
"""

import os

import pytest
import torch

from linr.ops import interpreting


def _use_gpu() -> bool:
    return os.environ.get("LINR_TEST_GPU") == "1" and torch.cuda.is_available()


_KERNEL_TESTS = [
    "test_ops_bench_smoke.py",
    "test_ops_fused_scan.py",
    "test_ops_hamming.py",
    "test_ops_index.py",
    "test_ops_rescore.py",
    "test_ops_scan_topk.py",
]
collect_ignore = [] if interpreting() or _use_gpu() else _KERNEL_TESTS
if interpreting():
    # It compiles for sm_90, which the interpreter's kernel objects cannot do.
    collect_ignore.append("test_ops_aot.py")


def pytest_report_header(config: pytest.Config) -> str:
    if not interpreting() and not _use_gpu():
        return "tests/ops kernel tests: not collected here (run `make test-kernels`)"
    return f"tests/ops kernel tests: {'GPU' if _use_gpu() else 'Triton CPU interpreter'}"


@pytest.fixture
def dev() -> torch.device:
    return torch.device("cuda" if _use_gpu() else "cpu")


@pytest.fixture
def gen() -> torch.Generator:
    """Fresh random inputs on every run (the seed is printed on failure)."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)
