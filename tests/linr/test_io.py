"""linr.io against files written independently here (struct, numpy tofile), and every kind of
broken file: each must be an InvalidInput naming the file and the problem."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from linr.errors import InvalidInput
from linr.io import (
    iter_attributes_jsonl,
    iter_item_batches,
    iter_vector_chunks,
    read_filters_jsonl,
    read_ibin,
    read_ids,
    read_vectors,
    vector_file_shape,
    write_fbin,
    write_fvecs,
    write_ibin,
)


def _fbin_by_hand(path: Path, x: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<II", *x.shape))
        x.astype("<f4").tofile(f)


def _fvecs_by_hand(path: Path, x: np.ndarray) -> None:
    with open(path, "wb") as f:
        for row in x:
            f.write(struct.pack("<i", len(row)))
            f.write(struct.pack(f"<{len(row)}f", *row.tolist()))


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (130, 33)])
@pytest.mark.parametrize("fmt", ["fbin", "fvecs", "npy32", "npy16"])
def test_read_vectors_matches_independent_writer(tmp_path, rng, fmt, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    path = tmp_path / f"v.{fmt[:3] if fmt.startswith('npy') else fmt}"
    if fmt == "fbin":
        _fbin_by_hand(path, x)
    elif fmt == "fvecs":
        _fvecs_by_hand(path, x)
    elif fmt == "npy32":
        np.save(path, x)
    else:
        x = x.astype(np.float16).astype(np.float32)  # exactly representable after the cast
        np.save(path, x.astype(np.float16))
    got = read_vectors(path)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(got, x)
    assert vector_file_shape(path) == shape
    # Chunks: contiguous float32, in order, sizes that do not divide n.
    chunks = list(iter_vector_chunks(path, 4))
    assert all(c.flags.c_contiguous and c.dtype == np.float32 for c in chunks)
    assert [len(c) for c in chunks][:-1] == [4] * (len(chunks) - 1)
    np.testing.assert_array_equal(np.concatenate(chunks), x)


def test_read_vectors_is_a_writable_map_that_never_changes_the_file(tmp_path, rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    path = tmp_path / "v.fbin"
    _fbin_by_hand(path, x)
    before = path.read_bytes()
    got = read_vectors(path)
    assert isinstance(got, np.memmap)
    got[0, 0] = 123.0  # copy-on-write: allowed, private
    del got
    assert path.read_bytes() == before


def test_npy_fortran_order_big_endian_and_float64(tmp_path, rng):
    x = rng.standard_normal((6, 5))
    np.save(tmp_path / "f.npy", np.asfortranarray(x.astype(np.float32)))
    np.save(tmp_path / "b.npy", x.astype(">f4"))
    np.save(tmp_path / "d.npy", x)
    for name in ("f.npy", "b.npy", "d.npy"):
        got = read_vectors(tmp_path / name)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, x.astype(np.float32))


def test_writers_round_trip(tmp_path, rng):
    x = rng.standard_normal((9, 17)).astype(np.float32)
    write_fbin(tmp_path / "a.fbin", x)
    write_fvecs(tmp_path / "a.fvecs", x)
    # Byte-exact against the hand-written layout.
    _fbin_by_hand(tmp_path / "b.fbin", x)
    _fvecs_by_hand(tmp_path / "b.fvecs", x)
    assert (tmp_path / "a.fbin").read_bytes() == (tmp_path / "b.fbin").read_bytes()
    assert (tmp_path / "a.fvecs").read_bytes() == (tmp_path / "b.fvecs").read_bytes()


def test_empty_fbin_keeps_its_dimension(tmp_path):
    (tmp_path / "e.fbin").write_bytes(struct.pack("<II", 0, 12))
    assert read_vectors(tmp_path / "e.fbin").shape == (0, 12)


def _expect(path, *words):
    with pytest.raises(InvalidInput) as e:
        read_vectors(path)
    msg = str(e.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_broken_fbin(tmp_path):
    p = tmp_path / "x.fbin"
    p.write_bytes(b"\x01\x00")
    _expect(p, "truncated", "header")
    p.write_bytes(struct.pack("<II", 3, 4) + b"\0" * (4 * 11))
    _expect(p, "truncated", "3 x 4")
    p.write_bytes(struct.pack("<II", 3, 4) + b"\0" * (4 * 12 + 2))
    _expect(p, "2 unexpected trailing bytes")
    p.write_bytes(struct.pack("<II", 3, 0))
    _expect(p, "dimension 0")


def test_broken_fvecs(tmp_path):
    p = tmp_path / "x.fvecs"
    p.write_bytes(b"")
    _expect(p, "empty")
    x = np.ones((3, 4), np.float32)
    _fvecs_by_hand(p, x)
    p.write_bytes(p.read_bytes()[:-3])
    _expect(p, "truncated", "dimension 4")
    # Records of different dimensions: 4, then 5 (sizes chosen so the total is a multiple of
    # the first record's size, so only the per-record check can catch it).
    p.write_bytes(struct.pack("<i4f", 4, 1, 2, 3, 4) + struct.pack("<i4f", 5, 1, 2, 3, 4))
    _expect(p, "record 1 has dimension 5", "first record has 4")
    p.write_bytes(struct.pack("<i", -3) + b"\0" * 12)
    _expect(p, "dimension -3")


def test_broken_npy(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((2, 3, 4), np.float32))
    _expect(p, "2-D", "(2, 3, 4)")
    np.save(p, np.zeros(5, np.float32))
    _expect(p, "2-D")
    np.save(p, np.zeros((2, 3), np.int32))
    _expect(p, "int32")
    np.save(p, np.zeros((4, 3), np.float32))
    p.write_bytes(p.read_bytes()[:-5])
    _expect(p, "not a readable .npy")
    p.write_bytes(b"not numpy at all")
    _expect(p, "not a readable .npy")


def test_unknown_suffix_and_missing_file(tmp_path):
    _expect(tmp_path / "v.csv", "unknown vector file type", ".csv")
    with pytest.raises(FileNotFoundError):
        read_vectors(tmp_path / "missing.fbin")


def test_ibin_round_trip_and_limits(tmp_path, rng):
    ids = rng.integers(-1, 2**31 - 1, size=(5, 7))
    write_ibin(tmp_path / "r.ibin", ids)
    raw = (tmp_path / "r.ibin").read_bytes()
    assert struct.unpack("<II", raw[:8]) == (5, 7)
    np.testing.assert_array_equal(np.frombuffer(raw[8:], "<i4").reshape(5, 7), ids)
    np.testing.assert_array_equal(read_ibin(tmp_path / "r.ibin"), ids)
    with pytest.raises(InvalidInput, match="2\\^31"):
        write_ibin(tmp_path / "r.ibin", np.array([[2**31]]))
    with pytest.raises(InvalidInput, match="-2"):
        write_ibin(tmp_path / "r.ibin", np.array([[-2]]))
    (tmp_path / "t.ibin").write_bytes(raw[:-1])
    with pytest.raises(InvalidInput, match="truncated"):
        read_ibin(tmp_path / "t.ibin")


def test_read_ids(tmp_path):
    p = tmp_path / "ids.txt"
    p.write_text("5\n0\n9223372036854775807\n")
    got = read_ids(p)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    assert got.tolist() == [5, 0, 2**63 - 1]
    p.write_text("5\r\n7\r\n")
    assert read_ids(p).tolist() == [5, 7]
    p.write_text("5\nseven\nnaïve\n")  # one non-integer line: every id is a string
    assert read_ids(p) == ["5", "seven", "naïve"]
    p.write_text("1\n9223372036854775808\n")
    with pytest.raises(InvalidInput, match="line 2.*2\\^63"):
        read_ids(p)
    p.write_text("1\n-2\n3\n")  # integers, one negative: an error, not string ids
    with pytest.raises(InvalidInput, match="line 2: id -2 is negative"):
        read_ids(p)
    p.write_text("1\n-2\nthree\n")  # not all integers: strings, "-2" among them
    assert read_ids(p) == ["1", "-2", "three"]
    p.write_text("1\n\n3\n")
    with pytest.raises(InvalidInput, match="line 2: empty id"):
        read_ids(p)
    p.write_text("a\n" + "x" * 257 + "\n")
    with pytest.raises(InvalidInput, match="line 2.*257"):
        read_ids(p)
    p.write_bytes(b"a\nb\xff\n")
    with pytest.raises(InvalidInput, match="line 2.*UTF-8"):
        read_ids(p)


def test_attributes_and_filters_jsonl(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"lang": "en"}\n\nnull\n{"id": 3, "ts": 5}\n')
    assert list(iter_attributes_jsonl(p)) == [{"lang": "en"}, None, None, {"id": 3, "ts": 5}]
    p.write_text('{"lang": "en"}\n{"lang": \n')
    with pytest.raises(InvalidInput, match=r"a\.jsonl line 2: invalid JSON"):
        list(iter_attributes_jsonl(p))
    p.write_text('{"lang": "en"}\n[1, 2]\n')
    with pytest.raises(InvalidInput, match="line 2: expected a JSON object"):
        list(iter_attributes_jsonl(p))
    p.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(InvalidInput, match="line 2: invalid JSON"):
        list(iter_attributes_jsonl(p))

    f = tmp_path / "f.jsonl"
    f.write_text('{"field": "lang", "eq": "en"}\nnull\n{}\n"ts >= 3"\n\n')
    assert read_filters_jsonl(f) == [{"field": "lang", "eq": "en"}, None, None, "ts >= 3", None]
    f.write_text("null\n42\n")
    with pytest.raises(InvalidInput, match="line 2: expected a filter"):
        read_filters_jsonl(f)


def _items(tmp_path, n=10, d=3, attrs=None, ids=None, batch=4):
    x = np.arange(n * d, dtype=np.float32).reshape(n, d)
    _fbin_by_hand(tmp_path / "v.fbin", x)
    a = i = None
    if attrs is not None:
        a = tmp_path / "a.jsonl"
        a.write_text(attrs)
    if ids is not None:
        i = tmp_path / "ids.txt"
        i.write_text(ids)
    batches = list(iter_item_batches(tmp_path / "v.fbin", a, i, batch_rows=batch))
    got_x = np.concatenate([b.vectors for b in batches])
    np.testing.assert_array_equal(got_x, x)
    assert [b.start for b in batches] == list(range(0, n, batch))
    all_ids = [v for b in batches for v in list(b.ids)]
    all_attrs = None if attrs is None else [v for b in batches for v in b.attributes]
    return all_ids, all_attrs


def test_item_batches_ids_from_rows_file_and_attributes(tmp_path):
    ids, attrs = _items(tmp_path)
    assert ids == list(range(10)) and attrs is None
    lines = "".join(json.dumps({"id": 100 + r, "g": r % 2}) + "\n" for r in range(10))
    ids, attrs = _items(tmp_path, attrs=lines)
    assert ids == list(range(100, 110))
    assert attrs == [{"g": r % 2} for r in range(10)]
    # --ids wins; the "id" key is then dropped, not kept as an attribute.
    ids, attrs = _items(tmp_path, attrs=lines, ids="".join(f"k{r}\n" for r in range(10)))
    assert ids == [f"k{r}" for r in range(10)]
    assert attrs == [{"g": r % 2} for r in range(10)]
    # No "id" key: row numbers; blank lines and {} are "no attributes"; trailing blanks ok.
    lines = '{"g": 1}\n\n{}\n' + '{"g": 2}\n' * 7 + "\n\n"
    ids, attrs = _items(tmp_path, attrs=lines)
    assert ids == list(range(10))
    assert attrs == [{"g": 1}, None, None] + [{"g": 2}] * 7
    lines = "".join(json.dumps({"id": f"s{r}"}) + "\n" for r in range(10))
    ids, attrs = _items(tmp_path, attrs=lines)
    assert ids == [f"s{r}" for r in range(10)] and attrs == [None] * 10


@pytest.mark.parametrize(
    ("attrs", "ids", "message"),
    [
        ('{"a": 1}\n' * 9, None, "has 9 lines but .* has 10 vectors"),
        ('{"a": 1}\n' * 11, None, "line 11 has attributes but .* only 10 vectors"),
        (None, "1\n2\n", "has 2 ids but .* has 10 vectors"),
        ('{"id": 1}\n' + '{"a": 1}\n' * 9, None, 'line 2 has no "id" but line 1 does'),
        ('{"a": 1}\n' * 5 + '{"id": 1}\n' * 5, None, 'line 6 has an "id" but line 1 does not'),
        ('{"id": 1}\n' * 5 + '{"id": "x"}\n' * 5, None, "line 6: id 'x' is not an integer"),
        ('{"id": "a"}\n' * 5 + '{"id": 5}\n' * 5, None, "line 6: id 5 is not a string"),
        ('{"id": 1.5}\n' * 10, None, "line 1: id 1.5 is not an integer"),
        ('{"id": true}\n' * 10, None, "line 1: id True is not an integer"),
        ('{"id": -1}\n' * 10, None, "line 1: id -1 is out of range"),
        ('{"id": ""}\n' * 10, None, "line 1: string id '' must have 1 to 256"),
    ],
)
def test_item_batches_errors(tmp_path, attrs, ids, message):
    with pytest.raises(InvalidInput, match=message):
        _items(tmp_path, attrs=attrs, ids=ids)


def test_item_batches_reject_nan_with_its_row(tmp_path):
    x = np.ones((6, 2), np.float32)
    x[4, 1] = np.nan
    _fbin_by_hand(tmp_path / "v.fbin", x)
    with pytest.raises(InvalidInput, match="row 4 has NaN"):
        list(iter_item_batches(tmp_path / "v.fbin", batch_rows=4))
