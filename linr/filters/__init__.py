"""The filter language: a string form for people, a canonical JSON form for programs.

    parse_filter('lang == "en" and (tags in ["ml", "gpu"] or not ts >= 1700000000)')
    parse_filter({"and": [{"field": "lang", "eq": "en"}, {"field": "ts", "gte": 1700000000}]})

Both parse into the same tree of nodes (`nodes.py`). `linr.attributes.AttributeStore.mask`
compiles a tree into tensor operations; `evaluate_reference` is its plain-Python oracle.
See docs/filters.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from linr.errors import FilterError
from linr.filters.json_form import FIELD_NAME_RE, MAX_DEPTH, from_json
from linr.filters.nodes import (
    FIELD_NODES,
    All,
    And,
    Eq,
    Exists,
    FieldNode,
    FilterNode,
    In,
    Not,
    Or,
    Range,
    Scalar,
    filter_to_json,
    filter_to_text,
    referenced_fields,
)
from linr.filters.reference import evaluate_reference
from linr.filters.text_form import parse_text

_NODE_TYPES = (Eq, In, All, Range, Exists, And, Or, Not)


def parse_filter(f: str | Mapping[str, Any] | FilterNode | None) -> FilterNode | None:
    """Parse a filter given in either form; None, {} or a blank string mean no filter.

    A string that starts with '{' is read as the JSON form, any other string as the string
    form. An already parsed node is returned as is. Raises FilterError naming the
    position (string form) or the path and key (JSON form) of the problem.
    """
    if f is None:
        return None
    if isinstance(f, _NODE_TYPES):
        return f
    if isinstance(f, str):
        text = f.strip()
        if not text:
            return None
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise FilterError(f"invalid JSON filter: {e.msg} at position {e.pos}") from None
            except RecursionError:
                raise FilterError(f"filter is nested deeper than {MAX_DEPTH} levels") from None
            return from_json(obj)
        return parse_text(f)
    if isinstance(f, Mapping):
        return from_json(f)
    raise FilterError(f"a filter must be a string or a JSON object, got {type(f).__name__}")


__all__ = [
    "FIELD_NAME_RE",
    "FIELD_NODES",
    "MAX_DEPTH",
    "All",
    "And",
    "Eq",
    "Exists",
    "FieldNode",
    "FilterNode",
    "In",
    "Not",
    "Or",
    "Range",
    "Scalar",
    "evaluate_reference",
    "filter_to_json",
    "filter_to_text",
    "parse_filter",
    "referenced_fields",
]
