"""AttributeStore: kinds and their errors, writes, clears, growth, exact numeric bounds,
the bitmap -> postings switch, and the state round trip."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from linr.attributes import AttributeStore
from linr.errors import FilterError, InvalidInput
from linr.filters import Eq, Range, evaluate_reference, parse_filter


def make(items: list[Any], **kw: Any) -> AttributeStore:
    store = AttributeStore("cpu", **kw)
    store.grow(len(items))
    store.write(torch.arange(len(items)), store.prepare(items))
    return store


def rows(store: AttributeStore, f: str, capacity: int | None = None) -> list[int]:
    node = parse_filter(f)
    m = store.mask(node, store.capacity if capacity is None else capacity)
    assert m.dtype == torch.bool
    return torch.nonzero(m).flatten().tolist()


# ---- kinds and get -----------------------------------------------------------------------
def test_kinds_are_inferred_and_get_returns_the_values() -> None:
    items: list[Any] = [
        {"lang": "en", "tags": ["ml", "gpu", "ml"], "ts": 1700000000, "x": 0.25, "ok": True},
        {"lang": "fr", "tags": [], "x": 3, "ok": False},
        None,
        {},
    ]
    store = make(items, schema={"x": "float"})
    assert store.schema == {
        "x": "float",
        "lang": "keyword",
        "tags": "keyword",
        "ts": "int",
        "ok": "bool",
    }
    assert store.get(0) == {
        "x": 0.25,
        "lang": "en",
        "tags": ["ml", "gpu"],
        "ts": 1700000000,
        "ok": True,
    }
    got = store.get(1)
    assert got == {"x": 3.0, "lang": "fr", "tags": [], "ok": False}
    assert isinstance(got["x"], float) and isinstance(got["ok"], bool)
    assert store.get(2) == {} and store.get(3) == {}
    assert store.schema is not store.schema  # a copy: callers cannot change it


def test_keyword_lists_come_back_in_first_seen_order_for_both_storages() -> None:
    items = [{"t": ["b", "a"]}, {"t": ["a", "c", "b"]}, {"t": "c"}]
    for threshold in (256, 0):
        store = make(items, bitmap_max_values=threshold)
        assert store.storage_of("t") == ("bitmap" if threshold else "postings")
        assert [store.get(i) for i in range(3)] == [
            {"t": ["b", "a"]},
            {"t": ["b", "a", "c"]},
            {"t": "c"},
        ]


def test_numpy_scalars_are_accepted_as_their_kind() -> None:
    store = make([{"n": np.int64(5), "x": np.float32(0.5), "b": np.bool_(True), "s": np.str_("a")}])
    assert store.schema == {"n": "int", "x": "float", "b": "bool", "s": "keyword"}
    assert store.get(0) == {"n": 5, "x": 0.5, "b": True, "s": "a"}


def test_fields_restricts_what_is_indexed() -> None:
    store = make([{"lang": "en", "junk": {"nested": 1}, "ts": 5}], fields=["lang", "ts"])
    assert store.schema == {"lang": "keyword", "ts": "int"}
    assert store.get(0) == {"lang": "en", "ts": 5}
    with pytest.raises(FilterError, match="unknown field 'junk'"):
        rows(store, 'junk == "x"')


def test_declared_field_without_values_matches_nothing() -> None:
    store = make([{"a": 1}], fields=["a", "later"])
    assert rows(store, 'later == "x"') == []
    assert rows(store, "later >= 3") == []
    assert rows(store, "exists(later)") == []
    assert rows(store, "not exists(later)") == [0]
    assert rows(store, 'later != "x"') == [0]


@pytest.mark.parametrize(
    "schema, fields, message",
    [
        ({"a": "string"}, None, "schema: field 'a' has unknown kind 'string'"),
        ({"9a": "int"}, None, "schema: invalid field name '9a'"),
        ({"a": "int", "b": "int"}, ["a"], "schema names field 'b', which is not in fields"),
        (None, ["ok", "bad name"], "fields: invalid field name 'bad name'"),
        (None, "lang", "fields must be a list of field names"),
    ],
)
def test_bad_schema_or_fields(schema: Any, fields: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        AttributeStore("cpu", schema, fields)


# ---- prepare errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "schema, items, message",
    [
        (
            {"ts": "int"},
            [{"ts": 1}, {"ts": "soon"}],
            "item 1: field 'ts' is int, got string 'soon'",
        ),
        ({"ts": "int"}, [{"ts": 1.0}], "item 0: field 'ts' is int, got number 1.0"),
        ({"ts": "int"}, [{"ts": True}], "item 0: field 'ts' is int, got true"),
        ({"ok": "bool"}, [{"ok": 1}], "item 0: field 'ok' is bool, got number 1"),
        ({"x": "float"}, [{"x": False}], "item 0: field 'x' is float, got false"),
        ({"x": "float"}, [{"x": "1.5"}], "field 'x' is float, got string '1.5'"),
        ({"lang": "keyword"}, [{"lang": 3}], "item 0: field 'lang' is keyword, got number 3"),
        (
            {"lang": "keyword"},
            [{"lang": ["a", 3]}],
            "item 0: field 'lang' is a keyword list; its values must be strings, got number 3",
        ),
        ({"n": "int"}, [{"n": [1, 2]}], "item 0: field 'n' is int, got a list"),
        (None, [{"a": 1}, {"a": "x"}], "item 1: field 'a' is int, got string 'x' (use a schema"),
        (None, [{"a": 1}, {"a": 1.5}], "item 1: field 'a' is int, got number 1.5"),
        (None, [{"a": {"b": 1}}], "item 0: field 'a' has unsupported value an object"),
        (None, [{"n": 2**63}], "item 0: field 'n' value 9223372036854775808 does not fit in int64"),
        (None, [{"n": -(2**63) - 1}], "does not fit in int64"),
        (None, [{"x": float("nan")}], "item 0: field 'x' must be a finite number, got nan"),
        (None, [{"x": 0.5}, {"x": float("-inf")}], "item 1: field 'x' must be a finite number"),
        (
            {"x": "float"},
            [{"x": 2**53 + 1}],
            "item 0: int 9007199254740993 in float field 'x' cannot be stored exactly",
        ),
        ({"x": "float"}, [{"x": 10**400}], "cannot be stored exactly"),
        (None, [{"bad-name": 1}], "item 0: invalid field name 'bad-name'"),
        (None, [{"": 1}], "invalid field name ''"),
        (None, [{"a" * 65: 1}], "invalid field name"),
        (None, [{1: 1}], "invalid field name 1"),
        (
            None,
            [{"ok": 1}, ["not", "a", "dict"]],
            "item 1: attributes must be an object, got a list",
        ),
        (None, [{"ok": 1}, "text"], "item 1: attributes must be an object, got string"),
    ],
)
def test_prepare_rejects_bad_values(schema: Any, items: list[Any], message: str) -> None:
    store = AttributeStore("cpu", schema)
    store.grow(4)
    before = store.schema
    with pytest.raises(InvalidInput) as e:
        store.prepare(items)
    assert message in str(e.value)
    assert store.schema == before


def test_kind_clash_with_an_earlier_batch() -> None:
    store = make([{"a": 1}])
    with pytest.raises(InvalidInput, match="item 0: field 'a' is int, got string 'x'"):
        store.prepare([{"a": "x"}])


def test_null_is_an_error_naming_the_field_unless_the_field_is_not_indexed() -> None:
    store = make([{"x": 1.5}])
    with pytest.raises(InvalidInput, match="item 1: field 'x' is null"):
        store.prepare([{"x": 2.0}, {"x": None}])
    assert store.schema == {"x": "float"}
    only_x = AttributeStore("cpu", fields=["x"])
    only_x.grow(1)
    only_x.write(torch.tensor([0]), only_x.prepare([{"x": 1, "y": None}]))
    assert only_x.get(0) == {"x": 1}


def test_ints_fit_float_fields() -> None:
    store = make([{"x": 1.5}, {"y": 2}, {"x": -7}, {"x": 2**53}])
    assert store.schema == {"x": "float", "y": "int"}
    assert rows(store, "exists(x)") == [0, 2, 3]
    assert rows(store, "x == -7") == [2]
    assert rows(store, "x >= 9007199254740992") == [3]


def test_prepare_changes_nothing_and_a_stale_prepare_is_checked_again() -> None:
    store = AttributeStore("cpu")
    store.grow(4)
    p1 = store.prepare([{"a": "x"}])
    p2 = store.prepare([{"a": 5}])  # also infers a kind for 'a', from the same empty state
    assert store.schema == {}
    store.write(torch.tensor([0]), p1)
    with pytest.raises(InvalidInput, match="field 'a' is keyword, got number 5"):
        store.write(torch.tensor([1]), p2)
    assert store.get(1) == {}
    p3 = store.prepare([{"a": "y", "b": 1}])
    store.write(torch.tensor([2]), store.prepare([{"c": 1}]))  # adds a field: p3 is stale
    store.write(torch.tensor([3]), p3)  # checked again, still valid
    assert store.get(3) == {"a": "y", "b": 1}


def test_write_checks_rows() -> None:
    store = AttributeStore("cpu")
    store.grow(4)
    p = store.prepare([{"a": 1}, {"a": 2}])
    with pytest.raises(ValueError, match="distinct"):
        store.write(torch.tensor([1, 1]), p)
    with pytest.raises(ValueError, match=r"rows must be in \[0, 4\)"):
        store.write(torch.tensor([1, 4]), p)
    with pytest.raises(ValueError, match="3 rows for 2 prepared items"):
        store.write(torch.tensor([0, 1, 2]), p)
    assert store.schema == {}


# ---- filter errors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "f, message",
    [
        ('nope == "x"', "unknown field 'nope' in filter (known fields: lang, n, ok, tags, x)"),
        ("lang >= 3", "field 'lang' is keyword; range operators (gt, gte, lt, lte) need an int"),
        ("ok < 1", "field 'ok' is bool; range operators"),
        ('n == "5"', "field 'n' is int; 'eq' needs numbers, got string '5'"),
        ("n == true", "field 'n' is int; 'eq' needs numbers, got true"),
        ('x in [1, 2] or x == "a"', "field 'x' is float; 'eq' needs numbers, got string 'a'"),
        ("ok == 1", "field 'ok' is bool; 'eq' needs true or false, got number 1"),
        ("lang in [1, 2]", "field 'lang' is keyword; 'in' needs strings, got number 1"),
        ("tags all [true]", "field 'tags' is keyword; 'all' needs strings, got true"),
    ],
)
def test_filter_kind_errors_name_the_field(f: str, message: str) -> None:
    store = make([{"lang": "en", "tags": ["a"], "n": 1, "x": 0.5, "ok": True}])
    with pytest.raises(FilterError) as e:
        rows(store, f)
    assert message in str(e.value)


# ---- exact numeric comparisons -----------------------------------------------------------
INT_VALUES = [
    -(2**63),
    -(2**63) + 1,
    -(2**53) - 1,
    -1,
    0,
    1,
    6,
    7,
    8,
    2**53,
    2**53 + 1,
    2**62,
    2**63 - 2,
    2**63 - 1,
]
FLOAT_VALUES = [
    -1e308,
    -(2.0**53),
    -1.5,
    -0.0,
    0.0,
    5e-324,
    0.1,
    0.5,
    1.0,
    6.5,
    7.0,
    2.0**53,
    2.0**53 + 2,
    1.7e308,
]
BOUNDS: list[int | float] = [
    *INT_VALUES,
    *FLOAT_VALUES,
    2**63,
    -(2**63) - 1,
    2**64,
    10**400,
    -(10**400),
    7.5,
    0.30000000000000004,
    2**53 + 3,
    math.nextafter(7.0, 8.0),
    9.223372036854776e18,
    -9.3e18,
]


@pytest.mark.parametrize("field, values", [("n", INT_VALUES), ("x", FLOAT_VALUES)])
def test_numeric_comparisons_are_exact(field: str, values: list[Any]) -> None:
    """Every bound x operator on every edge value agrees with Python's exact comparison."""
    items = [{field: v} for v in values] + [{}]
    store = make(items, schema={"n": "int", "x": "float"})
    for bound, op in itertools.product(BOUNDS, ("gt", "gte", "lt", "lte")):
        node = Range(field, **{op: bound})
        got = store.mask(node, len(items)).tolist()
        assert got == [evaluate_reference(node, a) for a in items], (op, bound)
    for bound in BOUNDS:
        got = store.mask(Eq(field, bound), len(items)).tolist()
        assert got == [evaluate_reference(Eq(field, bound), a) for a in items], bound
    two = Range(field, gt=-1, lte=2**53)
    assert store.mask(two, len(items)).tolist() == [evaluate_reference(two, a) for a in items]


