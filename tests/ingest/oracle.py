"""The plain reference for applying messages: one message at a time, with plain index calls.

The batch applier (ingest/apply.py) and the crash-recovery test are both checked against it.
"""

from __future__ import annotations

from typing import Any

import linr
from ingest.messages import Record, decode, id_from_key


def apply_one_by_one(index: linr.Index, records: list[Record]) -> tuple[int, int, list[int]]:
    """Apply each message alone, in order: (applied, ignored as stale, rejected offsets)."""
    applied = stale = 0
    rejected: list[int] = []
    for r in records:
        d = decode([r], index.dim)
        if d.rejected:
            rejected.append(r.offset)
            continue
        op = d.ops[0]
        try:
            id_ = op.id if op.id is not None else id_from_key(op.key, index.id_kind)
            vers = None if op.version is None else [op.version]
            if op.kind == "upsert":
                res = index.upsert([id_], d.vectors[[op.row]], [op.attributes], versions=vers)
                ok = bool(res.applied[0])
            else:
                before = id_ in index
                gone = bool(index.delete([id_], versions=vers)[0])
                ok = gone or not before
        except ValueError:
            rejected.append(r.offset)
            continue
        applied += ok
        stale += not ok
    return applied, stale, rejected


def index_state(index: linr.Index) -> dict[Any, tuple[list[float], dict[str, Any], int | None]]:
    """id -> (stored vector, attributes, version) of every item."""
    out = {}
    for id_ in index.ids():
        item = index.get(id_)
        assert item is not None
        out[id_] = (item.vector.tolist(), item.attributes, item.version)
    return out
