"""The filter syntax tree that both filter forms parse into, and its canonical JSON form.

Nodes are frozen dataclasses. Compare or hash filters through `filter_to_json` (e.g.
`json.dumps(filter_to_json(node), sort_keys=True)`), not with `==`: dataclass equality
follows Python's, where `True == 1`, while the filter language keeps bool and int apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

Scalar = str | int | float | bool
Number = int | float

RANGE_OPS = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Eq:
    """The field has this value (a multi-valued keyword field: contains it)."""

    field: str
    value: Scalar


@dataclass(frozen=True)
class In:
    """The field has at least one of the values."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class All:
    """The field has every one of the values (a single-valued field: all values are equal)."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    """A number between the given bounds; at least one bound is set."""

    field: str
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None

    def bounds(self) -> dict[str, Number]:
        """The bounds that are set, by operator name."""
        return {op: v for op in RANGE_OPS if (v := getattr(self, op)) is not None}


@dataclass(frozen=True)
class Exists:
    """The field is present (value False: absent)."""

    field: str
    value: bool = True


@dataclass(frozen=True)
class And:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True)
class Not:
    child: FilterNode


FilterNode = Eq | In | All | Range | Exists | And | Or | Not
FieldNode = Eq | In | All | Range | Exists
FIELD_NODES = (Eq, In, All, Range, Exists)


def filter_to_json(node: FilterNode) -> dict[str, Any]:
    """The canonical JSON form of a filter (docs/filters.md); `parse_filter` reads it back."""
    if isinstance(node, Eq):
        return {"field": node.field, "eq": node.value}
    if isinstance(node, In):
        return {"field": node.field, "in": list(node.values)}
    if isinstance(node, All):
        return {"field": node.field, "all": list(node.values)}
    if isinstance(node, Range):
        return {"field": node.field, **node.bounds()}
    if isinstance(node, Exists):
        return {"field": node.field, "exists": node.value}
    if isinstance(node, And):
        return {"and": [filter_to_json(c) for c in node.children]}
    if isinstance(node, Or):
        return {"or": [filter_to_json(c) for c in node.children]}
    if isinstance(node, Not):
        return {"not": filter_to_json(node.child)}
    raise TypeError(f"not a filter node: {node!r}")


def _text_value(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # JSON escapes are the string form's escapes
    return repr(v)  # repr of an int or a finite float reads back as the same number


def _text_list(values: tuple[Scalar, ...]) -> str:
    return "[" + ", ".join(_text_value(v) for v in values) + "]"


_TEXT_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def filter_to_text(node: FilterNode) -> str:
    """The string form of a filter, fully parenthesized; `parse_filter` reads it back.

    A range with two bounds becomes `(f >= a and f < b)`, which means the same thing.
    """
    if isinstance(node, Eq):
        return f"{node.field} == {_text_value(node.value)}"
    if isinstance(node, In):
        return f"{node.field} in {_text_list(node.values)}"
    if isinstance(node, All):
        return f"{node.field} all {_text_list(node.values)}"
    if isinstance(node, Range):
        parts = [
            f"{node.field} {_TEXT_OPS[op]} {_text_value(v)}" for op, v in node.bounds().items()
        ]
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"
    if isinstance(node, Exists):
        return f"exists({node.field})" if node.value else f"not exists({node.field})"
    if isinstance(node, (And, Or)):
        sep = " and " if isinstance(node, And) else " or "
        return "(" + sep.join(filter_to_text(c) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"not ({filter_to_text(node.child)})"
    raise TypeError(f"not a filter node: {node!r}")


def referenced_fields(node: FilterNode) -> set[str]:
    """Every field name a filter mentions."""
    if isinstance(node, (And, Or)):
        out: set[str] = set()
        for c in node.children:
            out |= referenced_fields(c)
        return out
    if isinstance(node, Not):
        return referenced_fields(node.child)
    return {node.field}


def value_kind(v: object) -> str:
    """'keyword', 'bool' or 'number': the kinds a filter value can have."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "keyword"
    return "number"
