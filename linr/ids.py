"""Item ids and their rows.

Integer ids live in an open-addressing hash table held in two numpy arrays (int64 keys,
int32 rows) probed with vectorized linear probing, so a batch of lookups or inserts costs a
few numpy passes instead of a Python loop. At a load factor of at most _MAX_LOAD that is
12 / load bytes per item, plus the row -> id column (8 bytes): 28 bytes per item at 10M
items (measured in tests/linr/test_ids.py::test_bytes_per_item). A Python dict would cost
~100 bytes per item. String ids use a dict (their text has to be kept anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from linr.errors import InvalidInput

_EMPTY = -1  # ids are >= 0, so negative keys are free to mark slots
_TOMB = -2
_MAX_LOAD = 0.6  # probes per lookup stay ~1.5-2.5 at this load (linear probing)
_MAX_ID = 2**63 - 1
_MAX_STR_BYTES = 256
# Fibonacci hashing: multiply by 2^64 / phi, keep the top bits.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

Id = int | str


def normalize_ids(ids: Iterable[Any] | np.ndarray, kind: str | None) -> tuple[Any, str]:
    """Validate ids and return (ids as np.int64 array or list[str], kind)."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        arr = ids.astype(np.int64, copy=False).ravel()
        if ids.dtype.kind == "u" and ids.size and int(ids.max()) > _MAX_ID:
            raise InvalidInput(f"id {int(ids.max())} is not below 2^63")
        if arr.size and int(arr.min()) < 0:
            raise InvalidInput(f"id {int(arr.min())} is negative; ids must be >= 0")
        new_kind = "int"
    else:
        items = list(ids)
        if not items:
            return (np.empty(0, np.int64) if kind != "str" else []), kind or "int"
        first = items[0]
        new_kind = "str" if isinstance(first, str) else "int"
        if new_kind == "int":
            for i in items:
                if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                    raise InvalidInput(
                        f"id {i!r} is not an integer (ids of one index are all "
                        "integers or all strings)"
                    )
                if not 0 <= int(i) <= _MAX_ID:
                    raise InvalidInput(f"id {i} is out of range: integer ids are in [0, 2^63)")
            arr = np.asarray(items, dtype=np.int64)
        else:
            for s in items:
                if not isinstance(s, str):
                    raise InvalidInput(
                        f"id {s!r} is not a string (ids of one index are all "
                        "integers or all strings)"
                    )
                n = len(s.encode("utf-8"))
                if not 1 <= n <= _MAX_STR_BYTES:
                    raise InvalidInput(
                        f"string id {s[:40]!r} has {n} UTF-8 bytes; expected 1 to 256"
                    )
            return items, _check_kind(new_kind, kind)
    return arr, _check_kind(new_kind, kind)


def _check_kind(new: str, kind: str | None) -> str:
    if kind is not None and kind != new:
        raise InvalidInput(f"this index uses {kind} ids; got {new} ids")
    return new


