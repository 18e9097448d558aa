"""AttributeStore: every item's attributes as device tensors (and host posting lists),
written in batches and turned into a row mask for a filter.

Storage per field kind:
- every field: a presence bit in the packed words (`bits.py`), so `exists` is one bit test;
- keyword, up to _BITMAP_MAX_VALUES distinct values: one bit per value in the words;
  above that, posting lists (`postings.py`); plus a bit "given as a list" for `get`;
- int: an int64 column, exact for any 64-bit value (timestamps, ids);
- float: a float64 column: values arrive as Python floats (float64), and float32 would round
  them, so `price == 0.1` or `score <= x` would disagree with the value the user sent;
- bool: a value bit next to the presence bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from linr.attributes.bits import BitWords
from linr.attributes.field import DTYPES, Field
from linr.attributes.masks import compile_mask
from linr.attributes.postings import Postings
from linr.attributes.prepare import KINDS, PreparedAttributes, check_name, prepare_batch
from linr.attributes.state import load_state, store_state
from linr.errors import InvalidInput

# A keyword field keeps one bit per distinct value while its vocabulary has at most this
# many values (one int64 word per row), and switches to posting lists beyond. Measured at
# 1M single-valued rows, one CPU thread (benchmarks/bench_filters.py, docs/filters.md): a
# bitmap test costs ~1.1 ms per word it touches, whatever matches; postings cost in
# proportion to the matching rows (`eq` on a 1/64 value: 0.11 ms). At 256 values an `in`
# over 8 values touches 4 words (5-10 ms vs 0.26 ms with postings) while memory is even
# (44 vs 42 B/row); at 64 values the bitmap is 8 B/row vs ~30 B/row of postings and
# `in` stays one word (1.1 ms). Bits also stay on the device, next to the scan.
_BITMAP_MAX_VALUES = 64


class AttributeStore:
    """Attributes of the rows of one index. Not thread-safe: the index's lock guards it.

    schema: kinds fixed up front ("keyword" | "int" | "float" | "bool"); other fields get
    the kind of their first value. fields: index only these fields, ignore the others.
    bitmap_max_values: see _BITMAP_MAX_VALUES (tests lower it to exercise postings).
    """

    def __init__(
        self,
        device: torch.device | str,
        schema: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
        *,
        bitmap_max_values: int = _BITMAP_MAX_VALUES,
    ) -> None:
        self.device = torch.device(device)
        self._capacity = 0
        self._bits = BitWords(0, self.device)
        self._gen = np.zeros(0, np.uint32)  # row generations; see postings.py
        self._fields: dict[str, Field] = {}
        self._kinds: dict[str, str] = {}
        self._bitmap_max = int(bitmap_max_values)
        if fields is not None and not isinstance(fields, (list, tuple, set, frozenset)):
            raise InvalidInput(f"fields must be a list of field names, got {fields!r}")
        self._allowed = (
            None if fields is None else frozenset(check_name(f, "fields") for f in fields)
        )
        for name, kind in (schema or {}).items():
            check_name(name, "schema")
            if kind not in KINDS:
                raise InvalidInput(
                    f"schema: field '{name}' has unknown kind {kind!r} "
                    f"(expected one of {', '.join(KINDS)})"
                )
            if self._allowed is not None and name not in self._allowed:
                raise InvalidInput(f"schema names field '{name}', which is not in fields")
            self._add_field(name, kind)

    # ---- fields ---------------------------------------------------------------------------
    @property
    def schema(self) -> dict[str, str]:
        """Field kinds, fixed and inferred (a copy)."""
        return dict(self._kinds)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def indexed_fields(self) -> frozenset[str] | None:
        """The `fields` restriction (None: every field is indexed)."""
        return self._allowed

    def storage_of(self, name: str) -> str:
        """'bitmap' or 'postings' for a keyword field, else the field's kind."""
        f = self._fields[name]
        if f.kind != "keyword":
            return f.kind
        return "bitmap" if f.postings is None else "postings"

    def _add_field(self, name: str, kind: str) -> Field:
        f = Field(name, kind, self._bits.alloc())
        if kind in ("keyword", "bool"):
            f.flag_bit = self._bits.alloc()
        if kind in DTYPES:
            f.column = torch.zeros(self._capacity, dtype=DTYPES[kind], device=self.device)
        self._fields[name] = f
        self._kinds[name] = kind
        return f

    # ---- writes ---------------------------------------------------------------------------
    def prepare(
        self,
        attributes: Sequence[Mapping[str, Any] | None],
        like: PreparedAttributes | None = None,
    ) -> PreparedAttributes:
        """Validate a batch (raises InvalidInput naming item, field and kinds); changes nothing.
        `like`: a prepared batch this one is a part of (the writes of it that take effect):
        the fields it introduces keep the kinds inferred from all of it, as they would if
        its items were written one by one."""
        if like is None:
            return prepare_batch(attributes, self._kinds, self._allowed, len(self._fields))
        kinds = {**self._kinds, **like.new_fields}
        out = prepare_batch(attributes, kinds, self._allowed, len(self._fields))
        out.new_fields = dict(like.new_fields)
        return out

    def write(self, rows: torch.Tensor, prepared: PreparedAttributes) -> None:
        """Give rows[i] the attributes of item i of the prepared batch, replacing what they
        held. rows: int64 CPU tensor of distinct rows < capacity."""
        if prepared.epoch != len(self._fields):  # fields were added since: check again
            prepared = self.prepare(prepared.source)
        rows_np = self._rows(rows)
        if rows_np.shape[0] != prepared.count:
            raise ValueError(f"{rows_np.shape[0]} rows for {prepared.count} prepared items")
        self._clear(rows_np)
        for name, kind in prepared.new_fields.items():
            self._add_field(name, kind)
        rows_dev = torch.from_numpy(rows_np).to(self.device)
        items_out: list[np.ndarray] = []
        bits_out: list[np.ndarray] = []
        for name, col in prepared.columns.items():
            f = self._fields[name]
            items = np.asarray(col.items, np.int64)
            items_out.append(items)
            bits_out.append(np.full(items.shape[0], f.present_bit, np.int64))
            if f.kind == "keyword":
                self._write_keyword(f, col.values, col.is_list, items, rows_np, items_out, bits_out)
            elif f.kind == "bool":
                true = items[np.asarray(col.values, bool)]
                items_out.append(true)
                bits_out.append(np.full(true.shape[0], f.flag_bit, np.int64))
            else:
                assert f.column is not None
                vals = torch.tensor(col.values, dtype=f.column.dtype).to(self.device)
                f.column[rows_dev[torch.from_numpy(items).to(self.device)]] = vals
        items_all = np.concatenate(items_out) if items_out else np.zeros(0, np.int64)
        bits_all = np.concatenate(bits_out) if bits_out else np.zeros(0, np.int64)
        self._bits.set_rows(rows_dev, items_all, bits_all)

    def _write_keyword(
        self,
        f: Field,
        values: list[tuple[str, ...]],
        is_list: list[bool],
        items: np.ndarray,
        rows_np: np.ndarray,
        items_out: list[np.ndarray],
        bits_out: list[np.ndarray],
    ) -> None:
        vocab, names = f.vocab, f.values
        ids: list[int] = []
        for vs in values:
            for s in vs:
                vid = vocab.get(s)
                if vid is None:
                    vid = vocab[s] = len(names)
                    names.append(s)
                    f.vocab_bytes += 100 + len(s)
                ids.append(vid)
        vids = np.asarray(ids, np.int64)
        counts = np.fromiter(map(len, values), np.int64, len(values))
        if f.postings is None and len(names) > self._bitmap_max:
            self._to_postings(f)
        if f.postings is None:
            while len(f.value_bits) < len(names):
                f.value_bits.append(self._bits.alloc())
            items_out.append(np.repeat(items, counts))
            bits_out.append(np.asarray(f.value_bits, np.int64)[vids])
        else:
            f.postings.add(rows_np[items], counts, vids.astype(np.int32), self._gen)
        listed = items[np.asarray(is_list, bool)]
        items_out.append(listed)
        bits_out.append(np.full(listed.shape[0], f.flag_bit, np.int64))

    def _to_postings(self, f: Field) -> None:
        """Move a keyword field from value bits to posting lists (once, O(rows x values))."""
        n = self._capacity
        row_parts, vid_parts = [], []
        for vid, bit in enumerate(f.value_bits):
            rows = torch.nonzero(self._bits.test(bit, n)).flatten().cpu().numpy()
            row_parts.append(rows)
            vid_parts.append(np.full(rows.shape[0], vid, np.int64))
        rows = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
        vids = np.concatenate(vid_parts) if vid_parts else np.zeros(0, np.int64)
        order = np.lexsort((vids, rows))
        row_len = np.bincount(rows, minlength=n).astype(np.int32)
        f.postings = Postings.from_row_values(row_len, vids[order], len(f.values), self._gen)
        self._bits.release(f.value_bits)
        f.value_bits = []

    def clear(self, rows: torch.Tensor) -> None:
        """Remove every attribute of these rows."""
        self._clear(np.unique(self._rows(rows, unique=False)))

    def _clear(self, rows_np: np.ndarray) -> None:
        if rows_np.size == 0:
            return
        self._gen[rows_np] += 1
        for f in self._fields.values():
            if f.postings is not None:
                f.postings.remove(rows_np, self._gen)
        self._bits.clear_rows(torch.from_numpy(rows_np).to(self.device))

    def _rows(self, rows: torch.Tensor, unique: bool = True) -> np.ndarray:
        r = np.asarray(rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else rows)
        r = r.astype(np.int64, copy=False).reshape(-1)
        if r.size and (r.min() < 0 or r.max() >= self._capacity):
            raise ValueError(f"rows must be in [0, {self._capacity}), got {r.min()}..{r.max()}")
        if unique and np.unique(r).size != r.size:
            raise ValueError("rows written in one batch must be distinct")
        return r

    def grow(self, capacity: int) -> None:
        """Rows [old capacity, capacity) become empty rows."""
        self.prepare_grow(capacity)()

    def prepare_grow(self, capacity: int) -> Callable[[], None]:
        """Build the grown arrays now and return what installs them (see VectorStore)."""
        if capacity < self._capacity:
            raise ValueError(f"cannot shrink attributes from {self._capacity} to {capacity} rows")
        extra = capacity - self._capacity
        if extra == 0:
            return lambda: None
        words = self._bits.grown(capacity)
        gen = np.concatenate([self._gen, np.zeros(extra, np.uint32)])
        columns: dict[str, torch.Tensor] = {}
        postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, f in self._fields.items():
            if f.column is not None:
                pad = torch.zeros(extra, dtype=f.column.dtype, device=self.device)
                columns[name] = torch.cat([f.column, pad])
            if f.postings is not None:
                postings[name] = f.postings.grown(capacity)

        def install() -> None:
            self._bits.words, self._gen = words, gen
            for name, column in columns.items():
                self._fields[name].column = column
            for name, (row_off, row_len) in postings.items():
                pl = self._fields[name].postings
                assert pl is not None
                pl.row_off, pl.row_len = row_off, row_len
            self._capacity = capacity

        return install

    # ---- reads ----------------------------------------------------------------------------
    def get(self, row: int) -> dict[str, Any]:
        """The attributes of one row. Keyword lists come back without duplicates, in the
        order their values were first seen by the field; ints in float fields as floats."""
        return self.get_many([row])[0]

    def get_many(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """The attributes of each row (as `get`), reading the bit words in one transfer."""
        for row in rows:
            if not 0 <= row < self._capacity:
                raise ValueError(f"row {row} is outside [0, {self._capacity})")
        if not rows:
            return []
        index = torch.as_tensor(list(rows), dtype=torch.int64, device=self.device)
        words = self._bits.words[:, index].T.tolist()  # [n, n_words] Python ints
        return [self._decode(row, w) for row, w in zip(rows, words, strict=True)]

    def _decode(self, row: int, words: list[int]) -> dict[str, Any]:
        def bit(b: int) -> bool:
            return bool((words[b >> 6] >> (b & 63)) & 1)

        out: dict[str, Any] = {}
        for name, f in self._fields.items():
            if not bit(f.present_bit):
                continue
            if f.kind == "keyword":
                if f.postings is None:
                    ids = [i for i, b in enumerate(f.value_bits) if bit(b)]
                else:
                    ids = sorted(f.postings.values_of(row))
                vals = [f.values[i] for i in ids]
                out[name] = vals if bit(f.flag_bit) else vals[0]
            elif f.kind == "bool":
                out[name] = bit(f.flag_bit)
            else:
                assert f.column is not None
                out[name] = f.column[row].item()
        return out

    def mask(self, node: Any, capacity: int) -> torch.Tensor:
        """bool [capacity] on the device: rows whose attributes satisfy the filter (empty
        rows included: `not` filters match them; AND the result with the live rows).
        node: a parsed filter (or a string / JSON form); None: every row. Raises
        FilterError for an unknown field or an operator or value that does not fit the
        field's kind."""
        return compile_mask(self, node, capacity)

    def memory_bytes(self) -> int:
        total = self._bits.nbytes() + self._gen.nbytes
        for f in self._fields.values():
            total += f.vocab_bytes
            if f.column is not None:
                total += f.column.numel() * f.column.element_size()
            if f.postings is not None:
                total += f.postings.nbytes()
        return total

    # ---- persistence ----------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return store_state(self)

    @classmethod
    def from_state(
        cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], device: torch.device
    ) -> AttributeStore:
        return load_state(cls, tensors, meta, device)
