"""Handing freed heap memory back to the operating system.

A large request allocates hundreds of MB of short-lived buffers (its parsed body, score
blocks, its answer). Freed, they stay in glibc's heaps (one per thread that allocated), so
RSS stayed 200 MB above its start after one large batch search. `malloc_trim(0)` returns
the free pages of every heap; elsewhere (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Any

log = logging.getLogger("linr.service")


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """True when the C library was asked to return free memory (glibc)."""
    libc = _libc()
    if libc is None:
        return False
    try:
        libc.malloc_trim(0)
    except OSError:  # pragma: no cover - a libc whose symbol cannot be called
        log.debug("malloc_trim failed", exc_info=True)
        return False
    return True