def _hash(keys: np.ndarray, bits: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = keys.view(np.uint64) * _GOLDEN
    return (h >> np.uint64(64 - bits)).astype(np.int64)


class IntIdTable:
    """id (int64 >= 0) -> row (int32), vectorized linear probing."""

    def __init__(self, capacity: int = 1024) -> None:
        self._bits = max(4, int(np.ceil(np.log2(max(capacity, 1) / _MAX_LOAD))))
        self._keys = np.full(1 << self._bits, _EMPTY, np.int64)
        self._rows = np.zeros(1 << self._bits, np.int32)
        self._used = 0  # live + tombstones
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def _slots(self, ids: np.ndarray) -> np.ndarray:
        """Slot of each id, or -1 where absent."""
        mask = (1 << self._bits) - 1
        out = np.full(ids.shape[0], -1, np.int64)
        active = np.arange(ids.shape[0])
        pos = _hash(ids, self._bits)
        while active.size:
            k = self._keys[pos]
            want = ids[active]
            hit = k == want
            out[active[hit]] = pos[hit]
            go = ~(hit | (k == _EMPTY))
            active, pos = active[go], (pos[go] + 1) & mask
        return out

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """rows (int64), -1 where the id is absent."""
        slots = self._slots(ids)
        rows = np.where(slots >= 0, self._rows[np.maximum(slots, 0)], -1)
        return rows.astype(np.int64)

    def needs_rehash(self, n_more: int) -> bool:
        return self._used + n_more > _MAX_LOAD * (1 << self._bits)

    def insert(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Insert ids known to be absent and unique."""
        if self.needs_rehash(ids.shape[0]):
            self._rehash(self._live + ids.shape[0])
        mask = (1 << self._bits) - 1
        active = np.arange(ids.shape[0])
        pos = _hash(ids, self._bits)
        while active.size:
            free = self._keys[pos] < 0
            cand = np.nonzero(free)[0]
            # Several ids may probe the same free slot: the first of each wins, the rest move on.
            _, first = np.unique(pos[cand], return_index=True)
            win = cand[first]
            reused = int((self._keys[pos[win]] == _TOMB).sum())
            self._keys[pos[win]] = ids[active[win]]
            self._rows[pos[win]] = rows[active[win]]
            self._used += win.size - reused
            keep = np.ones(active.size, bool)
            keep[win] = False
            active, pos = active[keep], (pos[keep] + 1) & mask
        self._live += ids.shape[0]

    def remove(self, ids: np.ndarray) -> None:
        slots = self._slots(ids)
        slots = slots[slots >= 0]
        self._keys[slots] = _TOMB
        self._live -= slots.size

    def _rehash(self, need: int) -> None:
        t = self.rebuilt(need)
        self._bits, self._keys, self._rows = t._bits, t._keys, t._rows
        self._used, self._live = t._used, t._live

    def rebuilt(self, need: int) -> IntIdTable:
        """A new table holding the same ids, with room for `need` (no tombstones)."""
        live = self._keys >= 0
        t = IntIdTable(max(need, 1024))
        t.insert(self._keys[live], self._rows[live].astype(np.int64))
        return t

    def memory_bytes(self) -> int:
        return self._keys.nbytes + self._rows.nbytes


class IdMap:
    """Both directions: id -> row (hash table or dict) and row -> id (a column)."""

    def __init__(self, kind: str | None = None, capacity: int = 1024) -> None:
        if kind not in (None, "int", "str"):
            raise ValueError(f"id kind must be 'int' or 'str', got {kind!r}")
        self.kind = kind
        self._table = IntIdTable(capacity)
        self._str: dict[str, int] = {}
        self._row_int = np.full(capacity, -1, np.int64)
        self._row_str: list[str | None] = [None] * capacity if kind == "str" else []

    def __len__(self) -> int:
        return len(self._str) if self.kind == "str" else len(self._table)

    def normalize(self, ids: Iterable[Any] | np.ndarray) -> tuple[Any, str]:
        return normalize_ids(ids, self.kind)

    def grow(self, capacity: int) -> None:
        self.prepare_grow(capacity)()

    def needs_room(self, n_insert: int) -> bool:
        """Would inserting `n_insert` ids rehash the id table?"""
        return self.kind == "int" and self._table.needs_rehash(n_insert)

    def prepare_grow(self, capacity: int, n_insert: int = 0) -> Callable[[], None]:
        """Build now, and return what installs: the row -> id column grown to `capacity`,
        and the id table rebuilt bigger if inserting `n_insert` ids would rehash it (so
        that the insert itself does not). Reads only (see VectorStore.prepare_grow)."""
        old = self._row_int.shape[0]
        row_int = self._row_int
        if capacity > old:
            row_int = np.concatenate([self._row_int, np.full(capacity - old, -1, np.int64)])
        table = None
        if self.needs_room(n_insert):
            table = self._table.rebuilt(len(self._table) + n_insert)

        def install() -> None:
            self._row_int = row_int
            if self.kind == "str" and capacity > len(self._row_str):
                self._row_str.extend([None] * (capacity - len(self._row_str)))
            if table is not None:
                self._table = table

        return install

    def _set_kind(self, kind: str) -> None:
        if self.kind is None:
            self.kind = kind
            if kind == "str":
                self._row_str = [None] * self._row_int.shape[0]

    def lookup(self, ids: Any) -> np.ndarray:
        if self.kind == "str":
            return np.fromiter((self._str.get(s, -1) for s in ids), np.int64, len(ids))
        if self.kind is None:
            return np.full(len(ids), -1, np.int64)
        return self._table.lookup(ids)

    def insert(self, ids: Any, rows: np.ndarray, kind: str) -> None:
        self._set_kind(kind)
        if self.kind == "str":
            for s, r in zip(ids, rows.tolist()):
                self._str[s] = r
                self._row_str[r] = s
        else:
            self._table.insert(ids, rows)
            self._row_int[rows] = ids

    def remove(self, ids: Any, rows: np.ndarray) -> None:
        if self.kind == "str":
            for s, r in zip(ids, rows.tolist()):
                del self._str[s]
                self._row_str[r] = None
        else:
            self._table.remove(ids)
            self._row_int[rows] = -1

    def id_of(self, row: int) -> Id:
        return self._row_str[row] if self.kind == "str" else int(self._row_int[row])  # type: ignore[return-value]

    def ids_of(self, rows: Sequence[int]) -> list[Id]:
        if self.kind == "str":
            return [self._row_str[r] for r in rows]  # type: ignore[misc]
        return self._row_int[np.asarray(rows, np.int64)].tolist()

    def ids_of_topk(self, rows: np.ndarray) -> list[list[Id]]:
        """rows int64 [B, k], each row's -1 padding at its end -> the ids of each row."""
        counts = (rows >= 0).sum(1).tolist()
        if self.kind == "str":
            return [[self._row_str[r] for r in rr[:c].tolist()] for rr, c in zip(rows, counts)]  # type: ignore[misc]
        if self.kind is None:
            return [[] for _ in counts]
        labels = self._row_int[np.maximum(rows, 0)].tolist()
        return [lab[:c] for lab, c in zip(labels, counts)]

    def memory_bytes(self) -> int:
        if self.kind == "str":
            # dict entry + str object + list slot, as CPython lays them out (approximate)
            return sum(104 + len(s) for s in self._str) + 8 * len(self._row_str)
        return self._table.memory_bytes() + self._row_int.nbytes

    # persistence: the row -> id column is enough; the table is rebuilt on load
    def to_state(self, n_rows: int) -> dict[str, np.ndarray]:
        if self.kind == "str":
            enc = [(s or "").encode("utf-8") for s in self._row_str[:n_rows]]
            lengths = np.array(
                [len(b) if s is not None else -1 for b, s in zip(enc, self._row_str[:n_rows])],
                np.int64,
            )
            blob = np.frombuffer(b"".join(enc), np.uint8).copy()
            return {"ids.str_bytes": blob, "ids.str_lengths": lengths}
        return {"ids.int": self._row_int[:n_rows].copy()}

    @classmethod
    def from_state(cls, kind: str | None, state: dict[str, np.ndarray], capacity: int) -> IdMap:
        m = cls(kind, capacity)
        if kind == "str":
            lengths, blob = state["ids.str_lengths"], state["ids.str_bytes"].tobytes()
            ends = np.cumsum(np.maximum(lengths, 0))
            rows: list[int] = []
            ids: list[str] = []
            for r, (n, e) in enumerate(zip(lengths.tolist(), ends.tolist())):
                if n >= 0:
                    rows.append(r)
                    ids.append(blob[e - n : e].decode("utf-8"))
            m.insert(ids, np.asarray(rows, np.int64), "str")
        elif kind == "int":
            col = state["ids.int"]
            live = np.nonzero(col >= 0)[0].astype(np.int64)
            m.insert(col[live], live, "int")
        return m
