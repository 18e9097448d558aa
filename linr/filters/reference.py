"""The plain-Python meaning of a filter on one item: the oracle the tensor masks must match.

It reads an item's attributes as given (a dict of str, list of str, int, float, bool or
None), so it needs no schema. A comparison between values of different kinds is simply
false here; the attribute store rejects such filters with a FilterError instead.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from linr.filters.nodes import All, And, Eq, Exists, FilterNode, In, Not, Or, Range


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps bool, string and number apart (Python alone has True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)  # int vs float: Python compares the exact values


def _values(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _has(x: Any, v: Any) -> bool:
    return any(_same(a, v) for a in _values(x))


def _in_range(x: Any, node: Range) -> bool:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return False
    x = float(x) if not isinstance(x, (int, float)) else x  # numpy scalars
    b = node.bounds()
    return (
        ("gt" not in b or x > b["gt"])
        and ("gte" not in b or x >= b["gte"])
        and ("lt" not in b or x < b["lt"])
        and ("lte" not in b or x <= b["lte"])
    )


def evaluate_reference(node: FilterNode, attributes: Mapping[str, Any] | None) -> bool:
    """Whether an item with these attributes matches the filter (docs/filters.md).

    An absent field (missing key or null value) satisfies no eq, in, all, range or
    exists: true; `not` turns any of these around.
    """
    attrs: Mapping[str, Any] = attributes or {}
    if isinstance(node, And):
        return all(evaluate_reference(c, attrs) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate_reference(c, attrs) for c in node.children)
    if isinstance(node, Not):
        return not evaluate_reference(node.child, attrs)
    x = attrs.get(node.field)
    if isinstance(node, Exists):
        return (x is not None) == node.value
    if x is None:
        return False
    if isinstance(node, Eq):
        return _has(x, node.value)
    if isinstance(node, In):
        return any(_has(x, v) for v in node.values)
    if isinstance(node, All):
        return all(_has(x, v) for v in node.values)
    if isinstance(node, Range):
        return _in_range(x, node)
    raise TypeError(f"not a filter node: {node!r}")
