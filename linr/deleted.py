"""The versions of deleted items, so that a write older than an item's delete stays ignored.

Without it, `upsert(7, version=2)` after `delete(7, version=11)` would bring item 7 back: the
delete removed the row that held version 11. The index keeps, per deleted id, the highest
version it knew for it (the item's own, or the delete's), and forgets it when

- the id is written again (its version then lives with the item),
- more than `limit` deleted ids are remembered: the oldest delete goes first (a stale write of
  that id then applies, as if no version had been kept),
- the index is cleared.

Memory: one Python dict entry per id, ~85 bytes (tracemalloc over 100,000 entries, CPython
3.11) plus the id object (32 bytes for an integer, ~50 plus its length for a string): at the
default limit of 1,000,000 ids, ~120 MB for integer ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

NO_VERSION = np.iinfo(np.int64).min
DEFAULT_LIMIT = 1_000_000


class DeletedVersions:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._v: dict[Any, int] = {}  # insertion order = delete order, oldest first

    def __len__(self) -> int:
        return len(self._v)

    def versions(self, ids: Iterable[Any]) -> np.ndarray:
        """int64 [n]: the remembered version of each id, NO_VERSION where none is."""
        get = self._v.get
        return np.fromiter((get(i, NO_VERSION) for i in ids), np.int64)

    def remember(self, ids: Iterable[Any], versions: np.ndarray) -> None:
        """Deleted `ids` whose versions are `versions` (NO_VERSION: none known)."""
        for id_, v in zip(ids, versions.tolist(), strict=True):
            old = self._v.pop(id_, NO_VERSION)
            if max(v, old) != NO_VERSION:
                self._v[id_] = max(v, old)  # re-inserted: now the newest delete
        excess = len(self._v) - self.limit
        if excess > 0:
            for id_ in list(self._v)[:excess]:
                del self._v[id_]

    def forget(self, ids: Iterable[Any]) -> None:
        if self._v:
            for id_ in ids:
                self._v.pop(id_, None)

    def clear(self) -> None:
        self._v.clear()

    # ---- persistence (tensors of the index's safetensors file) ------------------------------
    def to_state(self) -> dict[str, np.ndarray]:
        # One kind of id per index; ids of the other kind (deleted before the index's first
        # write fixed its kind) can never be written, so they are not kept.
        strs = {k: v for k, v in self._v.items() if isinstance(k, str)}
        items = strs if strs else self._v
        if not items:
            return {}
        versions = np.fromiter(items.values(), np.int64, len(items))
        if strs:
            enc = [s.encode("utf-8") for s in strs]
            return {
                "deleted.str_bytes": np.frombuffer(b"".join(enc), np.uint8).copy(),
                "deleted.str_lengths": np.array([len(b) for b in enc], np.int64),
                "deleted.versions": versions,
            }
        return {
            "deleted.int": np.fromiter(items, np.int64, len(items)),
            "deleted.versions": versions,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], limit: int = DEFAULT_LIMIT
    ) -> DeletedVersions:
        out = cls(limit)
        if "deleted.versions" not in state:
            return out
        versions = state["deleted.versions"].tolist()
        ids: list[Any]
        if "deleted.str_lengths" in state:
            blob = state["deleted.str_bytes"].tobytes()
            ends = np.cumsum(state["deleted.str_lengths"]).tolist()
            starts = [0, *ends[:-1]]
            ids = [blob[a:b].decode("utf-8") for a, b in zip(starts, ends, strict=True)]
        else:
            ids = state["deleted.int"].tolist()
        out._v = dict(zip(ids, versions, strict=True))
        return out
