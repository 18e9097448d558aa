"""A saved index's tensors (`tensors.safetensors`), read and checked against its manifest.

A truncated or corrupt file, or a manifest that disagrees with the tensors (its `dim`, row
count or quantization), is an InvalidInput naming the file and what disagrees, raised by
`Index.load` before any of it is used: otherwise a query of the manifest's dimension failed
later with a torch RuntimeError deep in the scan.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import torch

from linr.errors import InvalidInput

_CODE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}


def read_tensors(
    path: Path, manifest: dict[str, Any], mmap: bool = False
) -> dict[str, torch.Tensor]:
    """mmap: map the file copy-on-write (linr.io.mapped) instead of reading it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from linr.io.mapped import map_safetensors

    f = path / "tensors.safetensors"
    try:
        tensors = map_safetensors(f) if mmap else load_file(str(f))
    except (SafetensorError, ValueError, struct.error) as e:
        raise InvalidInput(f"{f}: not a complete safetensors file ({e})") from None
    check_tensors(f, manifest, tensors)
    return tensors


def check_tensors(f: Path, manifest: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    dim, n = manifest["dim"], manifest["n_rows"]
    quant, metric = manifest["quantization"], manifest["metric"]

    def need(name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> None:
        t = tensors.get(name)
        if t is None:
            raise InvalidInput(f"{f}: tensor '{name}' is missing")
        if tuple(t.shape) != shape:
            what = f"{n} rows"
            if name == "vec.codes":
                what = f"{quant} codes of dim {dim} and {n} rows"
            raise InvalidInput(
                f"{f}: tensor '{name}' has shape {tuple(t.shape)}, but the manifest says "
                f"{what} (expected {shape})"
            )
        if dtype is not None and t.dtype != dtype:
            raise InvalidInput(
                f"{f}: tensor '{name}' is {t.dtype}, but the manifest says {quant} ({dtype})"
            )

    if quant == "1bit":  # linr/onebit/store.py: packed sign bits, the norm per row
        bits = manifest.get("onebit", {}).get("bits")
        if not isinstance(bits, int) or bits <= 0 or bits % 64:
            raise InvalidInput(f"{f}: the manifest of a 1bit index gives no valid 'bits'")
        need("vec.codes", (n, bits // 8), torch.uint8)
        need("vec.norms", (n,))
    else:
        need("vec.codes", (n, dim), _CODE_DTYPES.get(quant))
    need("valid", (n,), torch.bool)
    if quant == "int8":
        need("vec.scales", (n,))
    if metric == "l2" and quant != "1bit":
        need("vec.sqnorms", (n,))
        if "vec.centre" in tensors:
            need("vec.centre", (dim,))
    if "versions" in tensors:
        need("versions", (n,))