# ---- clear, rewrite, grow ----------------------------------------------------------------
@pytest.mark.parametrize("threshold", [256, 0])
def test_replaced_and_cleared_rows_stop_matching(threshold: int) -> None:
    store = make(
        [{"t": ["a", "b"], "n": 1, "ok": True}, {"t": "a", "n": 2}], bitmap_max_values=threshold
    )
    assert rows(store, 't == "a"') == [0, 1]
    store.write(torch.tensor([0]), store.prepare([{"t": ["c"], "x": 0.5}]))
    assert rows(store, 't == "a"') == [1]
    assert rows(store, 't == "b"') == []
    assert rows(store, 't == "c"') == [0]
    assert rows(store, "n == 1") == [] and rows(store, "exists(ok)") == []
    assert store.get(0) == {"t": ["c"], "x": 0.5}
    store.clear(torch.tensor([1, 1]))  # repeats are fine in clear
    assert store.get(1) == {}
    assert rows(store, 't == "a"') == [] and rows(store, "not exists(t)") == [1]
    store.write(torch.tensor([1]), store.prepare([{"t": "a"}]))  # a row is reused
    assert rows(store, 't == "a"') == [1] and rows(store, 't all ["a"]') == [1]


def test_grow_adds_empty_rows_and_masks_cover_them() -> None:
    store = make([{"a": 1}, {"a": 2}])
    store.grow(5)
    assert store.capacity == 5
    assert rows(store, "a >= 0") == [0, 1]
    assert rows(store, "not a == 1") == [1, 2, 3, 4]
    assert store.get(4) == {}
    assert store.mask(parse_filter("not a == 1"), 8).tolist() == [False] + [True] * 7
    assert store.mask(None, 3).tolist() == [True] * 3
    store.write(torch.tensor([4]), store.prepare([{"a": 1}]))
    assert rows(store, "a == 1") == [0, 4]
    store.grow(5)  # no-op
    with pytest.raises(ValueError, match="cannot shrink"):
        store.grow(2)
    assert rows(store, "a == 1", capacity=2) == [0]


