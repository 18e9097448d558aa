"""Exact translation of filter numbers into bounds on int64 and float64 columns.

A filter number may be an int of any size or a float; a column holds int64 or float64.
Casting the filter value to the column's dtype would round (2**53 + 1 as float64, 1.5 as
int64) and give wrong answers at the edges, so each bound is replaced by the tightest
bound that is representable in the column's dtype and selects exactly the same stored
values. The results agree with Python's exact int/float comparisons, which the reference
evaluator uses.
"""

from __future__ import annotations

import math
import sys

from linr.filters import Range

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_FLOAT_MAX = sys.float_info.max


def int_interval(node: Range) -> tuple[int, int] | None:
    """[lo, hi] in int64 with lo <= x <= hi exactly when x satisfies the range; None if empty."""
    lo, hi = INT64_MIN, INT64_MAX
    if node.gt is not None:
        lo = max(lo, math.floor(node.gt) + 1)
    if node.gte is not None:
        lo = max(lo, math.ceil(node.gte))
    if node.lt is not None:
        hi = min(hi, math.ceil(node.lt) - 1)
    if node.lte is not None:
        hi = min(hi, math.floor(node.lte))
    return None if lo > hi else (lo, hi)


def int_value(v: int | float) -> int | None:
    """The int64 equal to v, or None when no int64 equals it."""
    if isinstance(v, float):
        if not v.is_integer():
            return None
        v = int(v)
    return v if INT64_MIN <= v <= INT64_MAX else None


def _to_float(v: int | float) -> float:
    """v rounded to a float64; ints beyond the float range become +-inf."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _float_ceil(v: int | float) -> float:
    """The smallest float64 >= v (finite floats: v itself)."""
    f = _to_float(v)
    if f < v:
        f = math.nextafter(f, math.inf)
    return f if f != -math.inf else -_FLOAT_MAX


def _float_floor(v: int | float) -> float:
    """The largest float64 <= v."""
    f = _to_float(v)
    if f > v:
        f = math.nextafter(f, -math.inf)
    return f if f != math.inf else _FLOAT_MAX


def float_interval(node: Range) -> tuple[float, float] | None:
    """[lo, hi] in float64 with lo <= x <= hi exactly when the finite float x satisfies the
    range; None if empty."""
    lo, hi = -math.inf, math.inf
    if node.gt is not None:
        c = _float_ceil(node.gt)
        lo = max(lo, math.nextafter(c, math.inf) if c == node.gt else c)
    if node.gte is not None:
        lo = max(lo, _float_ceil(node.gte))
    if node.lt is not None:
        f = _float_floor(node.lt)
        hi = min(hi, math.nextafter(f, -math.inf) if f == node.lt else f)
    if node.lte is not None:
        hi = min(hi, _float_floor(node.lte))
    return None if lo > hi else (lo, hi)


def float_value(v: int | float) -> float | None:
    """The float64 equal to v, or None when no float64 equals it (e.g. 2**53 + 1)."""
    if isinstance(v, float):
        return v
    f = _to_float(v)
    return f if math.isfinite(f) and f == v else None
