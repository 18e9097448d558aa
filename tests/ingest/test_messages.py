"""Message decoding: the format of docs/ingest.md, and a clear reason for every bad message."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from ingest.messages import (
    BadMessage,
    Record,
    decode,
    encode_delete,
    encode_upsert,
    id_from_key,
)

D = 5


def rec(key: bytes | None, value: bytes | None | dict, offset: int = 0) -> Record:
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    return Record(0, offset, key, value, 1000)


def b64(v: Any) -> str:
    return base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()


def test_b64_and_list_decode_to_the_same_float32_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, D)).astype(np.float32)
    records = []
    for i in range(7):  # alternate encodings, so both land interleaved in one matrix
        key, value = encode_upsert(i, x[i], {"n": i}, version=i, b64=i % 2 == 0)
        records.append(Record(0, i, key, value))
    out = decode(records, D)
    assert not out.rejected
    assert [op.id for op in out.ops] == list(range(7))
    assert [op.version for op in out.ops] == list(range(7))
    assert [op.attributes for op in out.ops] == [{"n": i} for i in range(7)]
    np.testing.assert_array_equal(out.vectors[[op.row for op in out.ops]], x)


def test_tombstones_and_deletes() -> None:
    out = decode(
        [
            rec(*encode_delete(3)),
            rec(*encode_delete("a", version=4), offset=1),
            rec(b"9", {"op": "delete"}, offset=2),
        ],
        D,
    )
    assert not out.rejected
    kinds = [(op.kind, op.id, op.key, op.version) for op in out.ops]
    # A tombstone's id is read from its key when applied (it depends on the index's id kind).
    assert kinds == [
        ("delete", None, b"3", None),
        ("delete", "a", b"a", 4),
        ("delete", None, b"9", None),
    ]


def test_string_ids_and_unicode_keys() -> None:
    v = np.ones(D, np.float32)
    key, value = encode_upsert("héllo", v)
    assert key == "héllo".encode()
    out = decode([Record(0, 0, key, value)], D)
    assert out.ops[0].id == "héllo" and not out.rejected


BAD = [
    (b"x", b"{not json", "not JSON"),
    (b"x", b"\xff\xfe", "not JSON"),
    (b"1", b"[1, 2]", "must be a JSON object"),
    (b"1", {"op": "merge", "id": 1}, "unknown op 'merge'"),
    (b"2", {"id": 1, "vector": [0.0] * D}, "disagree"),
    (b"01", {"id": 1, "vector": [0.0] * D}, "disagree"),
    (None, {"vector": [0.0] * D}, "neither a key nor an 'id'"),
    (None, None, "needs a key"),
    (b"1", {"id": True, "vector": [0.0] * D}, "neither an integer nor a string"),
    (b"-1", {"id": -1, "vector": [0.0] * D}, "out of range"),
    (b"", {"id": "", "vector": [0.0] * D}, "1 to 256"),
    (b"1", {"id": 1, "vector": [0.0] * (D + 1)}, f"dimension {D + 1}; the index expects {D}"),
    (b"1", {"id": 1, "vector": [0.0] * (D - 1) + [True]}, "not a number"),
    (b"1", {"id": 1, "vector": [0.0] * (D - 1) + ["0.5"]}, "not a number"),
    (b"1", {"id": 1, "vector": [0.0] * (D - 1) + [None]}, "not a number"),
    (b"1", {"id": 1, "vector": "1,2,3"}, "JSON list"),
    (b"1", {"id": 1}, "exactly one of"),
    (b"1", {"id": 1, "vector": [0.0] * D, "vector_b64": "AAAA"}, "exactly one of"),
    (b"1", {"id": 1, "vector_b64": "!!!"}, "not valid base64"),
    (b"1", {"id": 1, "vector_b64": b64(np.zeros(D + 2))}, f"expects dimension {D}"),
    (b"1", {"id": 1, "vector_b64": b64([0, 0, np.nan, 0, 0])}, "NaN or infinite"),
    (b"1", {"id": 1, "vector": [0.0, float("inf"), 0, 0, 0]}, "NaN or infinite"),
    (b"1", b'{"id": 1, "vector": [0, 0, NaN, 0, 0]}', "NaN or infinite"),
    (b"1", {"id": 1, "vector": [1e39, 0, 0, 0, 0]}, "NaN or infinite"),  # float32 overflow
    (b"1", {"id": 1, "vector": [10**400, 0, 0, 0, 0]}, "too large"),
    (b"1", {"id": 1, "vector": [0.0] * D, "version": 1.5}, "version 1.5 is not an integer"),
    (b"1", {"id": 1, "vector": [0.0] * D, "version": 2**63}, "does not fit in 64 bits"),
    (b"1", {"id": 1, "vector": [0.0] * D, "attributes": [1]}, "attributes must be a JSON"),
]


@pytest.mark.parametrize(("key", "value", "error"), BAD)
def test_bad_message_is_rejected_with_its_reason_and_neighbours_survive(
    key: bytes | None, value: bytes | dict | None, error: str
) -> None:
    good_a = rec(*encode_upsert(100, np.ones(D)), offset=0)
    bad = rec(key, value, offset=1)
    good_b = rec(*encode_upsert(101, np.full(D, 2.0), b64=False), offset=2)
    out = decode([good_a, bad, good_b], D)
    assert [r.record.offset for r in out.rejected] == [1]
    assert error in out.rejected[0].error, out.rejected[0].error
    assert [op.id for op in out.ops] == [100, 101]
    np.testing.assert_array_equal(out.vectors[out.ops[1].row], np.full(D, 2.0))


def test_missing_op_means_upsert_and_unknown_fields_are_ignored() -> None:
    out = decode([rec(b"4", {"id": 4, "vector": [1] * D, "source": "x"})], D)
    assert out.ops[0].kind == "upsert" and not out.rejected


@pytest.mark.parametrize(
    ("key", "kind", "expected"),
    [
        (b"7", None, 7),
        (b"7", "int", 7),
        (b"7", "str", "7"),
        (b"007", None, "007"),
        (b"abc", None, "abc"),
        (b"abc", "str", "abc"),
    ],
)
def test_id_from_key(key: bytes, kind: str | None, expected: int | str) -> None:
    assert id_from_key(key, kind) == expected


@pytest.mark.parametrize(
    ("key", "kind"), [(b"abc", "int"), (b"007", "int"), (b"\xff", None), (b"9" * 30, "int")]
)
def test_id_from_bad_key(key: bytes, kind: str | None) -> None:
    with pytest.raises(BadMessage):
        id_from_key(key, kind)


def test_values_that_are_json_only_when_joined_are_each_rejected() -> None:
    """The batch parser scans values out of one joined string; a value must parse exactly
    to its own end, so fragments that would combine into JSON are not glued together."""
    out = decode([rec(b"1", b"1,2"), rec(b"2", b'"x', 1), rec(b"3", b'y"', 2)], D)
    assert [r.record.offset for r in out.rejected] == [0, 1, 2]
    assert all("not JSON" in r.error for r in out.rejected)


def test_whitespace_unicode_and_deep_nesting() -> None:
    v = [0.5] * D
    padded = b"  " + json.dumps({"id": 1, "vector": v}).encode() + b"\n"
    uni = json.dumps({"id": "ß", "vector": v}, ensure_ascii=False).encode()
    deep = b"[" * 100_000 + b"]" * 100_000
    out = decode([rec(b"1", padded), rec("ß".encode(), uni, 1), rec(b"2", deep, 2)], D)
    assert [op.id for op in out.ops] == [1, "ß"]
    assert [r.record.offset for r in out.rejected] == [2]
