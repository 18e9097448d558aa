"""The canonical JSON filter form: strict validation, `parse_filter` dispatch, round trips,
and the reference evaluator's semantics on hand-made items."""

from __future__ import annotations

import json
from typing import Any

import pytest

from linr.errors import FilterError
from linr.filters import (
    All,
    And,
    Eq,
    Exists,
    In,
    Not,
    Or,
    Range,
    evaluate_reference,
    filter_to_json,
    parse_filter,
    referenced_fields,
)


def canon(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)


VALID = [
    {"field": "lang", "eq": "en"},
    {"field": "n", "eq": 3},
    {"field": "x", "eq": -0.5},
    {"field": "ok", "eq": False},
    {"field": "lang", "in": ["en", "fr"]},
    {"field": "n", "in": [1, 2.5]},
    {"field": "tags", "all": ["ml", "gpu"]},
    {"field": "ts", "gte": 1700000000, "lt": 1800000000},
    {"field": "ts", "gt": 1, "gte": 2, "lt": 9, "lte": 8},
    {"field": "lang", "exists": True},
    {"field": "lang", "exists": False},
    {"and": [{"field": "a", "eq": 1}, {"or": [{"field": "b", "eq": 2}, {"field": "c", "eq": 3}]}]},
    {"not": {"field": "a", "eq": 1}},
    {"or": [{"field": "a", "eq": 1}]},
]


@pytest.mark.parametrize("obj", VALID, ids=lambda o: canon(o)[:40])
def test_valid_json_round_trips(obj: dict[str, Any]) -> None:
    node = parse_filter(obj)
    assert node is not None
    assert canon(filter_to_json(node)) == canon(obj)
    assert canon(filter_to_json(parse_filter(json.dumps(obj)))) == canon(obj)  # type: ignore[arg-type]
    assert parse_filter(node) is node


def test_json_and_string_forms_agree() -> None:
    text = 'lang == "en" and (tags in ["ml", "gpu"] or not ts >= 1700000000)'
    obj = {
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
    assert parse_filter(text) == parse_filter(obj) == parse_filter(json.dumps(obj))


@pytest.mark.parametrize("empty", [None, {}, "", "   ", "{}", " {} "])
def test_no_filter(empty: Any) -> None:
    assert parse_filter(empty) is None


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"field": "a"}, "filter: field 'a' needs an operator"),
        ({"field": "a", "eqq": 1}, "filter: unknown key 'eqq' for field 'a'"),
        ({"field": "a", "eq": 1, "in": [1]}, "use one per filter"),
        ({"field": "a", "eq": 1, "gt": 0}, "use one per filter"),
        ({"field": "a", "eq": None}, "filter.eq: expected a string, number or boolean, got null"),
        ({"field": "a", "eq": [1]}, "filter.eq: expected a string, number or boolean, got a list"),
        ({"field": "a", "eq": {"x": 1}}, "got an object"),
        ({"field": "a", "eq": float("nan")}, "filter.eq: numbers must be finite"),
        ({"field": "a", "gt": float("inf")}, "filter.gt: numbers must be finite"),
        ({"field": "a", "in": []}, "filter.in: needs at least one value"),
        ({"field": "a", "in": "en"}, "filter.in: expected a list of values, got string 'en'"),
        ({"field": "a", "in": [1, "x"]}, "filter.in: values must all be of one kind"),
        ({"field": "a", "in": [True, 1]}, "values must all be of one kind, got ['bool', 'number']"),
        ({"field": "a", "all": [None]}, "filter.all[0]: expected a string, number or boolean"),
        ({"field": "a", "gte": "5"}, "filter.gte: a range bound must be a number, got string '5'"),
        ({"field": "a", "lt": True}, "filter.lt: a range bound must be a number, got true"),
        ({"field": "a", "exists": 1}, "filter.exists: expected true or false, got number 1"),
        ({"field": 3, "eq": 1}, "filter.field: invalid field name 3"),
        ({"field": "9a", "eq": 1}, "invalid field name '9a'"),
        ({"field": "a-b", "eq": 1}, "invalid field name 'a-b'"),
        ({"field": "a" * 65, "eq": 1}, "invalid field name"),
        ({"and": []}, "filter.and: needs at least one filter"),
        ({"or": []}, "filter.or: needs at least one filter"),
        ({"and": {"field": "a", "eq": 1}}, "filter.and: expected a list of filters, got an object"),
        ({"and": [{"field": "a", "eq": 1}, {}]}, "filter.and[1]: empty filter object"),
        (
            {"and": [{"field": "a", "eq": 1}, 5]},
            "filter.and[1]: expected a filter object, got number 5",
        ),
        ({"or": [{"field": "a", "eq": 1}], "field": "b"}, "'or' cannot be combined with 'field'"),
        ({"not": [{"field": "a", "eq": 1}]}, "filter.not: expected a filter object, got a list"),
        ({"not": {"field": "a", "eq": 1}, "and": []}, "'and' cannot be combined"),
        ({"nor": []}, "filter: unknown key 'nor'; expected 'field', 'and', 'or' or 'not'"),
        ({"and": [{"not": {"field": "a", "in": [1, "b"]}}]}, "filter.and[0].not.in: values must"),
    ],
)
def test_json_validation_errors(obj: Any, message: str) -> None:
    with pytest.raises(FilterError) as e:
        parse_filter(obj)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"field": "a", "eq": }', "invalid JSON filter: Expecting value at position 21"),
        ('{"field": "a"', "invalid JSON filter"),
        ("[1, 2]", "expected a field name at position 0"),  # not '{': the string form
    ],
)
def test_json_text_errors(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("[", r"\[")):
        parse_filter(text)


