"""Vector files: `.fbin`, `.fvecs`, `.npy` (contract: Command line).

    .fbin   uint32 n, uint32 d, then n*d float32, little-endian (big-ann-benchmarks)
    .fvecs  per vector: int32 d, then d float32 (TEXMEX)
    .npy    a 2-D float32 or float16 array (float64 is accepted too)

Readers memory-map the file (copy-on-write, so the arrays are writable but the file is never
changed): opening a 1M x 128 file costs a header read, and pages come in as rows are used.
Every format and size problem raises InvalidInput naming the file and what is wrong.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from linr.errors import InvalidInput

VECTOR_SUFFIXES = (".fbin", ".fvecs", ".npy")
_NPY_DTYPES = (np.float16, np.float32, np.float64)

PathLike = str | os.PathLike[str]


def vector_format(path: PathLike) -> str:
    """The format named by the file's suffix: 'fbin', 'fvecs' or 'npy'."""
    suffix = Path(path).suffix.lower()
    if suffix not in VECTOR_SUFFIXES:
        raise InvalidInput(
            f"{path}: unknown vector file type {suffix or '(no suffix)'!r}; "
            f"expected one of {', '.join(VECTOR_SUFFIXES)}"
        )
    return suffix[1:]


def read_vectors(path: PathLike) -> np.ndarray:
    """The vectors of a `.fbin`, `.fvecs` or `.npy` file as a float32 [n, d] array.

    `.fbin` and float32 `.npy` give a memory map; `.fvecs` gives a strided view of one (each
    row skips its int32 length word); float16/float64 `.npy` are converted in memory.
    """
    fmt = vector_format(path)
    if fmt == "fbin":
        return _map_fbin(path)
    if fmt == "fvecs":
        return _map_fvecs(path)
    x = _map_npy(path)
    return x if x.dtype == np.float32 else x.astype(np.float32)


def vector_file_shape(path: PathLike) -> tuple[int, int]:
    """(n, d) of a vector file, validated, without reading the vectors."""
    return tuple(read_vectors_lazy(path).shape)  # type: ignore[return-value]


def read_vectors_lazy(path: PathLike) -> np.ndarray:
    """Like read_vectors, but float16/float64 `.npy` stay in their dtype (still mapped)."""
    fmt = vector_format(path)
    if fmt == "fbin":
        return _map_fbin(path)
    if fmt == "fvecs":
        return _map_fvecs(path)
    return _map_npy(path)


def iter_vector_chunks(path: PathLike, chunk_rows: int) -> Iterator[np.ndarray]:
    """Yield the vectors as C-contiguous float32 [<= chunk_rows, d] arrays, in file order.

    Only one chunk is converted at a time, so a float16 file or an `.fvecs` file never
    needs a full float32 copy in memory.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    x = read_vectors_lazy(path)
    for start in range(0, x.shape[0], chunk_rows):
        yield np.ascontiguousarray(x[start : start + chunk_rows], dtype=np.float32)


def write_fbin(path: PathLike, vectors: np.ndarray) -> None:
    """Write float [n, d] vectors as `.fbin`."""
    x = _as_matrix(vectors)
    with open(path, "wb") as f:
        f.write(struct.pack("<II", x.shape[0], x.shape[1]))
        np.ascontiguousarray(x, dtype="<f4").tofile(f)


def write_fvecs(path: PathLike, vectors: np.ndarray) -> None:
    """Write float [n, d] vectors as `.fvecs`."""
    x = _as_matrix(vectors)
    n, d = x.shape
    rec = np.empty((n, d + 1), dtype="<f4")
    rec[:, 1:] = x
    rec.view("<i4")[:, 0] = d
    with open(path, "wb") as f:
        rec.tofile(f)


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[1] < 1:
        raise InvalidInput(f"vectors must be a 2-D array [n, d] with d >= 1, got shape {x.shape}")
    if x.shape[0] >= 2**32 or x.shape[1] >= 2**31:
        raise InvalidInput(f"shape {x.shape} does not fit the file header")
    return x


def _file_size(path: PathLike) -> int:
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory", str(path))
    return os.path.getsize(path)  # FileNotFoundError names the path


def _map_fbin(path: PathLike) -> np.ndarray:
    size = _file_size(path)
    if size < 8:
        raise InvalidInput(f"{path}: truncated .fbin: {size} bytes, shorter than the 8-byte header")
    with open(path, "rb") as f:
        n, d = struct.unpack("<II", f.read(8))
    if d == 0:
        raise InvalidInput(f"{path}: .fbin header says dimension 0")
    expected = 8 + 4 * n * d
    if size != expected:
        problem = "truncated" if size < expected else f"{size - expected} unexpected trailing bytes"
        raise InvalidInput(
            f"{path}: {problem}: the .fbin header says {n} x {d} float32 ({expected} bytes) "
            f"but the file has {size} bytes"
        )
    if n == 0:
        return np.empty((0, d), dtype=np.float32)
    return np.memmap(path, dtype="<f4", mode="c", offset=8, shape=(n, d))


def _map_fvecs(path: PathLike) -> np.ndarray:
    size = _file_size(path)
    if size == 0:
        raise InvalidInput(f"{path}: empty .fvecs file (no vectors)")
    if size < 4:
        raise InvalidInput(f"{path}: truncated .fvecs: {size} bytes")
    with open(path, "rb") as f:
        (d,) = struct.unpack("<i", f.read(4))
    if d <= 0 or d >= 2**24:
        raise InvalidInput(f"{path}: not an .fvecs file: first record has dimension {d}")
    rec = 4 * (d + 1)
    if size % rec:
        raise InvalidInput(
            f"{path}: truncated .fvecs: {size} bytes is not a whole number of "
            f"{rec}-byte records (dimension {d})"
        )
    n = size // rec
    words = np.memmap(path, dtype="<i4", mode="c", shape=(n, d + 1))
    bad = np.flatnonzero(words[:, 0] != d)
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(
            f"{path}: record {i} has dimension {int(words[i, 0])}, the first record has {d}"
        )
    return words.view("<f4")[:, 1:]


def _map_npy(path: PathLike) -> np.ndarray:
    _file_size(path)
    try:
        x = np.load(path, mmap_mode="c", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise InvalidInput(f"{path}: not a readable .npy file: {e}") from None
    if not isinstance(x, np.ndarray):
        raise InvalidInput(f"{path}: expected one array, found an archive")
    if x.ndim != 2:
        raise InvalidInput(f"{path}: expected a 2-D array [n, d], got shape {x.shape}")
    if x.shape[1] < 1:
        raise InvalidInput(f"{path}: vectors have dimension 0")
    if x.dtype.type not in _NPY_DTYPES:
        raise InvalidInput(f"{path}: dtype {x.dtype} is not float32 or float16")
    return x
