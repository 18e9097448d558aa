"""The string filter form: every operator, precedence, escapes, and errors with positions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    filter_to_json,
    filter_to_text,
    parse_filter,
)


def canon(obj: object) -> str:
    """JSON text: unlike dict equality, it tells true from 1 and 1.0 from 1."""
    return json.dumps(obj, sort_keys=True)


def js(text: str) -> str:
    node = parse_filter(text)
    assert node is not None
    return canon(filter_to_json(node))


@pytest.mark.parametrize(
    "text, expected",
    [
        ('lang == "en"', {"field": "lang", "eq": "en"}),
        ("ts == 17", {"field": "ts", "eq": 17}),
        ("x == -2.5e-3", {"field": "x", "eq": -0.0025}),
        ("ok == true", {"field": "ok", "eq": True}),
        ("ok == false", {"field": "ok", "eq": False}),
        ('lang != "en"', {"not": {"field": "lang", "eq": "en"}}),
        ("ts < 5", {"field": "ts", "lt": 5}),
        ("ts <= 5", {"field": "ts", "lte": 5}),
        ("ts > -5", {"field": "ts", "gt": -5}),
        ("ts >= 1.5", {"field": "ts", "gte": 1.5}),
        ('tags in ["ml", "gpu"]', {"field": "tags", "in": ["ml", "gpu"]}),
        ("n in [1, 2.5, -3]", {"field": "n", "in": [1, 2.5, -3]}),
        ('tags not in ["ml"]', {"not": {"field": "tags", "in": ["ml"]}}),
        ('tags all ["ml", "gpu"]', {"field": "tags", "all": ["ml", "gpu"]}),
        ("exists(lang)", {"field": "lang", "exists": True}),
        ("not exists(a.b_c)", {"not": {"field": "a.b_c", "exists": True}}),
        ("x==1", {"field": "x", "eq": 1}),  # no spaces needed
        ("  x  ==\n\t1  ", {"field": "x", "eq": 1}),
        ("(((x == 1)))", {"field": "x", "eq": 1}),
        (
            "n == 123456789012345678901234567890",
            {"field": "n", "eq": 123456789012345678901234567890},
        ),
        # keywords are operators only where an operator is expected: these are field names
        ("in == 1", {"field": "in", "eq": 1}),
        ("all in [1]", {"field": "all", "in": [1]}),
        ("exists == 1", {"field": "exists", "eq": 1}),
        ("exists(exists)", {"field": "exists", "exists": True}),
    ],
)
def test_every_operator(text: str, expected: object) -> None:
    assert js(text) == canon(expected)


def test_documented_example() -> None:
    text = 'lang == "en" and (tags in ["ml", "gpu"] or not ts >= 1700000000)'
    assert js(text) == canon(
        {
            "and": [
                {"field": "lang", "eq": "en"},
                {
                    "or": [
                        {"field": "tags", "in": ["ml", "gpu"]},
                        {"not": {"field": "ts", "gte": 1700000000}},
                    ]
                },
            ]
        }
    )


def test_precedence_not_over_and_over_or() -> None:
    a, b, c = Eq("a", 1), Eq("b", 2), Eq("c", 3)
    assert parse_filter("a == 1 or b == 2 and c == 3") == Or((a, And((b, c))))
    assert parse_filter("a == 1 and b == 2 or c == 3") == Or((And((a, b)), c))
    assert parse_filter("not a == 1 and b == 2") == And((Not(a), b))
    assert parse_filter("not a == 1 or b == 2") == Or((Not(a), b))
    assert parse_filter("not (a == 1 or b == 2)") == Not(Or((a, b)))
    assert parse_filter("not not a == 1") == Not(Not(a))
    assert parse_filter("a == 1 and b == 2 and c == 3") == And((a, b, c))
    assert parse_filter("(a == 1 and b == 2) and c == 3") == And((And((a, b)), c))


@pytest.mark.parametrize(
    "literal, value",
    [
        (r'"a\"b"', 'a"b'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\n\t\r\b\f\/"', "\n\t\r\b\f/"),
        (r'"caf\u00e9"', "café"),
        (r'"\ud83d\ude00"', "\U0001f600"),  # a surrogate pair is one character
        ('"日本語"', "日本語"),
        ('""', ""),
        ('"and or not ( ) [ ] =="', "and or not ( ) [ ] =="),
    ],
)
def test_string_escapes(literal: str, value: str) -> None:
    assert parse_filter(f"k == {literal}") == Eq("k", value)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "lang ==",
            "expected a value (a string in double quotes, a number, true or false) "
            "at position 7, got end of filter",
        ),
        ('tags in ["ml", "gpu"', "expected ']' at position 20"),
        ("(a == 1", "expected ')' at position 7"),
        ("a == 1)", "expected 'and', 'or' or the end of the filter at position 6"),
        ("a == 1 b == 2", "expected 'and', 'or' or the end of the filter at position 7, got 'b'"),
        ("lang = 1", "unexpected character '=' at position 5 (use '==' for equality)"),
        ("a ~ 1", "unexpected character '~' at position 2"),
        ('a == "abc', "unterminated string starting at position 5"),
        (r'a == "x\q"', "invalid string escape at position 7"),
        (r'a == "\u12"', "invalid string escape at position 6"),
        ("a in []", "empty list at position 5"),
        ('a in [1, "x"]', "list values must all be of one kind: '\"x\"' at position 9"),
        ("a in [1,]", "expected a value"),
        ("and == 1", "expected a field name at position 0, got 'and'"),
        ("== 1", "expected a field name at position 0"),
        ("", None),  # blank: no filter, not an error
        (
            "a",
            "expected an operator (==, !=, <, <=, >, >=, in, not in, all) after field 'a' "
            "at position 1, got end of filter",
        ),
        ("a not 1", "after field 'a' at position 2"),
        ('a < "x"', "'<' needs a number at position 4"),
        ("a >= true", "'>=' needs a number at position 5"),
        ("a == null", "expected a value"),
        ("a == [1]", "expected a value"),
        ("a == 1e999", "number 1e999 at position 5 is out of range"),
        ("exists(1)", "expected a field name at position 7"),
        ("a" * 65 + " == 1", "invalid field name"),
        ("a == 1 and", "expected a field name at position 10, got end of filter"),
        ("a == 1 or or b == 2", "expected a field name at position 10, got 'or'"),
    ],
)
def test_errors_name_the_position(text: str, message: str | None) -> None:
    if message is None:
        assert parse_filter(text) is None
        return
    with pytest.raises(FilterError) as e:
        parse_filter(text)
    assert message in str(e.value)


def test_nesting_is_bounded() -> None:
    assert parse_filter("(" * 60 + "a == 1" + ")" * 60) == Eq("a", 1)
    with pytest.raises(FilterError, match="nested deeper than 64 levels"):
        parse_filter("(" * 70 + "a == 1" + ")" * 70)
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter("not " * 100 + "a == 1")
    with pytest.raises(FilterError):
        parse_filter("(" * 100_000)  # no RecursionError, whatever the input


def test_filter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_filter("a ==")


# ---- round trip: filter_to_text then parse gives the same tree ------------------------------
_names = st.sampled_from(["lang", "tags", "ts", "a.b", "_x9", "in", "all", "exists", "x" * 64])
_strings = st.text(max_size=8)
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
_scalars = st.one_of(_strings, _numbers, st.booleans())


def _values(kind: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(kind, min_size=1, max_size=4).map(tuple)


_leaves = st.one_of(
    st.builds(Eq, _names, _scalars),
    st.builds(In, _names, st.one_of(_values(_strings), _values(_numbers), _values(st.booleans()))),
    st.builds(All, _names, st.one_of(_values(_strings), _values(_numbers))),
    _names.flatmap(
        lambda f: st.sampled_from(["gt", "gte", "lt", "lte"]).flatmap(
            lambda op: _numbers.map(lambda v: Range(f, **{op: v}))
        )
    ),
    st.builds(Exists, _names),
)
filters = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda c: And(tuple(c))),
        st.lists(inner, min_size=1, max_size=3).map(lambda c: Or(tuple(c))),
        inner.map(Not),
    ),
    max_leaves=8,
)


def _unwrap_single(node: FilterNode) -> FilterNode:
    """`(x)` parses back as x: a one-child and/or is only a parenthesis in the string form."""
    if isinstance(node, (And, Or)):
        kids = tuple(_unwrap_single(c) for c in node.children)
        return kids[0] if len(kids) == 1 else type(node)(kids)
    if isinstance(node, Not):
        return Not(_unwrap_single(node.child))
    return node


@settings(max_examples=300, deadline=None)
@given(filters)
def test_text_round_trip(node: FilterNode) -> None:
    back = parse_filter(filter_to_text(node))
    assert back is not None
    assert canon(filter_to_json(back)) == canon(filter_to_json(_unwrap_single(node)))


def test_two_bound_range_reads_back_as_and() -> None:
    text = filter_to_text(Range("ts", gte=1, lt=5))
    assert text == "(ts >= 1 and ts < 5)"
    assert parse_filter(text) == And((Range("ts", gte=1), Range("ts", lt=5)))


def test_an_integer_past_the_int_string_limit_is_a_filter_error() -> None:
    """int() refuses more than 4,300 digits with a plain ValueError (a 500 over HTTP)."""
    with pytest.raises(FilterError, match="position 5 has 8191 digits"):
        parse_filter("x == " + "0" * 8191)