def test_other_types_are_rejected() -> None:
    with pytest.raises(FilterError, match="a filter must be a string or a JSON object, got int"):
        parse_filter(5)  # type: ignore[arg-type]
    with pytest.raises(FilterError, match="expected a filter object, got a list"):
        parse_filter({"not": [1]})


def test_json_nesting_is_bounded() -> None:
    deep: dict[str, Any] = {"field": "a", "eq": 1}
    for _ in range(70):
        deep = {"not": deep}
    with pytest.raises(FilterError, match="nested deeper than 64"):
        parse_filter(deep)
    with pytest.raises(FilterError):
        parse_filter('{"not": ' * 100_000)  # json's own recursion limit becomes a FilterError


def test_referenced_fields() -> None:
    node = parse_filter('a == 1 and (b in ["x"] or not exists(c.d)) and a < 3')
    assert node is not None
    assert referenced_fields(node) == {"a", "b", "c.d"}


# ---- the reference evaluator ----------------------------------------------------------------
ITEM = {"lang": "en", "tags": ["ml", "gpu"], "ts": 1700000000, "x": 0.5, "ok": True, "gone": None}


@pytest.mark.parametrize(
    "node, expected",
    [
        (Eq("lang", "en"), True),
        (Eq("lang", "fr"), False),
        (Eq("tags", "ml"), True),  # a list field: contains
        (Eq("tags", "cpu"), False),
        (In("tags", ("cpu", "gpu")), True),
        (All("tags", ("ml", "gpu")), True),
        (All("tags", ("ml", "cpu")), False),
        (All("lang", ("en", "en")), True),
        (All("lang", ("en", "fr")), False),
        (Eq("ts", 1700000000.0), True),  # numbers compare by value
        (Eq("ok", 1), False),  # a bool is not a number
        (Eq("ts", True), False),
        (Eq("lang", 1), False),
        (Range("ts", gte=1700000000), True),
        (Range("ts", gt=1700000000), False),
        (Range("x", gt=0, lt=1), True),
        (Range("x", lte=0.4999999), False),
        (Range("lang", gt=0), False),  # a string is never in a range
        (Range("ok", gte=0), False),  # nor a bool
        (Exists("lang"), True),
        (Exists("missing"), False),
        (Exists("gone"), False),  # null is absent
        (Exists("missing", False), True),
        (Eq("missing", "x"), False),
        (Not(Eq("missing", "x")), True),  # `a != v` is `not (a == v)`: absent fields match it
        (Range("missing", lt=0), False),
        (Not(Range("missing", lt=0)), True),
        (And((Eq("lang", "en"), Eq("ok", True))), True),
        (Or((Eq("lang", "fr"), Eq("ok", False))), False),
    ],
)
def test_reference_semantics(node: Any, expected: bool) -> None:
    assert evaluate_reference(node, ITEM) is expected


def test_reference_with_no_attributes() -> None:
    assert evaluate_reference(Eq("a", 1), None) is False
    assert evaluate_reference(Not(Eq("a", 1)), None) is True
    assert evaluate_reference(Exists("a", False), {}) is True
    assert evaluate_reference(Exists("t"), {"t": []}) is True  # an empty list is present
    assert evaluate_reference(In("t", ("a",)), {"t": []}) is False
