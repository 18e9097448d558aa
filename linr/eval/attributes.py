"""Item attributes and per-query filters, from the files that filtered benchmarks ship.

Attributes (row i of the base set):
    .jsonl      line i is a JSON object (or null); an "id" key is ignored (eval uses row numbers)
    .parquet    every column except the vector column and "id"; a null is an absent field
    .spmat      big-ann CSR matrix of tags (NeurIPS'23 filter track): item i gets the keyword
                field `tag_field` (default "tags") with the values str(tag id) of row i

Query filters (query i):
    .jsonl      line i: a filter in JSON form, a JSON string holding the string form, or
                null / {} for none
    .spmat      the AND of row i's tags: {"field": tag_field, "all": [...]}; no tags, no filter
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from linr.errors import InvalidInput
from linr.io.jsonl import count_records, iter_attributes_jsonl, read_filters_jsonl

Filter = dict[str, Any] | str | None


@dataclass(frozen=True)
class SparseMatrix:
    """CSR rows of tag ids; `data` (the weights) is kept but unused by filters."""

    nrow: int
    ncol: int
    indptr: np.ndarray  # int64 [nrow + 1]
    indices: np.ndarray  # int32 [nnz]
    data: np.ndarray  # float32 [nnz]

    def row(self, i: int) -> np.ndarray:
        return np.asarray(self.indices[self.indptr[i] : self.indptr[i + 1]])


def read_spmat(path: str) -> SparseMatrix:
    """big-ann .spmat: int64 nrow, ncol, nnz; int64 indptr[nrow+1]; int32 indices[nnz];
    float32 data[nnz], little-endian. Memory-mapped."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from e
    if size < 24:
        raise InvalidInput(f"{path}: {size} bytes, too short for the header (nrow, ncol, nnz)")
    nrow, ncol, nnz = (int(v) for v in np.fromfile(path, dtype="<i8", count=3))
    expected = 24 + 8 * (nrow + 1) + 4 * nnz + 4 * nnz
    if min(nrow, ncol, nnz) < 0 or size != expected:
        raise InvalidInput(
            f"{path}: header says {nrow} rows, {ncol} columns, {nnz} non-zeros "
            f"({expected} bytes) but the file has {size} bytes"
        )
    indptr = np.fromfile(path, dtype="<i8", count=nrow + 1, offset=24)
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise InvalidInput(f"{path}: row pointers are not a non-decreasing 0..{nnz} sequence")
    off = 24 + 8 * (nrow + 1)
    indices = (
        np.memmap(path, dtype="<i4", mode="r", offset=off, shape=(nnz,))
        if nnz
        else (np.zeros(0, dtype=np.int32))
    )
    data = (
        np.memmap(path, dtype="<f4", mode="r", offset=off + 4 * nnz, shape=(nnz,))
        if nnz
        else (np.zeros(0, dtype=np.float32))
    )
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= ncol):
        raise InvalidInput(f"{path}: column indices outside [0, {ncol})")
    return SparseMatrix(nrow, ncol, indptr, indices, data)


class AttributeSource(ABC):
    """Attributes of rows [0, n), read in order by `chunks`."""

    n: int
    path: str

    @abstractmethod
    def chunks(
        self, size: int, limit: int | None = None
    ) -> Iterator[list[dict[str, Any] | None]]: ...


class JsonlAttributes(AttributeSource):
    def __init__(self, path: str) -> None:
        self.path = path
        self.n = count_records(path)

    def chunks(self, size: int, limit: int | None = None) -> Iterator[list[dict[str, Any] | None]]:
        n = self.n if limit is None else min(limit, self.n)
        out: list[dict[str, Any] | None] = []
        for i, attrs in enumerate(iter_attributes_jsonl(self.path)):
            if i >= n:
                break
            if attrs is not None:
                attrs.pop("id", None)
            out.append(attrs)
            if len(out) == size:
                yield out
                out = []
        if out:
            yield out