def test_empty_store() -> None:
    store = AttributeStore("cpu", {"a": "keyword"})
    assert store.mask(parse_filter('a == "x"'), 0).shape == (0,)
    assert store.mask(parse_filter('not a == "x"'), 3).tolist() == [True] * 3


# ---- high cardinality --------------------------------------------------------------------
def test_switch_to_postings_keeps_every_answer() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    items = [
        {"t": list(rng.choice(words, int(rng.integers(0, 4)))), "lang": "en"} for _ in range(50)
    ]
    filters = [
        't == "w1"',
        't in ["w2", "w11"]',
        't all ["w1", "w2"]',
        "exists(t)",
        'not t == "w3" and lang == "en"',
    ]
    store = AttributeStore("cpu", bitmap_max_values=8)
    store.grow(60)
    first = [it if all(w in words[:8] for w in it["t"]) else {"lang": "en"} for it in items]
    store.write(torch.arange(50), store.prepare(first))
    assert store.storage_of("t") == "bitmap"
    bits_before = store.bits.n_bits
    store.write(torch.arange(10, 50), store.prepare(items[10:]))  # more than 8 values now
    assert store.storage_of("t") == "postings"
    expected = first[:10] + items[10:] + [None] * 10
    for f in filters:
        node = parse_filter(f)
        assert node is not None
        assert store.mask(node, 60).tolist() == [evaluate_reference(node, a) for a in expected], f
    # the value bits went back to the free list and a new field reuses them
    assert len(store.bits.free) == 8
    store.write(torch.tensor([55]), store.prepare([{"other": True}]))
    assert store.bits.n_bits == bits_before and len(store.bits.free) == 6
    assert rows(store, "other == true") == [55]


