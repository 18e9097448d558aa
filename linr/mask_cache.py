"""Masks of recent filters, kept until the next write: a service sees the same few filters
again and again, and building a mask costs more than a single-query scan of the rows it
allows (1M rows: ~1.1 ms per bitmap word tested, benchmarks/bench_filters.py; 1.3 ms more
to list the allowed rows), while a write changes every mask."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from linr.filters import FilterNode, filter_to_json, parse_filter

# Filters remembered. A mask is 1 byte per row and its row list 8 bytes per allowed row.
_MASKS = 16
_PARSED = 256  # parsed string filters (no size but the text's)


class Allowed:
    """The rows a filter allows: mask bool [n_rows], and its count and rows when asked."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask
        self._count: int | None = None
        self._rows: torch.Tensor | None = None

    def count(self) -> int:
        if self._count is None:
            self._count = int(self.mask.sum())
        return self._count

    def rows(self) -> torch.Tensor:
        """int64 [count] allowed rows, ascending."""
        if self._rows is None:
            self._rows = torch.nonzero(self.mask).flatten()
        return self._rows


class MaskCache:
    """Not thread-safe: the index's lock guards it, like the tensors the masks come from."""

    def __init__(self) -> None:
        self._masks: OrderedDict[str, Allowed] = OrderedDict()
        self._parsed: OrderedDict[str, tuple[FilterNode | None, str]] = OrderedDict()

    def clear(self) -> None:
        """After any write: rows, attributes or liveness may have changed."""
        self._masks.clear()

    def get(self, key: str, build: Callable[[], torch.Tensor]) -> Allowed:
        hit = self._masks.get(key)
        if hit is None:
            hit = self._masks[key] = Allowed(build())
            if len(self._masks) > _MASKS:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(key)
        return hit

    def parse(self, f: Any) -> tuple[FilterNode | None, str]:
        """(parse_filter(f), its key: the canonical JSON form, "" for no filter),
        remembered for string filters (JSON forms are parsed each time)."""
        if not isinstance(f, str):
            return _keyed(parse_filter(f))
        hit = self._parsed.get(f)
        if hit is None:
            hit = self._parsed[f] = _keyed(parse_filter(f))
            if len(self._parsed) > _PARSED:
                self._parsed.popitem(last=False)
        return hit


def _keyed(node: FilterNode | None) -> tuple[FilterNode | None, str]:
    return node, "" if node is None else json.dumps(filter_to_json(node), sort_keys=True)