class ParquetAttributes(AttributeSource):
    """Columns other than the vectors (and "id") of a Parquet file; null -> absent field."""

    def __init__(self, path: str, vector_column: str | None = None) -> None:
        import pyarrow.parquet as pq

        from linr.io.columnar import vector_column as find_vector_column

        self.path = path
        self.file = pq.ParquetFile(path)
        schema = self.file.schema_arrow
        vec = vector_column or find_vector_column(schema, path)
        self.columns = [f.name for f in schema if f.name not in (vec, "id")]
        self.n = int(self.file.metadata.num_rows)

    def chunks(self, size: int, limit: int | None = None) -> Iterator[list[dict[str, Any] | None]]:
        n = self.n if limit is None else min(limit, self.n)
        done = 0
        buf: list[dict[str, Any] | None] = []
        if not self.columns:
            for start in range(0, n, size):
                yield [None] * (min(start + size, n) - start)
            return
        for batch in self.file.iter_batches(batch_size=size, columns=self.columns):
            cols = {name: batch.column(name).to_pylist() for name in self.columns}
            for j in range(batch.num_rows):
                if done >= n:
                    break
                item = {c: v[j] for c, v in cols.items() if v[j] is not None}
                buf.append(item or None)
                done += 1
                if len(buf) == size:
                    yield buf
                    buf = []
        if buf:
            yield buf


class SpmatAttributes(AttributeSource):
    """Item tags of a .spmat as one multi-valued keyword field."""

    def __init__(self, path: str, tag_field: str = "tags") -> None:
        self.path = path
        self.matrix = read_spmat(path)
        self.n = self.matrix.nrow
        self.tag_field = tag_field

    def chunks(self, size: int, limit: int | None = None) -> Iterator[list[dict[str, Any] | None]]:
        n = self.n if limit is None else min(limit, self.n)
        m = self.matrix
        for start in range(0, n, size):
            stop = min(start + size, n)
            lo, hi = int(m.indptr[start]), int(m.indptr[stop])
            tags = np.asarray(m.indices[lo:hi]).astype(str).tolist()
            ptr = m.indptr[start : stop + 1] - lo
            yield [
                {self.tag_field: tags[ptr[i] : ptr[i + 1]]} if ptr[i + 1] > ptr[i] else None
                for i in range(stop - start)
            ]


def open_attributes(
    path: str, tag_field: str = "tags", vector_column: str | None = None
) -> AttributeSource:
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl" or suffix == ".json":
        return JsonlAttributes(path)
    if suffix == ".parquet":
        return ParquetAttributes(path, vector_column)
    if suffix == ".spmat":
        return SpmatAttributes(path, tag_field)
    raise InvalidInput(
        f"{path}: unknown attribute file type {suffix!r}; expected .jsonl, .parquet or .spmat"
    )


def parse_filter_arg(text: str) -> Filter:
    """A command-line filter: JSON form when it parses as a JSON object, else string form."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"filter is not valid JSON ({e.msg} at position {e.pos})") from e
        return value or None
    return stripped or None


def read_query_filters(path: str, tag_field: str = "tags") -> list[Filter]:
    """One filter (or None) per query, from JSON Lines or a query .spmat."""
    suffix = Path(path).suffix.lower()
    if suffix == ".spmat":
        m = read_spmat(path)
        out: list[Filter] = []
        for i in range(m.nrow):
            tags = sorted(set(m.row(i).tolist()))
            out.append({"field": tag_field, "all": [str(t) for t in tags]} if tags else None)
        return out
    if suffix not in (".jsonl", ".json"):
        raise InvalidInput(
            f"{path}: unknown filter file type {suffix!r}; expected .jsonl or .spmat"
        )
    # One filter per line up to the last non-blank one (blank or null: no filter).
    return read_filters_jsonl(path)[: count_records(path)]


def filter_key(f: Filter) -> str:
    """A canonical text for a filter, to group queries that share one."""
    if f is None:
        return ""
    if isinstance(f, str):
        return f
    return json.dumps(f, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