@pytest.mark.parametrize("sort_vs_mask", [10**9, 0])  # never / always intersect by sorting
def test_all_over_postings_both_ways(sort_vs_mask: int) -> None:
    from unittest.mock import patch

    from linr.attributes import masks

    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(30)]
    items = [{"t": list(rng.choice(words, 4))} for _ in range(300)]
    store = make(items, bitmap_max_values=0)
    with patch.object(masks, "_SORT_VS_MASK", sort_vs_mask):
        for values in (["w1"], ["w1", "w2"], ["w0", "w1", "w2"], ["w3", "w3"], ["w1", "zz"]):
            node = parse_filter({"field": "t", "all": values})
            assert node is not None
            want = [evaluate_reference(node, a) for a in items]
            assert store.mask(node, 300).tolist() == want, values


def test_postings_stay_compact_under_rewrites() -> None:
    store = AttributeStore("cpu", bitmap_max_values=0)
    store.grow(100)
    for i in range(60):  # every row rewritten 60 times with the same hot value
        store.write(torch.arange(100), store.prepare([{"t": ["hot", f"v{i}"]}] * 100))
    p = store.fields["t"].postings
    assert p is not None
    hot = store.fields["t"].vocab["hot"]
    assert p.plen[hot] <= 2 * 100 + 100  # live entries, plus at most as many stale ones
    assert p.arena_n <= 2 * 200 + (1 << 16)
    assert rows(store, 't == "hot"') == list(range(100))
    assert rows(store, 't == "v58"') == [] and len(rows(store, 't == "v59"')) == 100


