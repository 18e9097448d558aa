"""Items from files: a vector file, optional attributes (JSON Lines) and optional ids (text).

`iter_item_batches` is what `linr build` and `linr produce` stream: it pairs row i of the
vector file with line i of the attributes and ids, and decides where ids come from:

    --ids IDS given        -> from IDS (an "id" key in the attributes is then ignored)
    attributes with "id"   -> from that key, on every line
    otherwise              -> the row numbers 0..n-1
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from linr.errors import InvalidInput
from linr.io.jsonl import iter_attributes_jsonl
from linr.io.vectors import PathLike, iter_vector_chunks, read_vectors_lazy

_MAX_ID = 2**63 - 1
_MAX_STR_ID_BYTES = 256


@dataclass
class ItemBatch:
    start: int  # row of the first item in the vector file
    ids: np.ndarray | list[str]  # int64 [b] or b strings
    vectors: np.ndarray  # float32 [b, d], C-contiguous
    attributes: list[dict[str, Any] | None] | None  # None when no attributes file


def read_ids(path: PathLike) -> np.ndarray | list[str]:
    """Ids from a text file, one per line: int64 array when every line is a decimal integer
    (0 .. 2^63-1), else the lines as strings (1 to 256 UTF-8 bytes each). Integers with a
    negative one among them are an error, not strings."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InvalidInput(f"{path} line {line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    lines = [s[:-1] if s.endswith("\r") else s for s in lines]
    for i, s in enumerate(lines):
        if not s:
            raise InvalidInput(f"{path} line {i + 1}: empty id")
    if all(s.isascii() and s.lstrip("-").isdigit() for s in lines) and any(
        s.startswith("-") for s in lines
    ):
        # Integers, some negative: an integer id out of range, not a reason to switch every
        # id to a string without a word.
        i = next(i for i, s in enumerate(lines) if s.startswith("-"))
        raise InvalidInput(
            f"{path} line {i + 1}: id {lines[i]} is negative; integer ids are in [0, 2^63)"
        )
    if all(s.isascii() and s.isdigit() for s in lines):
        for i, s in enumerate(lines):
            if len(s) >= 19 and int(s) > _MAX_ID:
                raise InvalidInput(f"{path} line {i + 1}: id {s} is not below 2^63")
        return np.array([int(s) for s in lines], dtype=np.int64)
    for i, s in enumerate(lines):
        if len(s) > _MAX_STR_ID_BYTES // 4 and len(s.encode("utf-8")) > _MAX_STR_ID_BYTES:
            raise InvalidInput(
                f"{path} line {i + 1}: string id has {len(s.encode('utf-8'))} UTF-8 bytes; "
                f"at most {_MAX_STR_ID_BYTES} allowed"
            )
    return lines


def count_lines(path: PathLike) -> int:
    """Number of lines (a last line without a newline counts)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def iter_item_batches(
    vectors: PathLike,
    attributes: PathLike | None = None,
    ids: PathLike | None = None,
    batch_rows: int = 65536,
) -> Iterator[ItemBatch]:
    """Yield the items of the files in batches of at most batch_rows, in file order.

    Counts are checked up front where that is cheap (ids, attribute line count), so a
    mismatch fails before any work. Vectors with NaN or infinite values are rejected with
    their row number.
    """
    n, _ = read_vectors_lazy(vectors).shape
    id_list = None if ids is None else read_ids(ids)
    if id_list is not None and len(id_list) != n:
        raise InvalidInput(f"{ids} has {len(id_list)} ids but {vectors} has {n} vectors")
    lines = None
    if attributes is not None:
        n_lines = count_lines(attributes)
        if n_lines < n:
            raise InvalidInput(
                f"{attributes} has {n_lines} lines but {vectors} has {n} vectors "
                "(one line of attributes per vector)"
            )
        lines = iter_attributes_jsonl(attributes)
    id_reader = _IdsFromAttributes(attributes) if attributes is not None and ids is None else None

    start = 0
    for x in iter_vector_chunks(vectors, batch_rows):
        b = x.shape[0]
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            raise InvalidInput(f"{vectors} row {start + int(bad[0])} has NaN or infinite values")
        attrs: list[dict[str, Any] | None] | None = None
        if lines is not None:
            attrs = list(islice(lines, b))
        batch_ids: np.ndarray | list[str]
        if id_list is not None:
            batch_ids = id_list[start : start + b]
            for a in attrs or ():
                if a is not None:
                    a.pop("id", None)
        elif id_reader is not None and attrs is not None:
            batch_ids = id_reader.take(attrs, start)
        else:
            batch_ids = np.arange(start, start + b, dtype=np.int64)
        if attrs is not None:
            attrs = [a or None for a in attrs]  # {} after taking the id: no attributes
        yield ItemBatch(start, batch_ids, x, attrs)
        start += b

    if lines is not None:
        for extra, a in enumerate(lines, n + 1):
            if a is not None:
                raise InvalidInput(
                    f"{attributes} line {extra} has attributes but {vectors} has only {n} vectors"
                )


class _IdsFromAttributes:
    """Takes the "id" key out of each attributes line, checking that every line has one and
    that all ids are of one kind (an integer in JSON is an integer id, a string a string id)."""

    def __init__(self, path: PathLike) -> None:
        self.path = path
        self.kind: str | None = None  # "int" | "str" | "none" (row numbers)

    def take(self, attrs: list[dict[str, Any] | None], start: int) -> np.ndarray | list[str]:
        if self.kind is None:
            first = attrs[0] if attrs else None
            if first is None or "id" not in first:
                self.kind = "none"
            else:
                self.kind = "str" if isinstance(first["id"], str) else "int"
        if self.kind == "none":
            for i, a in enumerate(attrs):
                if a is not None and "id" in a:
                    raise InvalidInput(
                        f'{self.path} line {start + i + 1} has an "id" but line 1 does not: '
                        "give every line an id, or none"
                    )
            return np.arange(start, start + len(attrs), dtype=np.int64)
        out: list[Any] = []
        for i, a in enumerate(attrs):
            v = a.pop("id", _MISSING) if a is not None else _MISSING
            if v is _MISSING:
                raise InvalidInput(
                    f'{self.path} line {start + i + 1} has no "id" but line 1 does: '
                    "give every line an id, or none"
                )
            out.append(v)
        return self._check(out, start)

    def _check(self, values: list[Any], start: int) -> np.ndarray | list[str]:
        if self.kind == "str":
            for i, v in enumerate(values):
                if not isinstance(v, str):
                    raise InvalidInput(self._kind_error(start + i, v))
                if not 1 <= len(v.encode("utf-8")) <= _MAX_STR_ID_BYTES:
                    raise InvalidInput(
                        f"{self.path} line {start + i + 1}: string id {v[:40]!r} must have "
                        f"1 to {_MAX_STR_ID_BYTES} UTF-8 bytes"
                    )
            return values
        for i, v in enumerate(values):
            if type(v) is not int:  # bool and float ids are rejected, not cast
                raise InvalidInput(self._kind_error(start + i, v))
            if not 0 <= v <= _MAX_ID:
                raise InvalidInput(
                    f"{self.path} line {start + i + 1}: id {v} is out of range [0, 2^63)"
                )
        return np.array(values, dtype=np.int64)

    def _kind_error(self, row: int, v: Any) -> str:
        kind = "a string" if self.kind == "str" else "an integer"
        return (
            f"{self.path} line {row + 1}: id {v!r} is not {kind} "
            f"(line 1 has {kind} id; one kind per index)"
        )


_MISSING = object()
