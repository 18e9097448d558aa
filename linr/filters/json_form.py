"""Strict reader of the canonical JSON filter form.

Errors name the place in the filter as a path, e.g. `filter.and[1].in: ...`, so a user
can find the bad part of a large generated filter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from linr.errors import FilterError
from linr.filters.nodes import (
    RANGE_OPS,
    All,
    And,
    Eq,
    Exists,
    FilterNode,
    In,
    Not,
    Or,
    Range,
    Scalar,
    value_kind,
)

FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}\Z")

# Deeper nesting than this is a malformed or hostile filter, not a real query; the bound
# also keeps the recursive readers and the mask compiler far from Python's stack limit.
MAX_DEPTH = 64

_FIELD_OPS = ("eq", "in", "all", "exists", *RANGE_OPS)


def describe(v: object) -> str:
    """A short description of a JSON value for error messages: its kind and (short) value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        text = v if len(v) <= 40 else v[:37] + "..."
        return f"string {text!r}"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, (list, tuple)):
        return "a list"
    return f"a {type(v).__name__}"


def check_field_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not FIELD_NAME_RE.match(name):
        raise FilterError(
            f"{where}: invalid field name {name!r} (expected [A-Za-z_][A-Za-z0-9_.]{{0,63}})"
        )
    return name


def check_scalar(v: object, where: str) -> Scalar:
    if isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise FilterError(f"{where}: numbers must be finite, got {v!r}")
        return float(v)
    raise FilterError(f"{where}: expected a string, number or boolean, got {describe(v)}")


def check_number(v: object, where: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FilterError(f"{where}: a range bound must be a number, got {describe(v)}")
    return check_scalar(v, where)  # type: ignore[return-value]


def check_values(v: object, where: str) -> tuple[Scalar, ...]:
    if not isinstance(v, (list, tuple)):
        raise FilterError(f"{where}: expected a list of values, got {describe(v)}")
    if not v:
        raise FilterError(f"{where}: needs at least one value")
    out = tuple(check_scalar(x, f"{where}[{i}]") for i, x in enumerate(v))
    kinds = {value_kind(x) for x in out}
    if len(kinds) > 1:
        raise FilterError(f"{where}: values must all be of one kind, got {sorted(kinds)}")
    return out


def from_json(obj: Any) -> FilterNode | None:
    """Read the canonical JSON form (already decoded). None and {} mean no filter."""
    if obj is None or (isinstance(obj, Mapping) and len(obj) == 0):
        return None
    return _node(obj, "filter", 1)


def _only(obj: Mapping[Any, Any], key: str, where: str) -> None:
    extra = [k for k in obj if k != key]
    if extra:
        raise FilterError(f"{where}: '{key}' cannot be combined with {_keys(extra)}")


def _keys(keys: list[Any]) -> str:
    return ", ".join(repr(k) for k in keys)


def _node(obj: Any, where: str, depth: int) -> FilterNode:
    if depth > MAX_DEPTH:
        raise FilterError(f"{where}: filter is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, Mapping):
        raise FilterError(f"{where}: expected a filter object, got {describe(obj)}")
    for key, cls in (("and", And), ("or", Or)):
        if key in obj:
            _only(obj, key, where)
            items = obj[key]
            if not isinstance(items, (list, tuple)):
                raise FilterError(
                    f"{where}.{key}: expected a list of filters, got {describe(items)}"
                )
            if not items:
                raise FilterError(f"{where}.{key}: needs at least one filter")
            children = tuple(
                _node(c, f"{where}.{key}[{i}]", depth + 1) for i, c in enumerate(items)
            )
            return cls(children)
    if "not" in obj:
        _only(obj, "not", where)
        return Not(_node(obj["not"], f"{where}.not", depth + 1))
    if "field" not in obj:
        if not obj:
            raise FilterError(f"{where}: empty filter object")
        raise FilterError(
            f"{where}: unknown key {_keys(list(obj)[:1])}; expected 'field', 'and', 'or' or 'not'"
        )
    field = check_field_name(obj["field"], f"{where}.field")
    ops = [k for k in obj if k != "field"]
    unknown = [k for k in ops if k not in _FIELD_OPS]
    if unknown:
        raise FilterError(
            f"{where}: unknown key {_keys(unknown[:1])} for field '{field}'; "
            f"expected one of {', '.join(_FIELD_OPS)}"
        )
    if not ops:
        raise FilterError(f"{where}: field '{field}' needs an operator ({', '.join(_FIELD_OPS)})")
    if all(op in RANGE_OPS for op in ops):
        bounds = {op: check_number(obj[op], f"{where}.{op}") for op in ops}
        return Range(field, **bounds)
    if len(ops) > 1:
        raise FilterError(
            f"{where}: field '{field}' has operators {_keys(ops)}; use one per filter "
            "(combine several with 'and')"
        )
    op = ops[0]
    value = obj[op]
    if op == "eq":
        return Eq(field, check_scalar(value, f"{where}.eq"))
    if op == "in":
        return In(field, check_values(value, f"{where}.in"))
    if op == "all":
        return All(field, check_values(value, f"{where}.all"))
    if not isinstance(value, bool):
        raise FilterError(f"{where}.exists: expected true or false, got {describe(value)}")
    return Exists(field, value)
