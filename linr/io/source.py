"""`VectorSource`: any vector file of a public benchmark, opened with its shape known up front
and rows read on demand (`read(start, stop)`, `chunks(size)`, `take(rows)`), so a base set
larger than memory is streamed, not loaded. The binary formats are the memory maps of
linr/io/vectors.py (one reader per format, one set of errors); HDF5 and Parquet
(linr/io/columnar.py) read only the rows asked for.

    .fbin .u8bin .i8bin .ibin .fvecs .bvecs .ivecs .npy   see linr/io/vectors.py
    .hdf5 .h5                   ann-benchmarks: datasets train, test, neighbors, distances;
                                "file.hdf5:name" names the dataset explicitly
    .parquet                    one list column of numbers holds the vectors (see
                                linr/eval/attributes.py for the other columns)

Rows always come back as float32 [rows, d]; integer element types are converted exactly.
h5py and pyarrow are imported only when such a file is opened (the `eval` extra).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from linr.errors import InvalidInput
from linr.io.vectors import BIGANN_DTYPES, TEXMEX_DTYPES, file_size, map_bigann, map_npy, map_texmex

HDF5_SUFFIXES = (".hdf5", ".h5")
SOURCE_SUFFIXES = (*BIGANN_DTYPES, *TEXMEX_DTYPES, ".npy", *HDF5_SUFFIXES, ".parquet")

# Dataset used for each role when an HDF5 path names none (ann-benchmarks layout).
HDF5_ROLES = {"base": "train", "queries": "test", "gt": "neighbors"}


class VectorSource(ABC):
    """n rows of d numbers, read on demand as float32."""

    def __init__(self, path: str, n: int, dim: int, dtype: np.dtype[Any]) -> None:
        self.path = path
        self.n = n
        self.dim = dim
        self.dtype = dtype  # element type as stored

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    @abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray: ...

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) as a fresh float32 array [stop - start, d]."""
        stop = self.n if stop is None else min(stop, self.n)
        if not 0 <= start <= stop:
            raise ValueError(f"bad row range [{start}, {stop}) for {self.path} with {self.n} rows")
        return np.ascontiguousarray(self._read(start, stop), dtype=np.float32)

    def read_raw(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) in the stored element type (ids stay exact integers)."""
        stop = self.n if stop is None else min(stop, self.n)
        return np.asarray(self._read(start, stop))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float32 rows at arbitrary positions (any shape of int indices, all valid)."""
        flat = np.asarray(rows, dtype=np.int64).ravel()
        order = np.argsort(flat, kind="stable")
        out = np.empty((flat.size, self.dim), dtype=np.float32)
        # Read the sorted positions in windows so a memory map is touched mostly in order.
        step = 65536
        for i in range(0, flat.size, step):
            sel = order[i : i + step]
            lo, hi = int(flat[sel[0]]), int(flat[sel[-1]]) + 1
            if hi - lo <= 4 * sel.size + 1024:
                out[sel] = self.read(lo, hi)[flat[sel] - lo]
            else:
                out[sel] = np.stack([self.read(int(r), int(r) + 1)[0] for r in flat[sel]])
        return out.reshape(*np.shape(rows), self.dim)

    def chunks(self, size: int, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(start, float32 rows) for consecutive chunks of at most `size` rows."""
        n = self.n if limit is None else min(limit, self.n)
        for start in range(0, n, size):
            yield start, self.read(start, min(start + size, n))


class ArraySource(VectorSource):
    """Rows of an in-memory or memory-mapped 2-D array."""

    def __init__(self, path: str, array: np.ndarray) -> None:
        if array.ndim != 2:
            raise InvalidInput(f"{path}: expected a 2-D array, got shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)):
            raise InvalidInput(f"{path}: expected numbers, got dtype {array.dtype}")
        super().__init__(path, int(array.shape[0]), int(array.shape[1]), array.dtype)
        self.array = array

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]

    def take(self, rows: np.ndarray) -> np.ndarray:
        idx = np.asarray(rows, dtype=np.int64)
        out = np.asarray(self.array[idx.ravel()], dtype=np.float32)
        return out.reshape(*idx.shape, self.dim)


def split_dataset(path: str) -> tuple[str, str | None]:
    """'file.hdf5:train' -> ('file.hdf5', 'train'); other paths unchanged."""
    for suffix in HDF5_SUFFIXES:
        marker = suffix + ":"
        if marker in path:
            head, _, name = path.partition(marker)
            return head + suffix, name
    return path, None


def suffix_of(path: str) -> str:
    return Path(split_dataset(path)[0]).suffix.lower()


def open_vectors(path: str, role: str = "base", column: str | None = None) -> VectorSource:
    """Open a vector file of any supported format. `role` picks the HDF5 dataset when the
    path names none (base -> train, queries -> test); `column` the Parquet vector column."""
    file_path, name = split_dataset(str(path))
    suffix = Path(file_path).suffix.lower()
    if suffix in BIGANN_DTYPES:
        return ArraySource(file_path, map_bigann(file_path))
    if suffix in TEXMEX_DTYPES:
        return ArraySource(file_path, map_texmex(file_path))
    if suffix == ".npy":
        return ArraySource(file_path, map_npy(file_path))
    if suffix in HDF5_SUFFIXES:
        from linr.io.columnar import HDF5Source

        file_size(file_path)
        return HDF5Source(file_path, name or HDF5_ROLES[role])
    if suffix == ".parquet":
        from linr.io.columnar import ParquetSource

        file_size(file_path)
        return ParquetSource(file_path, column)
    raise InvalidInput(
        f"{path}: unknown vector file type {suffix or '(none)'!r}; expected one of "
        f"{', '.join(SOURCE_SUFFIXES)}"
    )


def read_ground_truth(path: str) -> np.ndarray:
    """Neighbour ids [nq, k] as int64, -1 for padding. Accepts a big-ann ground-truth .ibin
    (uint32 nq, uint32 k, nq*k int32 ids, optionally followed by nq*k float32 distances),
    TEXMEX .ivecs, ann-benchmarks HDF5 (`neighbors`), or an integer .npy."""
    file_path, name = split_dataset(str(path))
    suffix = Path(file_path).suffix.lower()
    if suffix == ".ibin":
        from linr.io.ibin import read_ibin

        return read_ibin(file_path).astype(np.int64)
    if suffix not in (".ivecs", ".npy", *HDF5_SUFFIXES):
        raise InvalidInput(
            f"{path}: unknown ground-truth file type {suffix!r}; expected .ibin, .ivecs, "
            f".npy or HDF5"
        )
    src = open_vectors(path, role="gt")
    if src.dtype.kind not in "iu":
        raise InvalidInput(f"{path}: ground-truth ids must be integers, got {src.dtype}")
    ids = src.read_raw().astype(np.int64)
    if (ids < -1).any():
        raise InvalidInput(f"{path}: ground-truth ids below -1 (the padding value)")
    return ids
