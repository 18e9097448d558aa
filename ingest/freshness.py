"""Freshness samples: how long each message took from its producer's timestamp to being
applied (hence searchable), over the last `size` messages."""

from __future__ import annotations

import numpy as np


class Window:
    """The last `size` freshness samples (ms), for percentiles."""

    def __init__(self, size: int) -> None:
        self._buf = np.zeros(size, np.float64)
        self._n = 0

    def add(self, values: np.ndarray) -> None:
        values = values[-len(self._buf) :]
        pos = self._n % len(self._buf)
        first = min(len(values), len(self._buf) - pos)
        self._buf[pos : pos + first] = values[:first]
        self._buf[: len(values) - first] = values[first:]
        self._n += len(values)

    def samples(self) -> np.ndarray:
        return self._buf[: min(self._n, len(self._buf))].copy()

    def percentiles(self) -> dict[str, float | None]:
        n = min(self._n, len(self._buf))
        if n == 0:
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(self._buf[:n], [50, 99])
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}
