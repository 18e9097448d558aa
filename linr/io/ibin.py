"""`.ibin` id files (big-ann-benchmarks): uint32 nq, uint32 k, then nq*k int32, little-endian.

`linr search --output res.ibin` writes one row of k ids per query, padded with -1 where a
query has fewer than k results. Only integer ids below 2^31 fit.
"""

from __future__ import annotations

import struct

import numpy as np

from linr.errors import InvalidInput
from linr.io.vectors import PathLike, map_bigann

_INT32_MAX = 2**31 - 1


def write_ibin(path: PathLike, ids: np.ndarray) -> None:
    """Write an integer [nq, k] array (ids >= 0, or -1 for padding) as `.ibin`."""
    x = np.asarray(ids)
    if x.ndim != 2:
        raise InvalidInput(f"ids must be a 2-D array [nq, k], got shape {x.shape}")
    if x.size and x.dtype.kind not in "iu":
        raise InvalidInput(f"ids must be integers, got dtype {x.dtype}")
    if x.size:
        hi, lo = int(x.max()), int(x.min())
        if hi > _INT32_MAX:
            raise InvalidInput(f"id {hi} does not fit in .ibin (int32: ids below 2^31 only)")
        if lo < -1:
            raise InvalidInput(f"id {lo} is negative; .ibin uses -1 for padding only")
    with open(path, "wb") as f:
        f.write(struct.pack("<II", x.shape[0], x.shape[1]))
        np.ascontiguousarray(x, dtype="<i4").tofile(f)


def read_ibin(path: PathLike) -> np.ndarray:
    """Read an `.ibin` file as int32 [nq, k] (a big-ann ground-truth file's distances that
    may follow the ids are ignored)."""
    return np.array(map_bigann(path, distances_ok=True), dtype=np.int32)
