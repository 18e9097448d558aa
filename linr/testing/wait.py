"""Polling for a condition in tests and benchmarks, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    pred: Callable[[], object], timeout_s: float = 20.0, what: str = "condition"
) -> None:
    """Return once `pred()` is true; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)  # gentle on a server being polled over HTTP
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
