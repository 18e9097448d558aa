"""The batch applier against its plain reference: applying the messages one at a time.

Whatever the batching (runs, collapsed duplicates, bisection around bad items), the index
must end up exactly as if each message had been applied alone, in offset order, and the
same messages must be dead-lettered and counted the same way.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import linr
from ingest.apply import apply
from ingest.messages import Record, decode, encode_delete, encode_upsert
from tests.ingest.oracle import apply_one_by_one, index_state

D = 6


def random_log(rng: np.random.Generator, n: int, versions: str) -> list[Record]:
    """Messages over a few keys, so keys repeat within batches: upserts, deletes (tombstones
    and explicit), and bad ones (bad JSON, attribute kind clashes, id kind clashes)."""
    records = []
    for off in range(n):
        key_id = int(rng.integers(0, 8))
        v: int | None
        value: bytes | None
        if versions == "all":
            v = int(rng.integers(0, 6))
        elif versions == "mixed":
            v = int(rng.integers(0, 6)) if rng.random() < 0.5 else None
        else:
            v = None
        r = rng.random()
        if r < 0.55:
            attrs: dict[str, Any] = {"n": int(rng.integers(0, 100)), "tags": ["a", "b"][: off % 3]}
            if rng.random() < 0.1:
                attrs["n"] = "not an int"  # kind clash once "n" is an int field
            vec = rng.standard_normal(D).astype(np.float32)
            key, value = encode_upsert(key_id, vec, attrs, v, b64=bool(rng.random() < 0.5))
        elif r < 0.7:
            key, value = encode_delete(key_id)  # tombstone
        elif r < 0.85:
            key, value = encode_delete(key_id, v, tombstone=False)
        elif r < 0.92:
            key, value = str(key_id).encode(), b'{"op": "upsert", "id": '  # not JSON
        else:  # a string id in an integer index
            key = str(key_id).encode()
            value = json.dumps({"id": str(key_id), "vector": [0.5] * D}).encode()
        records.append(Record(0, off, key, value, 0))
    return records


@pytest.mark.parametrize("versions", ["none", "all", "mixed"])
@pytest.mark.parametrize("seed", range(6))
def test_batches_equal_one_message_at_a_time(versions: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    records = random_log(rng, 300, versions)
    ref_index = linr.Index(D, device="cpu")
    ref = apply_one_by_one(ref_index, records)

    index = linr.Index(D, device="cpu")
    applied = stale = 0
    rejected: list[int] = []
    pos = 0
    while pos < len(records):  # awkward batch sizes: 1 message up to most of the log
        size = int(rng.choice([1, 2, 7, 50, 250]))
        out = apply(index, batch := decode(records[pos : pos + size], D))
        applied += out.applied
        stale += out.ignored_stale
        rejected += [r.record.offset for r in batch.rejected + out.rejected]
        pos += size
    assert index_state(index) == index_state(ref_index)
    assert sorted(rejected) == ref[2]
    assert (applied, stale) == ref[:2]


def test_bad_attribute_in_a_big_batch_is_isolated() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, D)).astype(np.float32)
    records = [
        Record(0, i, *encode_upsert(i, x[i], {"lang": "en" if i != 617 else 5}))
        for i in range(1000)
    ]
    index = linr.Index(D, device="cpu")
    batch = decode(records, D)
    out = apply(index, batch)
    assert [r.record.offset for r in out.rejected] == [617]
    assert "lang" in out.rejected[0].error
    assert out.applied == 999 and len(index) == 999 and 617 not in index


def test_upsert_then_delete_of_one_key_in_one_batch_keeps_order() -> None:
    v = np.ones(D, np.float32)
    records = [
        Record(0, 0, *encode_upsert(1, v)),
        Record(0, 1, *encode_delete(1)),
        Record(0, 2, *encode_upsert(2, v)),
        Record(0, 3, *encode_delete(2)),
        Record(0, 4, *encode_upsert(2, 2 * v)),
    ]
    index = linr.Index(D, device="cpu")
    out = apply(index, decode(records, D))
    assert 1 not in index
    item = index.get(2)
    assert item is not None and item.vector.tolist() == (2 * v).tolist()
    assert out.applied == 5 and not out.rejected


def test_tombstone_key_of_the_wrong_kind_is_dead_lettered() -> None:
    index = linr.Index(D, device="cpu")
    index.upsert([1], np.ones((1, D)))
    out = apply(index, decode([Record(0, 0, b"abc", None)], D))
    assert len(out.rejected) == 1 and "decimal integer" in out.rejected[0].error
    assert 1 in index


def test_an_error_that_is_not_invalid_input_stops_the_batch_where_it_happened(
    monkeypatch,
) -> None:
    """Only InvalidInput is a message's fault; anything else (a bug, out of memory) stops
    `apply` at the run it hit, nothing of that run dead-lettered: the outcome says how many
    ops are in effect, and the ingester reads the rest again."""
    index = linr.Index(D, device="cpu")
    v = np.ones(D, np.float32)
    records = [
        Record(0, 0, *encode_upsert(0, v)),
        Record(0, 1, b"1", b"not json"),  # dead-lettered by decode: before the failure
        Record(0, 2, *encode_delete(0)),  # second run: its delete goes through
        Record(0, 3, *encode_upsert(0, v)),  # third run: fails
        Record(0, 4, b"4", b"not json either"),
    ]
    real = index.upsert
    calls = 0

    def broken(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("an internal check failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(index, "upsert", broken)
    batch = decode(records, D)
    out = apply(index, batch)
    assert isinstance(out.error, ValueError) and "internal check" in str(out.error)
    assert out.ops_done == 2 and batch.ops[out.ops_done].record.offset == 3
    assert 0 not in index and not out.rejected


def test_a_null_attribute_is_dead_lettered_naming_the_field() -> None:
    index = linr.Index(D, device="cpu")
    v = np.ones(D, np.float32)
    records = [
        Record(0, 0, *encode_upsert(1, v, {"lang": "en"})),
        Record(
            0,
            1,
            b"2",
            json.dumps({"id": 2, "vector": [1.0] * D, "attributes": {"lang": None}}).encode(),
        ),
        Record(0, 2, *encode_upsert(3, v, {"lang": "fr"})),
    ]
    out = apply(index, decode(records, D))
    assert [r.record.offset for r in out.rejected] == [1]
    assert "'lang' is null" in out.rejected[0].error
    assert sorted(index.ids()) == [1, 3]
