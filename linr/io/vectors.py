"""Vector files, one reader per format (docs/cli.md; `linr eval` reads more, docs/eval.md).

    .fbin .u8bin .i8bin .ibin   big-ann-benchmarks: uint32 n, uint32 d, then n*d elements
                                (float32, uint8, int8, int32), little-endian
    .fvecs .bvecs .ivecs        TEXMEX: per vector an int32 d, then d float32 / uint8 / int32
    .npy                        a 2-D numeric array

The CLI's vector inputs are `.fbin`, `.fvecs` and float `.npy` (`read_vectors`).

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

VECTOR_SUFFIXES = (".fbin", ".fvecs", ".npy")  # what build/search/produce read
# Element types by suffix of the binary formats public benchmarks ship.
BIGANN_DTYPES = {".fbin": "<f4", ".u8bin": "u1", ".i8bin": "i1", ".ibin": "<i4"}
TEXMEX_DTYPES = {".fvecs": "<f4", ".bvecs": "u1", ".ivecs": "<i4"}
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
    x = read_vectors_lazy(path)
    return x if x.dtype == np.float32 else x.astype(np.float32)


def vector_file_shape(path: PathLike) -> tuple[int, int]:
    """(n, d) of a vector file, validated, without reading the vectors."""
    return tuple(read_vectors_lazy(path).shape)  # type: ignore[return-value]


def read_vectors_lazy(path: PathLike) -> np.ndarray:
    """Like read_vectors, but float16/float64 `.npy` stay in their dtype (still mapped)."""
    fmt = vector_format(path)
    if fmt == "fbin":
        return map_bigann(path)
    if fmt == "fvecs":
        return map_texmex(path)
    x = map_npy(path)
    if x.dtype.type not in _NPY_DTYPES:
        raise InvalidInput(f"{path}: dtype {x.dtype} is not float32 or float16")
    return x


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


def file_size(path: PathLike) -> int:
    """The file's size; FileNotFoundError / IsADirectoryError name the path."""
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory", str(path))
    return os.path.getsize(path)


def map_bigann(path: PathLike, *, distances_ok: bool = False) -> np.ndarray:
    """big-ann-benchmarks binary (`.fbin .u8bin .i8bin .ibin`): uint32 n, uint32 d, then
    n*d elements of the suffix's type, little-endian, as a copy-on-write map [n, d].
    `distances_ok`: the file may also hold n*d float32 distances after them (big-ann
    ground truth), which are ignored."""
    suffix = Path(path).suffix.lower()
    dtype = np.dtype(BIGANN_DTYPES[suffix])
    size = file_size(path)
    if size < 8:
        raise InvalidInput(
            f"{path}: truncated {suffix}: {size} bytes, shorter than the 8-byte header"
        )
    with open(path, "rb") as f:
        n, d = struct.unpack("<II", f.read(8))
    if d == 0:
        raise InvalidInput(f"{path}: {suffix} header says dimension 0")
    expected = 8 + dtype.itemsize * n * d
    with_distances = expected + 4 * n * d
    if size != expected and not (distances_ok and size == with_distances):
        problem = "truncated" if size < expected else f"{size - expected} unexpected trailing bytes"
        also = f", or {with_distances} with distances" if distances_ok else ""
        raise InvalidInput(
            f"{path}: {problem}: the {suffix} header says {n} x {d} {dtype.name} "
            f"({expected} bytes{also}) but the file has {size} bytes"
        )
    if n == 0:
        return np.empty((0, d), dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="c", offset=8, shape=(n, d))


def map_texmex(path: PathLike) -> np.ndarray:
    """TEXMEX (`.fvecs .bvecs .ivecs`): per vector an int32 d, then d elements of the
    suffix's type, as a strided copy-on-write map [n, d]. Every record's d is checked."""
    suffix = Path(path).suffix.lower()
    dtype = np.dtype(TEXMEX_DTYPES[suffix])
    size = file_size(path)
    if size == 0:
        raise InvalidInput(f"{path}: empty {suffix} file (no vectors)")
    if size < 4:
        raise InvalidInput(f"{path}: truncated {suffix}: {size} bytes")
    with open(path, "rb") as f:
        (d,) = struct.unpack("<i", f.read(4))
    if d <= 0 or d >= 2**24:
        raise InvalidInput(f"{path}: not a {suffix} file: first record has dimension {d}")
    rec = 4 + dtype.itemsize * d
    if size % rec:
        raise InvalidInput(
            f"{path}: truncated {suffix}: {size} bytes is not a whole number of "
            f"{rec}-byte records (dimension {d})"
        )
    records = np.memmap(path, dtype=np.uint8, mode="c", shape=(size // rec, rec))
    dims = np.ascontiguousarray(records[:, :4]).view("<i4")[:, 0]
    bad = np.flatnonzero(dims != d)
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(
            f"{path}: record {i} has dimension {int(dims[i])}, the first record has {d}"
        )
    return records[:, 4:].view(dtype)


def map_npy(path: PathLike) -> np.ndarray:
    """A 2-D numeric `.npy` array, as a copy-on-write map."""
    file_size(path)
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
    if x.dtype.kind not in "fiu":
        raise InvalidInput(f"{path}: expected numbers, got dtype {x.dtype}")
    return x
