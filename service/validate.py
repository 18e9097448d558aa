"""Checks that depend on the loaded index or on settings, run before a request is queued.

Each raises `ApiError` 422 whose message names the field (`body.vector`, `queries[2].filter`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from linr.errors import InvalidInput
from service.batcher import Query
from service.errors import ApiError, invalid
from service.models import SearchRequest
from service.settings import Settings

_F32_MAX = float(np.finfo(np.float32).max)


def check_vectors(values: list[list[float]], dim: int, locate: Callable[[int], str]) -> np.ndarray:
    """float32 [n, dim] from validated JSON lists (finite in float64 already); `locate(i)`
    names vector i in messages, e.g. `body.items[3].vector`."""
    for i, v in enumerate(values):
        if len(v) != dim:
            raise invalid(f"{locate(i)}: has {len(v)} values; the index has dimension {dim}")
    x = np.asarray(values, dtype=np.float64)
    if x.size and float(np.abs(x).max()) > _F32_MAX:
        row, col = np.argwhere(np.abs(x) > _F32_MAX)[0]
        value = float(x[row, col])
        raise invalid(f"{locate(int(row))}[{col}]: {value!r} does not fit in float32")
    return x.astype(np.float32)


def filter_depth(f: Any) -> int:
    """Nesting depth of and/or/not in a filter's JSON form (a leaf is 1). Iterative, so a
    hostile body cannot exhaust the stack here."""
    depth = 0
    stack = [(f, 1)]
    while stack:
        node, d = stack.pop()
        depth = max(depth, d)
        if isinstance(node, dict):
            for key in ("and", "or"):
                sub = node.get(key)
                if isinstance(sub, list):
                    stack.extend((s, d + 1) for s in sub)
            if "not" in node:
                stack.append((node["not"], d + 1))
    return depth


def check_filter(f: Any, settings: Settings, where: str) -> tuple[Any, str]:
    """(filter to pass to the index, canonical key for grouping equal filters)."""
    from linr.filters import filter_to_json, parse_filter

    if f is None or f == {}:
        return None, ""
    if isinstance(f, str) and len(f) > settings.max_filter_chars:
        raise invalid(
            f"{where}: filter has {len(f)} characters; the limit is {settings.max_filter_chars}"
        )
    if isinstance(f, dict) and filter_depth(f) > settings.max_filter_depth:
        raise invalid(f"{where}: filter nests deeper than {settings.max_filter_depth} levels")
    try:
        node = parse_filter(f)
    except RecursionError:
        raise ApiError(422, "invalid_filter", f"{where}: filter nests too deeply") from None
    except InvalidInput as e:
        raise ApiError(422, "invalid_filter", f"{where}: {e}") from None
    if node is None:
        return None, ""
    canonical = filter_to_json(node)
    if filter_depth(canonical) > settings.max_filter_depth:
        raise invalid(f"{where}: filter nests deeper than {settings.max_filter_depth} levels")
    return canonical, json.dumps(canonical, sort_keys=True)


def to_query(req: SearchRequest, dim: int, settings: Settings, where: str) -> Query:
    f, key = check_filter(req.filter, settings, f"{where}filter")
    if req.vector is not None:
        vec = check_vectors([req.vector], dim, lambda _: f"{where}vector")[0]
        over = req.oversample or settings.oversample
        return Query(vec, req.k, f, key, None, req.include_attributes, over)
    assert req.vectors is not None  # the model ensures one of the two
    if len(req.vectors) > settings.max_vectors_per_query:
        raise invalid(
            f"{where}vectors: {len(req.vectors)} vectors; the limit is "
            f"{settings.max_vectors_per_query} per query"
        )
    mat = check_vectors(req.vectors, dim, lambda i: f"{where}vectors[{i}]")
    over = req.oversample or settings.oversample
    return Query(mat, req.k, f, key, req.aggregate or "max", req.include_attributes, over)


def check_id(item_id: int | str, where: str) -> int | str:
    if isinstance(item_id, str) and len(item_id.encode()) > 256:
        raise invalid(f"{where}: string id is {len(item_id.encode())} UTF-8 bytes; at most 256")
    return item_id


def parse_path_id(raw: str, id_kind: str | None) -> int | str:
    """`{id}` in a path: an integer for an integer-id index, else a string. An index with no
    items yet has no kind: then all-digit text is an integer id."""
    as_int = raw.isascii() and raw.isdigit()
    if id_kind == "int" or (id_kind is None and as_int):
        # Length first: int() of over 4,300 digits raises (Python's int-string limit).
        digits = raw.lstrip("0") or "0"
        if not as_int or len(digits) > 19 or int(digits) >= 2**63:
            shown = raw[:80] + ("..." if len(raw) > 80 else "")
            raise invalid(
                f"path id {shown!r} ({len(raw)} characters) is not an integer id in "
                "[0, 2^63); this index uses integer ids"
            )
        return int(digits)
    return check_id(raw, "path id")
