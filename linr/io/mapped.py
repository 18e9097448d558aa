"""A .safetensors file memory-mapped copy-on-write: its tensors cost nothing until read,
and writes to them stay in this process (the file never changes).

For one-shot readers (`linr search`): the scan then reads the codes straight from the page
cache instead of after a copy (512 MB at 1M x 128). A process that may write the same path
again must not map it: rewriting the file in place would change or truncate the mapping.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def map_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """{name: tensor} of a .safetensors file (the format's 8-byte header length, JSON header,
    then the data), mapped where aligned, copied where not or of a dtype numpy lacks."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    if not any(k != "__metadata__" for k in header):
        return {}
    data = np.memmap(path, dtype=np.uint8, mode="c")
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                out[name] = f.get_tensor(name)
            continue
        start, end = (8 + size + o for o in info["data_offsets"])
        raw = data[start:end]
        if start % np.dtype(dtype).itemsize:
            raw = raw.copy()
        out[name] = torch.from_numpy(raw.view(dtype).reshape(info["shape"]))
    return out
