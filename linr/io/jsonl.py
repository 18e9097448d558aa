"""JSON Lines inputs: attributes (one object per vector) and per-query filters.

Every problem is an InvalidInput naming the file and the 1-based line number.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from linr.errors import InvalidInput
from linr.io.vectors import PathLike

Filter = dict[str, Any] | str


def iter_json_lines(path: PathLike) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value) for each line; a blank line gives None.

    Lines are parsed one by one with json.loads (bytes in, so a bad UTF-8 sequence is
    reported with its line number like any other error).
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                yield lineno, None
                continue
            try:
                yield lineno, json.loads(raw)
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
                raise InvalidInput(f"{path} line {lineno}: invalid JSON: {e}") from None
            except RecursionError:  # json.loads recurses once per level of nesting
                raise InvalidInput(
                    f"{path} line {lineno}: JSON nested too deeply to read "
                    f"(over {sys.getrecursionlimit()} levels)"
                ) from None


def count_records(path: PathLike) -> int:
    """Lines of a JSON Lines file up to its last non-blank one (blank lines at the end are
    not records)."""
    records = pending = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                records += pending + 1
                pending = 0
            else:
                pending += 1
    return records


def iter_attributes_jsonl(path: PathLike) -> Iterator[dict[str, Any] | None]:
    """Yield the attributes of vector i from line i+1: a dict, or None for a blank/`null` line.

    An `"id"` key is left in the dict; `iter_item_batches` decides whether it is the id.
    """
    for lineno, value in iter_json_lines(path):
        if value is None or isinstance(value, dict):
            yield value
        else:
            raise InvalidInput(
                f"{path} line {lineno}: expected a JSON object of attributes, "
                f"got {type(value).__name__} {_short(value)}"
            )


def read_filters_jsonl(path: PathLike) -> list[Filter | None]:
    """Line i: the filter of query i, as a JSON object (canonical form) or a JSON string
    (string form); `null`, `{}` or a blank line for no filter."""
    out: list[Filter | None] = []
    for lineno, value in iter_json_lines(path):
        if value is None or value == {} or value == "":
            out.append(None)
        elif isinstance(value, (dict, str)):
            out.append(value)
        else:
            raise InvalidInput(
                f"{path} line {lineno}: expected a filter (JSON object, string, or null), "
                f"got {type(value).__name__} {_short(value)}"
            )
    return out


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
