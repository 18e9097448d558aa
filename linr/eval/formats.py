"""Vector and ground-truth files in the formats that public benchmarks ship.

Every reader returns a `VectorSource`: the shape is known up front and rows are read on demand
(`read(start, stop)` or `chunks(size)`), so a base set larger than memory is streamed, not
loaded. Binary formats are memory-mapped; HDF5 and Parquet read only the rows asked for.

    .fbin .u8bin .i8bin .ibin   big-ann-benchmarks: uint32 n, uint32 d, then n*d elements
                                (float32, uint8, int8, int32), little-endian
    .fvecs .bvecs .ivecs        TEXMEX: per vector an int32 d, then d float32 / uint8 / int32
    .npy                        a 2-D numeric array
    .hdf5 .h5                   ann-benchmarks: datasets train, test, neighbors, distances;
                                "file.hdf5:name" names the dataset explicitly
    .parquet                    one list column of numbers holds the vectors (see attributes.py
                                for the other columns)

Rows always come back as float32 [rows, d]; integer element types are converted exactly.
h5py and pyarrow are imported only when such a file is opened (the `eval` extra).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from linr.errors import InvalidInput

BIGANN_DTYPES = {".fbin": np.float32, ".u8bin": np.uint8, ".i8bin": np.int8, ".ibin": np.int32}
TEXMEX_DTYPES = {".fvecs": np.float32, ".bvecs": np.uint8, ".ivecs": np.int32}
HDF5_SUFFIXES = (".hdf5", ".h5")
VECTOR_SUFFIXES = (*BIGANN_DTYPES, *TEXMEX_DTYPES, ".npy", *HDF5_SUFFIXES, ".parquet")

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


class _TexmexSource(ArraySource):
    """TEXMEX records viewed as a 2-D array whose leading int32 must equal d: [n, 1 + d] of
    4-byte elements, or [n, 4 + d] bytes for .bvecs."""

    def __init__(self, path: str, records: np.ndarray) -> None:
        self.records = records
        self.byte_records = records.dtype.itemsize == 1
        super().__init__(path, records[:, 4:] if self.byte_records else records[:, 1:])

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self.byte_records:
            dims = np.ascontiguousarray(self.records[start:stop, :4]).view("<i4")[:, 0]
        else:
            dims = np.ascontiguousarray(self.records[start:stop, 0]).view("<i4")
        bad = np.flatnonzero(dims != self.dim)
        if bad.size:
            row = start + int(bad[0])
            raise InvalidInput(
                f"{self.path}: vector {row} declares dimension {int(dims[bad[0]])}, "
                f"the first declares {self.dim}"
            )
        return self.array[start:stop]


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


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from e


def open_bigann(path: str) -> ArraySource:
    """big-ann-benchmarks binary: uint32 n, uint32 d, then n*d elements (type by suffix)."""
    dtype = np.dtype(BIGANN_DTYPES[suffix_of(path)])
    size = _file_size(path)
    if size < 8:
        raise InvalidInput(f"{path}: {size} bytes, too short for the 8-byte header (n, d)")
    n, d = (int(v) for v in np.fromfile(path, dtype="<u4", count=2))
    expected = 8 + n * d * dtype.itemsize
    if size != expected:
        raise InvalidInput(
            f"{path}: header says {n} x {d} {dtype.name} ({expected} bytes) but the file has "
            f"{size} bytes"
        )
    if n == 0 or d == 0:
        return ArraySource(path, np.zeros((n, d), dtype=dtype))
    return ArraySource(
        path, np.memmap(path, dtype=dtype.newbyteorder("<"), mode="r", offset=8, shape=(n, d))
    )


def open_texmex(path: str) -> _TexmexSource:
    """TEXMEX .fvecs/.bvecs/.ivecs: each record is int32 d then d elements."""
    dtype = np.dtype(TEXMEX_DTYPES[suffix_of(path)])
    size = _file_size(path)
    if size < 4:
        raise InvalidInput(f"{path}: {size} bytes, too short for a vector's dimension header")
    d = int(np.fromfile(path, dtype="<i4", count=1)[0])
    if d <= 0:
        raise InvalidInput(f"{path}: first vector declares dimension {d}")
    record = 4 + d * dtype.itemsize
    if size % record:
        raise InvalidInput(
            f"{path}: {size} bytes is not a whole number of {record}-byte records (d = {d})"
        )
    n = size // record
    if dtype.itemsize == 4:
        records = np.memmap(path, dtype=dtype.newbyteorder("<"), mode="r", shape=(n, d + 1))
        return _TexmexSource(path, records)
    return _TexmexSource(path, np.memmap(path, dtype=np.uint8, mode="r", shape=(n, record)))


def open_npy(path: str) -> ArraySource:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{path}: not a readable .npy array ({e})") from e
    return ArraySource(path, array)


class _HDF5Source(VectorSource):
    def __init__(self, path: str, name: str) -> None:
        import h5py  # the `eval` extra

        self.file_path = path
        self.name = name
        try:
            with h5py.File(path, "r") as f:
                if name not in f:
                    raise InvalidInput(
                        f"{path}: no dataset {name!r}; it holds {', '.join(sorted(f.keys()))}"
                    )
                ds = f[name]
                shape, dtype = ds.shape, ds.dtype
                self.attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        except OSError as e:
            raise InvalidInput(f"{path}: not a readable HDF5 file ({e})") from e
        if len(shape) != 2:
            raise InvalidInput(f"{path}:{name}: expected a 2-D dataset, got shape {shape}")
        super().__init__(f"{path}:{name}", int(shape[0]), int(shape[1]), np.dtype(dtype))

    def _read(self, start: int, stop: int) -> np.ndarray:
        import h5py

        with h5py.File(self.file_path, "r") as f:
            return np.asarray(f[self.name][start:stop])


def _attr_value(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v


class _ParquetSource(VectorSource):
    """The vector column of a Parquet file, read a row group at a time."""

    def __init__(self, path: str, column: str | None) -> None:
        import pyarrow.parquet as pq  # the `eval` extra

        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises its own error types for a bad file
            raise InvalidInput(f"{path}: not a readable Parquet file ({e})") from e
        self.column = column or vector_column(self.file.schema_arrow, path)
        meta = self.file.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(self.group_starts[-1])
        first = self._groups(0, 1) if n else np.zeros((0, 0), dtype=np.float32)
        super().__init__(path, n, int(first.shape[1]), first.dtype)

    def _groups(self, start: int, stop: int) -> np.ndarray:
        g0 = int(np.searchsorted(self.group_starts, start, side="right")) - 1
        g1 = int(np.searchsorted(self.group_starts, stop, side="left"))
        table = self.file.read_row_groups(list(range(g0, g1)), columns=[self.column])
        lo = start - int(self.group_starts[g0])
        return list_column_to_array(table.column(0).slice(lo, stop - start), self.path, start)

    def _read(self, start: int, stop: int) -> np.ndarray:
        if start == stop:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._groups(start, stop)
        if out.shape[1] != self.dim:
            raise InvalidInput(
                f"{self.path}: vectors from row {start} have {out.shape[1]} numbers, "
                f"the first has {self.dim}"
            )
        return out


def vector_column(schema: Any, path: str) -> str:
    """The Parquet column holding vectors: the only list-of-numbers column, or one named
    vector/embedding/emb when several exist."""
    import pyarrow as pa

    def is_vector(t: Any) -> bool:
        return (
            pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        ) and (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type))

    found = [f.name for f in schema if is_vector(f.type)]
    if len(found) == 1:
        return found[0]
    for name in ("vector", "embedding", "emb"):
        if name in found:
            return name
    if not found:
        raise InvalidInput(f"{path}: no list-of-numbers column to read vectors from")
    raise InvalidInput(f"{path}: several vector columns ({', '.join(found)}); name one")


def list_column_to_array(col: Any, path: str, first_row: int) -> np.ndarray:
    """A pyarrow list column of equal-length number lists -> [rows, d] array."""
    import pyarrow as pa

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.null_count:
        bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InvalidInput(f"{path}: vector {first_row + bad} is null")
    if pa.types.is_fixed_size_list(col.type):
        d = col.type.list_size
        values = col.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(col), d)
    offsets = col.offsets.to_numpy()
    lengths = np.diff(offsets)
    if len(lengths) and (lengths != lengths[0]).any():
        bad = int(np.flatnonzero(lengths != lengths[0])[0])
        raise InvalidInput(
            f"{path}: vector {first_row + bad} has {int(lengths[bad])} numbers, "
            f"vector {first_row} has {int(lengths[0])}"
        )
    d = int(lengths[0]) if len(lengths) else 0
    values = col.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(col), d)


def open_vectors(path: str, role: str = "base", column: str | None = None) -> VectorSource:
    """Open a vector file of any supported format. `role` picks the HDF5 dataset when the
    path names none (base -> train, queries -> test); `column` the Parquet vector column."""
    file_path, name = split_dataset(str(path))
    suffix = Path(file_path).suffix.lower()
    if suffix in (".fbin", ".fvecs"):
        # The contract's vector formats: linr.io's validated memory maps. (.npy is read here:
        # linr.io takes float arrays only, eval also reads integer vectors and ids.)
        from linr.io.vectors import read_vectors_lazy

        return ArraySource(file_path, read_vectors_lazy(file_path))
    if suffix in BIGANN_DTYPES:
        return open_bigann(file_path)
    if suffix in TEXMEX_DTYPES:
        return open_texmex(file_path)
    if suffix == ".npy":
        return open_npy(file_path)
    if suffix in HDF5_SUFFIXES:
        _file_size(file_path)
        return _HDF5Source(file_path, name or HDF5_ROLES[role])
    if suffix == ".parquet":
        _file_size(file_path)
        return _ParquetSource(file_path, column)
    raise InvalidInput(
        f"{path}: unknown vector file type {suffix or '(none)'!r}; expected one of "
        f"{', '.join(VECTOR_SUFFIXES)}"
    )


def hdf5_metric(path: str) -> str | None:
    """The contract metric named by an ann-benchmarks file's `distance` attribute, if any."""
    import h5py

    file_path, _ = split_dataset(path)
    with h5py.File(file_path, "r") as f:
        distance = _attr_value(f.attrs.get("distance", ""))
    return {
        "angular": "cosine",
        "cosine": "cosine",
        "euclidean": "l2",
        "l2": "l2",
        "dot": "ip",
        "ip": "ip",
    }.get(str(distance).lower())


def read_ground_truth(path: str) -> np.ndarray:
    """Neighbour ids [nq, k] as int64, -1 for padding. Accepts a big-ann ground-truth .ibin
    (uint32 nq, uint32 k, nq*k int32 ids, optionally followed by nq*k float32 distances),
    TEXMEX .ivecs, ann-benchmarks HDF5 (`neighbors`), or an integer .npy."""
    file_path, name = split_dataset(str(path))
    suffix = Path(file_path).suffix.lower()
    if suffix == ".ibin":
        size = _file_size(file_path)
        if size < 8:
            raise InvalidInput(f"{path}: {size} bytes, too short for the 8-byte header (n, k)")
        n, k = (int(v) for v in np.fromfile(file_path, dtype="<u4", count=2))
        if size not in (8 + 4 * n * k, 8 + 8 * n * k):
            raise InvalidInput(
                f"{path}: header says {n} x {k} ids ({8 + 4 * n * k} bytes, or "
                f"{8 + 8 * n * k} with distances) but the file has {size} bytes"
            )
        ids = np.fromfile(file_path, dtype="<i4", count=n * k, offset=8).reshape(n, k)
        return ids.astype(np.int64)
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