# ---- persistence -------------------------------------------------------------------------
def test_state_round_trip_through_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    items = [
        {
            "lang": "en",
            "tags": ["a", "b"],
            "big": ["v0", "\ud800", "v2"],
            "n": 2**63 - 1,
            "x": -0.0,
            "ok": True,
        },
        {"lang": "日本", "tags": [], "big": "v1", "n": -5, "ok": False},
        None,
        {"x": 1e300, "big": []},
    ]
    store = make(items, bitmap_max_values=3, schema={"empty": "keyword", "never": "float"})
    store.grow(6)
    store.clear(torch.tensor([2]))
    assert store.storage_of("big") == "postings" and store.storage_of("lang") == "bitmap"
    tensors, meta = store.state_dict()
    save_file({f"attr.{k}": v for k, v in tensors.items()}, str(tmp_path / "t.safetensors"))
    loaded = {k[5:]: v for k, v in load_file(str(tmp_path / "t.safetensors")).items()}
    back = AttributeStore.from_state(loaded, meta, torch.device("cpu"))
    assert back.schema == store.schema and back.capacity == 6
    assert [back.get(i) for i in range(6)] == [store.get(i) for i in range(6)]
    for f in [
        'lang == "日本"',
        'tags in ["a"]',
        'big == "\\ud800"',
        "n > 0",
        "x <= 0",
        "ok == false",
        "not exists(big)",
    ]:
        node = parse_filter(f)
        assert back.mask(node, 6).tolist() == store.mask(node, 6).tolist(), f
    # both go on identically: same new bits, same answers
    batch = [{"lang": "de", "new": 1, "big": ["v9"]}]
    for s in (store, back):
        s.write(torch.tensor([4]), s.prepare(batch))
    assert back.state_dict()[1] == store.state_dict()[1]
    assert back.get(4) == store.get(4) == {"lang": "de", "big": ["v9"], "new": 1}


def test_from_state_rejects_an_unknown_format() -> None:
    tensors, meta = make([{"a": 1}]).state_dict()
    with pytest.raises(ValueError, match="format"):
        AttributeStore.from_state(tensors, {**meta, "format": 99}, torch.device("cpu"))


def test_memory_bytes_counts_what_is_stored() -> None:
    store = AttributeStore("cpu", bitmap_max_values=0)
    empty = store.memory_bytes()
    store.grow(1000)
    store.write(
        torch.arange(1000), store.prepare([{"t": [f"v{i}", "x"], "n": i} for i in range(1000)])
    )
    assert store.memory_bytes() > empty + 1000 * (8 + 2 * 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_masks_equal_cpu_masks() -> None:
    items = [
        {"t": [f"v{i % 7}", f"w{i % 300}"], "n": i, "x": i / 3, "ok": i % 2 == 0}
        for i in range(500)
    ]
    cpu = make(items)
    gpu = AttributeStore("cuda")
    gpu.grow(500)
    gpu.write(torch.arange(500), gpu.prepare(items))
    for f in ['t == "v1"', 't in ["w5", "w299"]', "n >= 250 and x < 100", "not ok == true"]:
        node = parse_filter(f)
        assert node is not None
        m = gpu.mask(node, 500)
        assert m.device.type == "cuda"
        assert m.cpu().tolist() == cpu.mask(node, 500).tolist(), f
