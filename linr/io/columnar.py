"""Vectors in columnar containers: HDF5 datasets (ann-benchmarks) and a Parquet list column.
h5py and pyarrow (the `eval` extra) are imported here only, when such a file is opened."""

from __future__ import annotations

from typing import Any

import numpy as np

from linr.errors import InvalidInput
from linr.io.source import VectorSource, split_dataset


class HDF5Source(VectorSource):
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


class ParquetSource(VectorSource):
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


def hdf5_metric(path: str) -> str | None:
    """The linr metric named by an ann-benchmarks file's `distance` attribute, if any."""
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
