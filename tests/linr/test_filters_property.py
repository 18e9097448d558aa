"""Property: the store's tensor mask equals the plain-Python reference on every row.

Random items (every kind, absent and null fields, multi-valued keywords, ints in a float
field, 64-bit edge values), random writes, rewrites and deletes, both keyword storages
(bits and postings, by a random switch threshold), random filters of every operator.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from linr.attributes import AttributeStore, postings
from linr.errors import FilterError
from linr.filters import (
    All,
    And,
    Eq,
    Exists,
    FilterNode,
    In,
    Not,
    Or,
    Range,
    evaluate_reference,
    referenced_fields,
)

# Values chosen to hit the edges: int64 limits, 2**53 (+1 is not a float64), -0.0, tiny
# and huge floats, floats between two ints.
INTS = [0, 1, -1, 7, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 1700000000]
FLOATS = [0.0, -0.0, 0.1, 0.5, 1.5, -2.25, 1e-300, 1e300, 2.0**53, 7.0]
FLOAT_INTS = [0, 7, -3, 2**53]  # ints that a float field stores exactly
WORDS = ["en", "fr", "de", "", "ü", "a b", "x.y", "ml", "gpu", "cpu", "w1", "w2", "w3", "w4"]
OTHER_BOUNDS = [2**63, -(2**63) - 1, 2**64, 0.4, 6.5, 1e308, -1e308, 2**53 + 0.0]
# bounds equal to stored values half the time, so that gt vs gte and lt vs lte matter
BOUNDS = st.one_of(
    st.sampled_from(INTS), st.sampled_from(FLOATS + FLOAT_INTS), st.sampled_from(OTHER_BOUNDS)
)

FIELDS = {"lang": "keyword", "tags": "keyword", "n": "int", "x": "float", "ok": "bool"}

_value = {
    "lang": st.sampled_from(WORDS[:5]),
    "tags": st.one_of(
        st.lists(st.sampled_from(WORDS), max_size=5),  # duplicates and [] included
        st.sampled_from(WORDS),
    ),
    "n": st.sampled_from(INTS),
    "x": st.one_of(st.sampled_from(FLOATS), st.sampled_from(FLOAT_INTS)),
    "ok": st.booleans(),
}


@st.composite
def _item(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in _value.items():
        if draw(st.integers(0, 4)) > 0:  # 0: absent (null is an error: test_attributes.py)
            out[name] = draw(values)
    return out


items = st.one_of(st.none(), _item(), _item(), _item())

_words = st.lists(st.sampled_from([*WORDS, "unseen"]), min_size=1, max_size=3).map(tuple)
_ints = st.lists(st.sampled_from(INTS + [2.0**53, 1.5, 2**64]), min_size=1, max_size=3).map(tuple)
_floats = st.lists(st.sampled_from(FLOATS + FLOAT_INTS + [2**53 + 1]), min_size=1, max_size=3)
_range = st.builds(
    lambda f, b: Range(f, **b),
    st.sampled_from(["n", "x"]),
    st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]), BOUNDS, min_size=1),
)
leaves = st.one_of(
    st.builds(Eq, st.sampled_from(["lang", "tags"]), st.sampled_from([*WORDS, "unseen"])),
    st.builds(In, st.sampled_from(["lang", "tags"]), _words),
    st.builds(All, st.sampled_from(["lang", "tags"]), _words),
    st.builds(Eq, st.just("n"), st.sampled_from(INTS + [1.5, 2.0**53])),
    st.builds(In, st.just("n"), _ints),
    st.builds(All, st.just("n"), _ints),
    st.builds(Eq, st.just("x"), st.sampled_from(FLOATS + FLOAT_INTS + [2**53 + 1])),
    st.builds(In, st.just("x"), _floats.map(tuple)),
    st.builds(Eq, st.just("ok"), st.booleans()),
    st.builds(In, st.just("ok"), st.lists(st.booleans(), min_size=1, max_size=2).map(tuple)),
    st.builds(All, st.just("ok"), st.lists(st.booleans(), min_size=1, max_size=2).map(tuple)),
    _range,  # three times: ranges have the most edge cases
    _range,
    _range,
    st.builds(Exists, st.sampled_from(list(FIELDS)), st.booleans()),
)
filters = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda c: And(tuple(c))),
        st.lists(inner, min_size=1, max_size=3).map(lambda c: Or(tuple(c))),
        inner.map(Not),
    ),
    max_leaves=6,
)


def _leaves_of(f: FilterNode) -> list[FilterNode]:
    if isinstance(f, (And, Or)):
        return [x for c in f.children for x in _leaves_of(c)]
    return _leaves_of(f.child) if isinstance(f, Not) else [f]


def check(store: AttributeStore, expected: list[Any], fs: list[FilterNode], extra: int) -> None:
    cap = len(expected) + extra  # a mask longer than the store: rows past it are empty
    for f in [*fs, *(leaf for g in fs for leaf in _leaves_of(g))]:
        unknown = referenced_fields(f) - set(store.schema)
        if unknown:  # no item has had the field yet and no schema names it
            with pytest.raises(FilterError, match="unknown field"):
                store.mask(f, cap)
            continue
        got = store.mask(f, cap).tolist()
        want = [evaluate_reference(f, a) for a in expected] + [evaluate_reference(f, None)] * extra
        assert got == want, f


@settings(max_examples=120, deadline=None)
@given(
    batch1=st.lists(items, min_size=4, max_size=30),
    batch2=st.lists(items, max_size=10),
    deletes=st.lists(st.integers(0, 39), max_size=6),
    fs=st.lists(filters, min_size=1, max_size=8),
    threshold=st.sampled_from([0, 2, 5, 256]),
    schema=st.booleans(),
    data=st.data(),
)
def test_mask_equals_reference(
    batch1: list[Any],
    batch2: list[Any],
    deletes: list[int],
    fs: list[FilterNode],
    threshold: int,
    schema: bool,
    data: st.DataObject,
) -> None:
    # without a schema kinds are inferred; x's first value may be an int, so fix x only
    fixed = FIELDS if schema else {"x": "float"}
    store = AttributeStore("cpu", fixed, bitmap_max_values=threshold)
    cap = 40
    store.grow(len(batch1))
    store.write(torch.arange(len(batch1)), store.prepare(batch1))
    expected: list[Any] = list(batch1)
    # no value of the wrong kind was drawn, so every field has its FIELDS kind
    store.grow(cap)
    expected += [None] * (cap - len(batch1))
    check(store, expected, fs, extra=3)

    # rewrite some rows (old values must stop matching), write new ones, delete others
    rows = data.draw(
        st.lists(st.integers(0, cap - 1), min_size=len(batch2), max_size=len(batch2), unique=True)
    )
    store.write(torch.tensor(rows, dtype=torch.int64), store.prepare(batch2))
    for r, a in zip(rows, batch2):
        expected[r] = a
    store.clear(torch.tensor(deletes, dtype=torch.int64))
    for r in deletes:
        expected[r] = None
    check(store, expected, fs, extra=0)

    tensors, meta = store.state_dict()
    check(AttributeStore.from_state(tensors, meta, torch.device("cpu")), expected, fs, extra=1)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.lists(items, min_size=1, max_size=12), min_size=2, max_size=6),
    fs=st.lists(filters, min_size=1, max_size=6),
    data=st.data(),
)
def test_many_rewrites_with_postings(
    batches: list[list[Any]], fs: list[FilterNode], data: st.DataObject
) -> None:
    """Repeated rewrites of the same few rows: stale posting entries pile up and get
    compacted (thresholds lowered so that it happens at this size), and must never match."""
    with (
        patch.object(postings, "_COMPACT_MIN_DEAD", 1),
        patch.object(postings, "_ARENA_MIN_GARBAGE", 0),
    ):
        _rewrites(batches, fs, data)


def _rewrites(batches: list[list[Any]], fs: list[FilterNode], data: st.DataObject) -> None:
    store = AttributeStore("cpu", FIELDS, bitmap_max_values=0)
    cap = 12
    store.grow(cap)
    expected: list[Any] = [None] * cap
    for batch in batches:
        rows = data.draw(st.permutations(range(cap)))[: len(batch)]
        store.write(torch.tensor(rows, dtype=torch.int64), store.prepare(batch))
        for r, a in zip(rows, batch):
            expected[r] = a
        check(store, expected, fs, extra=0)
