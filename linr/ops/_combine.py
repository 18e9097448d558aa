"""Combine functions for `tl.reduce`, shared by the kernels.

The kernels reduce with `tl.reduce(x, axis, _add)` rather than `tl.sum` / `tl.max`: those
are themselves `@triton.jit` functions, fixed to compiled or interpreted mode when Triton is
imported, while the tests switch the interpreter on later (see _jit.py). `tl.reduce` is a
builtin in both modes. Triton's own combine functions are used where present: compiled,
they are the same `a + b` / `maximum(a, b)`; interpreted, they take numpy's fast path
(a Python-level combine is ~1000x slower there).
"""

import triton
import triton.language as tl


@triton.jit
def _add_combine(a, b):
    return a + b


@triton.jit
def _max_combine(a, b):
    return tl.maximum(a, b)


_add = getattr(tl.standard, "_sum_combine", _add_combine)
_max = getattr(tl.standard, "_elementwise_max", _max_combine)
