"""Readers against files written here by independent writers (numpy, h5py, pyarrow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linr.errors import InvalidInput
from linr.eval.attributes import (
    JsonlAttributes,
    ParquetAttributes,
    SpmatAttributes,
    filter_key,
    open_attributes,
    parse_filter_arg,
    read_query_filters,
    read_spmat,
)
from linr.io import open_vectors, read_ground_truth
from linr.io.columnar import hdf5_metric

RNG = np.random.default_rng(5)


def _bigann(path: Path, x: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.array(x.shape, dtype="<u4").tofile(f)
        x.astype(x.dtype.newbyteorder("<")).tofile(f)


def _texmex(path: Path, x: np.ndarray) -> None:
    with open(path, "wb") as f:
        for row in x:
            np.array([x.shape[1]], dtype="<i4").tofile(f)
            row.tofile(f)


@pytest.mark.parametrize(
    "suffix,dtype",
    [(".fbin", np.float32), (".u8bin", np.uint8), (".i8bin", np.int8), (".ibin", np.int32)],
)
def test_bigann_formats(tmp_path: Path, suffix: str, dtype: type) -> None:
    x: np.ndarray = (RNG.standard_normal((37, 13)) * 50).astype(dtype)
    _bigann(tmp_path / f"v{suffix}", x)
    src = open_vectors(str(tmp_path / f"v{suffix}"))
    assert src.shape == (37, 13)
    np.testing.assert_array_equal(src.read(), x.astype(np.float32))
    np.testing.assert_array_equal(src.read(5, 9), x[5:9].astype(np.float32))
    got = np.concatenate([c for _, c in src.chunks(10)])
    np.testing.assert_array_equal(got, x.astype(np.float32))


def test_bigann_size_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "v.u8bin"
    _bigann(p, np.zeros((4, 3), np.uint8))
    with open(p, "ab") as f:
        f.write(b"\0")
    with pytest.raises(InvalidInput, match="1 unexpected trailing bytes: .* 4 x 3 uint8"):
        open_vectors(str(p))


@pytest.mark.parametrize(
    "suffix,dtype", [(".fvecs", np.float32), (".bvecs", np.uint8), (".ivecs", np.int32)]
)
def test_texmex_formats(tmp_path: Path, suffix: str, dtype: type) -> None:
    x: np.ndarray = (RNG.standard_normal((11, 7)) * 30).astype(dtype)
    _texmex(tmp_path / f"v{suffix}", x)
    src = open_vectors(str(tmp_path / f"v{suffix}"))
    assert src.shape == (11, 7)
    np.testing.assert_array_equal(src.read(), x.astype(np.float32))
    np.testing.assert_array_equal(src.read(3, 4), x[3:4].astype(np.float32))


def test_texmex_inconsistent_dimension(tmp_path: Path) -> None:
    p = tmp_path / "v.bvecs"
    with open(p, "wb") as f:
        for d in (4, 4, 2, 6):  # 4 records of 8 bytes, the third declares 2
            np.array([d], "<i4").tofile(f)
            np.zeros(4, np.uint8).tofile(f)
    with pytest.raises(InvalidInput, match="record 2 has dimension 2, the first record has 4"):
        open_vectors(str(p))


def test_npy_and_take(tmp_path: Path) -> None:
    x = RNG.integers(0, 255, (50, 6)).astype(np.uint8)
    np.save(tmp_path / "v.npy", x)
    src = open_vectors(str(tmp_path / "v.npy"))
    rows = np.array([[49, 0, 7], [7, 7, 3]])
    np.testing.assert_array_equal(src.take(rows), x[rows].astype(np.float32))
    with pytest.raises(InvalidInput, match="2-D"):
        np.save(tmp_path / "bad.npy", np.zeros(3))
        open_vectors(str(tmp_path / "bad.npy"))


def test_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("1,2\n")
    with pytest.raises(InvalidInput, match="unknown vector file type '.csv'"):
        open_vectors(str(tmp_path / "v.csv"))


def test_hdf5_ann_benchmarks(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    train = RNG.standard_normal((40, 5)).astype(np.float32)
    test = RNG.standard_normal((6, 5)).astype(np.float32)
    neighbors = RNG.integers(0, 40, (6, 10)).astype(np.int32)
    p = tmp_path / "glove.hdf5"
    with h5py.File(p, "w") as f:
        f.attrs["distance"] = "angular"
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=neighbors)
        f.create_dataset("distances", data=np.zeros((6, 10), np.float32))
    np.testing.assert_array_equal(open_vectors(str(p)).read(), train)
    np.testing.assert_array_equal(open_vectors(str(p), role="queries").read(2, 5), test[2:5])
    np.testing.assert_array_equal(open_vectors(f"{p}:test").read(), test)
    np.testing.assert_array_equal(read_ground_truth(str(p)), neighbors.astype(np.int64))
    assert hdf5_metric(str(p)) == "cosine"
    with pytest.raises(InvalidInput, match="no dataset 'nope'"):
        open_vectors(f"{p}:nope")


def test_parquet_vectors_and_attributes(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = RNG.standard_normal((23, 4)).astype(np.float32)
    langs = ["en", None, "fr"] * 7 + ["de", "en"]
    table = pa.table(
        {
            "id": list(range(23)),
            "emb": pa.array(x.tolist(), type=pa.list_(pa.float32())),
            "lang": langs,
            "ts": list(range(100, 123)),
            "tags": [["a", "b"] if i % 2 else [] for i in range(23)],
        }
    )
    p = tmp_path / "items.parquet"
    pq.write_table(table, p, row_group_size=5)  # reads must cross row groups
    src = open_vectors(str(p))
    assert src.shape == (23, 4)
    np.testing.assert_array_equal(src.read(), x)
    np.testing.assert_array_equal(src.read(3, 17), x[3:17])
    rows = np.array([[22, 0, 5], [5, 5, 13]])  # repeated, unsorted, across row groups
    np.testing.assert_array_equal(src.take(rows), x[rows])
    attrs = [a for chunk in ParquetAttributes(str(p)).chunks(6) for a in chunk]
    assert len(attrs) == 23
    assert attrs[0] == {"lang": "en", "ts": 100, "tags": []}
    assert attrs[1] == {"ts": 101, "tags": ["a", "b"]}  # null lang -> absent
    assert attrs[5] is not None and "id" not in attrs[5] and "emb" not in attrs[5]


def test_parquet_fixed_size_list_and_ragged(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = RNG.standard_normal((9, 3)).astype(np.float32)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 3)
    pq.write_table(pa.table({"vector": fixed}), tmp_path / "f.parquet")
    np.testing.assert_array_equal(open_vectors(str(tmp_path / "f.parquet")).read(), x)
    pq.write_table(pa.table({"v": [[1.0, 2.0], [1.0]]}), tmp_path / "r.parquet")
    with pytest.raises(InvalidInput, match="vector 1 has 1 numbers"):
        open_vectors(str(tmp_path / "r.parquet")).read()


def _write_spmat(path: Path, rows: list[list[int]], ncol: int) -> None:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype("<i8")
    indices = np.array([c for r in rows for c in r], dtype="<i4")
    with open(path, "wb") as f:
        np.array([len(rows), ncol, len(indices)], dtype="<i8").tofile(f)
        indptr.tofile(f)
        indices.tofile(f)
        np.ones(len(indices), dtype="<f4").tofile(f)


def test_spmat_items_and_queries(tmp_path: Path) -> None:
    rows = [[3, 1], [], [7], [0, 1, 2]]
    _write_spmat(tmp_path / "items.spmat", rows, 8)
    m = read_spmat(str(tmp_path / "items.spmat"))
    assert (m.nrow, m.ncol) == (4, 8)
    assert m.row(3).tolist() == [0, 1, 2]
    attrs = [a for c in SpmatAttributes(str(tmp_path / "items.spmat"), "t").chunks(3) for a in c]
    assert attrs == [{"t": ["3", "1"]}, None, {"t": ["7"]}, {"t": ["0", "1", "2"]}]
    filters = read_query_filters(str(tmp_path / "items.spmat"), "t")
    assert filters[0] == {"field": "t", "all": ["1", "3"]}
    assert filters[1] is None
    (tmp_path / "bad.spmat").write_bytes(np.array([2, 2, 5], "<i8").tobytes())
    with pytest.raises(InvalidInput, match="header says 2 rows"):
        read_spmat(str(tmp_path / "bad.spmat"))


def test_jsonl_attributes_and_filters(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text('{"id": 9, "lang": "en"}\nnull\n{"ts": 3}\n\n')
    src = open_attributes(str(p))
    assert isinstance(src, JsonlAttributes) and src.n == 3
    assert [a for c in src.chunks(2) for a in c] == [{"lang": "en"}, None, {"ts": 3}]
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InvalidInput, match="line 2: expected a JSON object of attributes"):
        list(open_attributes(str(p)).chunks(10))
    q = tmp_path / "qf.jsonl"
    lines = [{"field": "lang", "eq": "en"}, None, {}, 'ts >= 3 and lang == "en"']
    q.write_text("\n".join(json.dumps(v) for v in lines) + "\n")
    assert read_query_filters(str(q)) == [lines[0], None, None, lines[3]]
    assert filter_key({"eq": 1, "field": "a"}) == filter_key({"field": "a", "eq": 1})
    assert parse_filter_arg('{"field": "a", "eq": 1}') == {"field": "a", "eq": 1}
    assert parse_filter_arg('a == "x"') == 'a == "x"'


def test_ground_truth_files(tmp_path: Path) -> None:
    ids = RNG.integers(-1, 1000, (5, 4)).astype(np.int32)
    for with_dist in (False, True):
        p = tmp_path / f"gt{with_dist}.ibin"
        with open(p, "wb") as f:
            np.array([5, 4], "<u4").tofile(f)
            ids.astype("<i4").tofile(f)
            if with_dist:
                np.zeros(20, "<f4").tofile(f)
        np.testing.assert_array_equal(read_ground_truth(str(p)), ids)
    _texmex(tmp_path / "gt.ivecs", np.maximum(ids, 0))
    np.testing.assert_array_equal(read_ground_truth(str(tmp_path / "gt.ivecs")), np.maximum(ids, 0))
    np.save(tmp_path / "gt.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(InvalidInput, match="must be integers"):
        read_ground_truth(str(tmp_path / "gt.npy"))
