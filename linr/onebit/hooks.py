"""What linr.index asks of quantization "1bit" (kept here so the index stays small)."""

from __future__ import annotations

from typing import Any

import torch

from linr.errors import InvalidInput
from linr.onebit.search import OneBitScanner, check_oversample
from linr.onebit.store import DEFAULT_SEED, OneBitStore, check_rerank
from linr.onebit.transform import check_bits
from linr.search import Scanner
from linr.storage import VectorStore


def make(
    dim: int,
    metric: str,
    device: torch.device,
    capacity: int,
    bits: int | None,
    rerank: str | None,
    rerank_device: str | torch.device | None,
    seed: int | None,
) -> tuple[OneBitStore, OneBitScanner]:
    from linr.index import resolve_device

    rr = check_rerank("fp16" if rerank is None else rerank)
    rdev = device if rerank_device is None else resolve_device(rerank_device)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    store = OneBitStore(
        dim,
        metric,
        device,
        capacity,
        check_bits(bits, dim),
        rr,
        rdev,
        DEFAULT_SEED if seed is None else seed,
    )
    return store, OneBitScanner(store, metric)


def make_store(
    dim: int,
    metric: str,
    quantization: str,
    device: torch.device,
    capacity: int,
    bits: int | None = None,
    rerank: str | None = None,
    rerank_device: str | torch.device | None = None,
    seed: int | None = None,
) -> VectorStore | OneBitStore:
    """The vector store of a new (or loading) index: 1-bit codes, or linr.storage's."""
    if quantization == "1bit":
        return make(dim, metric, device, capacity, bits, rerank, rerank_device, seed)[0]
    return VectorStore(dim, quantization, device, capacity, metric == "l2")


def make_scanner(store: VectorStore | OneBitStore, metric: str, scan_bytes: int) -> Any:
    if isinstance(store, OneBitStore):
        return OneBitScanner(store, metric)
    return Scanner(store, metric, scan_bytes)


def check_unused(quantization: str, *options: object) -> None:
    """bits, rerank, rerank_device and seed belong to quantization 1bit."""
    if any(o is not None for o in options):
        raise InvalidInput(
            f"bits, rerank, rerank_device and seed apply to quantization '1bit', "
            f"not {quantization!r}"
        )


def is_onebit(store: Any) -> bool:
    return isinstance(store, OneBitStore)


def stores_fp16(store: Any) -> bool:
    """True when vectors are kept as fp16 (codes or rerank store): |x| <= 65504 is checked."""
    if isinstance(store, OneBitStore):
        return store.rerank == "fp16"
    return bool(store.quantization == "fp16")


def extra_memory(store: Any) -> dict[str, int]:
    if isinstance(store, OneBitStore):
        return {"rerank": store.rerank_bytes()}
    return {}


def search_kwargs(store: Any, oversample: int | None) -> dict[str, Any]:
    if isinstance(store, OneBitStore):
        return {"oversample": check_oversample(oversample)}
    return {}


def manifest_entry(store: Any) -> dict[str, Any]:
    return {"onebit": store.meta()} if isinstance(store, OneBitStore) else {}


def load_kwargs(manifest: dict[str, Any], rerank_device: Any = None) -> dict[str, Any]:
    """Index() arguments of a saved 1-bit index; the transform itself is in its tensors."""
    meta = manifest.get("onebit")
    if manifest.get("quantization") != "1bit":
        return {}
    if not isinstance(meta, dict):
        raise InvalidInput("manifest of a 1bit index has no 'onebit' section")
    # A rerank store saved from the host stays on the host; else it follows the codes.
    rdev = rerank_device
    if rdev is None and str(meta.get("rerank_device", "")).startswith("cpu"):
        rdev = "cpu"
    return {
        "bits": meta["bits"],
        "rerank": meta["rerank"],
        "rerank_device": rdev,
        "seed": meta["seed"],
    }
