"""`triton.jit` applied at first launch rather than at import.

`triton.jit` reads TRITON_INTERPRET when it decorates, so a kernel decorated at import
would be fixed to whatever the environment said then. The CPU tests switch the interpreter
on only while they run (tests/ops/conftest.py), so the choice is made per launch: one
compiled object per setting, built on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

_TRUE = ("1", "true", "yes", "on")


def interpreting() -> bool:
    """True when Triton's CPU interpreter is switched on (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE


class LazyKernel:
    """Wraps a plain function written in Triton's language; `kernel[grid](...)` launches it."""

    def __init__(self, fn: Callable[..., None]):
        self.fn = fn
        self._built: dict[bool, Any] = {}

    def __getitem__(self, grid: tuple[int, ...]) -> Any:
        mode = interpreting()
        kernel = self._built.get(mode)
        if kernel is None:
            import triton

            kernel = self._built[mode] = triton.jit(self.fn)
        return kernel[grid]
