"""Posting lists for high-cardinality keyword fields (value -> rows), in host memory.

A bitmap costs one bit per row for every value of the field's vocabulary; with 200k tag
values that is 25 KB per row. Postings cost ~12 bytes per (row, value) pair instead:
- `lists[v]`: entries of value v, each `row << 32 | gen`, in a buffer that doubles;
- `arena` + `row_off`/`row_len`: each row's value ids (for `get` and for deletes).

Deleting or rewriting a row must not cost O(N): it bumps the row's generation (kept by
the store, shared by all fields), which makes the row's old entries stale; queries skip
entries whose generation is not the row's current one. Each value counts its stale
entries and is compacted when they outnumber the live ones, so stale entries never cost
more than the live ones and the work is amortized over the deletes that made them. A
query on a value costs O(entries of that value), never O(all postings).
"""

from __future__ import annotations

import numpy as np

_ROW_SHIFT = np.int64(32)
# Below this many stale entries a value's list is not worth compacting (a few-µs numpy call).
_COMPACT_MIN_DEAD = 32
# The arena of row values is rebuilt when its garbage passes max(live, this).
_ARENA_MIN_GARBAGE = 1 << 16


def gather_ranges(arr: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """arr[starts[0]:starts[0]+lens[0]] ++ arr[starts[1]:...] ++ ..., vectorized."""
    total = int(lens.sum())
    if total == 0:
        return arr[:0]
    before = np.cumsum(lens) - lens
    idx = np.repeat(starts - before, lens) + np.arange(total)
    return arr[idx]


class Postings:
    def __init__(self, capacity: int) -> None:
        self.lists: list[np.ndarray | None] = []
        self.plen = np.zeros(0, np.int64)  # entries used in lists[v]
        self.dead = np.zeros(0, np.int64)  # stale entries among them
        self.list_bytes = 0
        self.row_off = np.zeros(capacity, np.int64)
        self.row_len = np.zeros(capacity, np.int32)
        self.arena = np.zeros(1024, np.int32)
        self.arena_n = 0
        self.garbage = 0

    # ---- shape ----------------------------------------------------------------------------
    def grown(self, capacity: int) -> tuple[np.ndarray, np.ndarray]:
        """(row_off, row_len) with rows up to `capacity`; self is unchanged."""
        extra = capacity - self.row_len.shape[0]
        if extra <= 0:
            return self.row_off, self.row_len
        return (
            np.concatenate([self.row_off, np.zeros(extra, np.int64)]),
            np.concatenate([self.row_len, np.zeros(extra, np.int32)]),
        )

    def _ensure_values(self, n_values: int) -> None:
        if n_values > len(self.lists):
            self.lists.extend([None] * (n_values - len(self.lists)))
        extra = max(n_values, 2 * self.plen.shape[0]) - self.plen.shape[0]
        if n_values > self.plen.shape[0]:  # doubling: new values cost O(1) amortized
            self.plen = np.concatenate([self.plen, np.zeros(extra, np.int64)])
            self.dead = np.concatenate([self.dead, np.zeros(extra, np.int64)])

    def _ensure_arena(self, extra: int) -> None:
        need = self.arena_n + extra
        if need > self.arena.shape[0]:
            bigger = np.zeros(max(need, 2 * self.arena.shape[0]), np.int32)
            bigger[: self.arena_n] = self.arena[: self.arena_n]
            self.arena = bigger

    # ---- writes ---------------------------------------------------------------------------
    def add(self, rows: np.ndarray, counts: np.ndarray, vids: np.ndarray, gen: np.ndarray) -> None:
        """Give rows[i] the values vids[sum(counts[:i]) : sum(counts[:i+1])].

        Rows must hold no values (cleared). gen: the store's row generations [capacity].
        """
        total = int(vids.size)
        self._ensure_arena(total)
        self.row_off[rows] = self.arena_n + np.cumsum(counts) - counts
        self.row_len[rows] = counts
        self.arena[self.arena_n : self.arena_n + total] = vids
        self.arena_n += total
        if total == 0:
            return
        self._ensure_values(int(vids.max()) + 1)
        item_rows = np.repeat(rows, counts)
        entries = (item_rows << _ROW_SHIFT) | gen[item_rows].astype(np.int64)
        order = np.argsort(vids, kind="stable")
        sv, se = vids[order], entries[order]
        uniq, starts, cnts = np.unique(sv, return_index=True, return_counts=True)
        old = self.plen[uniq]
        self.plen[uniq] = old + cnts
        lists = self.lists
        se_list = se.tolist()  # most values get one entry per batch: a scalar store is 2.5x
        for v, s, c, o in zip(uniq.tolist(), starts.tolist(), cnts.tolist(), old.tolist()):
            buf = lists[v]
            if buf is None or len(buf) < o + c:
                bigger = np.empty(max(4, 2 * (o + c)), np.int64)
                if buf is not None:
                    bigger[:o] = buf[:o]
                    self.list_bytes -= buf.nbytes
                self.list_bytes += bigger.nbytes
                lists[v] = buf = bigger
            if c == 1:
                buf[o] = se_list[s]
            else:
                buf[o : o + c] = se[s : s + c]

    def remove(self, rows: np.ndarray, gen: np.ndarray) -> None:
        """Forget the values of these (unique) rows. Their generation must already have been
        bumped, which is what makes their entries stale."""
        lens = self.row_len[rows]
        has = lens > 0
        if not has.any():
            return
        r, lens = rows[has], lens[has]
        vids = gather_ranges(self.arena, self.row_off[r], lens)
        self.row_len[r] = 0
        self.garbage += int(lens.sum())
        np.add.at(self.dead, vids, 1)
        touched = np.unique(vids)
        dead, used = self.dead[touched], self.plen[touched]
        for v in touched[(dead >= _COMPACT_MIN_DEAD) & (2 * dead > used)].tolist():
            self._compact(v, gen)
        live = self.arena_n - self.garbage
        if self.garbage > max(live, _ARENA_MIN_GARBAGE):
            self._compact_arena()

    def _compact(self, v: int, gen: np.ndarray) -> None:
        buf = self.lists[v]
        assert buf is not None
        kept = self._valid(buf[: self.plen[v]], gen)
        new = np.empty(max(4, 2 * kept.shape[0]), np.int64)
        new[: kept.shape[0]] = kept
        self.list_bytes += new.nbytes - buf.nbytes
        self.lists[v] = new
        self.plen[v] = kept.shape[0]
        self.dead[v] = 0

    def _compact_arena(self) -> None:
        rows = np.flatnonzero(self.row_len)
        lens = self.row_len[rows]
        vals = gather_ranges(self.arena, self.row_off[rows], lens)
        self.arena = np.zeros(max(1024, 2 * vals.shape[0]), np.int32)
        self.arena[: vals.shape[0]] = vals
        self.arena_n = int(vals.shape[0])
        self.row_off[rows] = np.cumsum(lens) - lens
        self.garbage = 0

    # ---- reads ----------------------------------------------------------------------------
    @staticmethod
    def _is_valid(entries: np.ndarray, rows: np.ndarray, gen: np.ndarray) -> np.ndarray:
        # astype(uint32) keeps the low 32 bits of each entry: its generation
        return gen[rows] == entries.astype(np.uint32)

    @classmethod
    def _valid(cls, entries: np.ndarray, gen: np.ndarray) -> np.ndarray:
        return entries[cls._is_valid(entries, entries >> _ROW_SHIFT, gen)]

    def rows_of(self, vids: list[int], gen: np.ndarray) -> np.ndarray:
        """int64 rows holding at least one of the values (a row may repeat)."""
        parts = []
        for v in vids:
            if v < len(self.lists) and self.plen[v]:
                buf = self.lists[v]
                assert buf is not None
                entries = buf[: self.plen[v]]
                rows = entries >> _ROW_SHIFT
                # no stale entries (the common case): skip the generation check
                parts.append(rows[self._is_valid(entries, rows, gen)] if self.dead[v] else rows)
        if not parts:
            return np.zeros(0, np.int64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def values_of(self, row: int) -> list[int]:
        start = int(self.row_off[row])
        return self.arena[start : start + int(self.row_len[row])].tolist()

    def row_values(self) -> tuple[np.ndarray, np.ndarray]:
        """(row_len int32 [capacity], every row's value ids in row order): a compact copy."""
        rows = np.arange(self.row_len.shape[0])
        return self.row_len.copy(), gather_ranges(self.arena, self.row_off[rows], self.row_len)

    @classmethod
    def from_row_values(
        cls, row_len: np.ndarray, values: np.ndarray, n_values: int, gen: np.ndarray
    ) -> Postings:
        """Build from per-row value lists (as `row_values` returns them)."""
        p = cls(int(row_len.shape[0]))
        rows = np.arange(row_len.shape[0], dtype=np.int64)
        p._ensure_values(n_values)
        p.add(rows, row_len.astype(np.int64), values.astype(np.int32), gen)
        return p

    def nbytes(self) -> int:
        arrays = (self.plen, self.dead, self.row_off, self.row_len, self.arena)
        return self.list_bytes + sum(a.nbytes for a in arrays) + 8 * len(self.lists)
