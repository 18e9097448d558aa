"""Applying a decoded batch to the index: per-key offset order, versions, and bad items
pinned on the message that carries them.

The whole batch is applied inside `index.write_batch()`: no other writer runs between its
calls, while searches go on between them and see the batch's writes in offset order (per
key), up to some point. Each call validates its items before it takes the index's search
lock, so searches wait only for the part that changes tensors.
Inside, messages are grouped into runs whose upserts go to one `index.upsert` call and
whose deletes go to one `index.delete` call. Upserts and deletes of one run touch different
keys (so their relative order does not matter) and a run holds at most one delete per key;
a message that would break this starts a new run. Repeated upserts of one key may share a
run: `index.upsert` applies duplicates in order (last writer wins, stale versions ignored),
and validates every one of them, so a bad message is never hidden behind a later good one.

`index.upsert` validates a whole call and raises `InvalidInput` on the first bad item (an
attribute of the wrong kind, say) without changing anything. The applier then bisects: left
half, then right half, down to the single bad message, which is dead-lettered. Left before
right keeps offset order, so a message is rejected exactly when applying messages one by one
would reject it. Any other exception is no message's fault (a bug, out of memory): it
propagates, and the ingester retries from the offsets applied so far.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingest.messages import BadMessage, Decoded, Op, Rejected, id_from_key
from linr import Index, InvalidInput

log = logging.getLogger("linr.ingest")


@dataclass
class Outcome:
    applied: int = 0  # messages now in effect (or overwritten by a later one in the batch)
    ignored_stale: int = 0  # messages ignored because their version was below the item's
    rejected: list[Rejected] = field(default_factory=list)  # for the dead-letter topic
    # A failure that is no message's fault (a bug, out of memory) stops the batch: `ops_done` ops
    # (a prefix of batch.ops) are in effect, the rest are not and must be read again.
    error: BaseException | None = None
    ops_done: int = 0


@dataclass
class _Run:
    upserts: list[Op] = field(default_factory=list)
    upsert_keys: set[bytes] = field(default_factory=set)
    deletes: list[Op] = field(default_factory=list)
    delete_keys: set[bytes] = field(default_factory=set)

    def add(self, op: Op) -> bool:
        """Add `op`; False (and nothing added) when it must start a new run."""
        if op.key in self.delete_keys:
            return False
        if op.kind == "upsert":
            self.upserts.append(op)
            self.upsert_keys.add(op.key)
        else:
            if op.key in self.upsert_keys:
                return False
            self.deletes.append(op)
            self.delete_keys.add(op.key)
        return True


def apply(index: Index, batch: Decoded) -> Outcome:
    """Apply `batch` to `index`, no other writer between its messages. Never raises: a
    failure that is no message's fault is returned in `Outcome.error`, with how far the
    batch got."""
    out = Outcome()
    run = _Run()
    with index.write_batch():
        if all(op.kind == "upsert" for op in batch.ops):  # the common case: one run
            run.upserts = batch.ops
            _flush_counted(index, batch, run, out)
            return out
        for op in batch.ops:
            if not run.add(op):
                if not _flush_counted(index, batch, run, out):
                    return out
                run = _Run()
                run.add(op)
        _flush_counted(index, batch, run, out)
    return out


def _flush_counted(index: Index, batch: Decoded, run: _Run, out: Outcome) -> bool:
    """Apply one run; False (with out.error set, and the run's dead letters dropped, as its
    messages will be read again) when it failed systemically. The ops of a run that failed
    halfway may be applied again when read again: the same writes in the same order, so the
    index ends as if they had been applied once."""
    n_rejected = len(out.rejected)
    try:
        _flush(index, batch, run, out)
    except Exception as e:  # noqa: BLE001 - InvalidInput never gets here (see _upsert)
        out.error = e
        del out.rejected[n_rejected:]
        return False
    out.ops_done += len(run.upserts) + len(run.deletes)
    return True


def _resolve(index: Index, ops: list[Op], out: Outcome) -> list[tuple[Op, int | str]]:
    """(op, id) pairs; ids from keys are read now that the index's id kind is known, and an
    id of the other kind is rejected here rather than failing the whole call."""
    kind = index.id_kind
    ids = [op.id for op in ops]
    want_type = {"int": int, "str": str}.get(kind or "")
    if want_type is not None and all(type(i) is want_type for i in ids):
        return list(zip(ops, ids))  # type: ignore[arg-type]  # fast path: no None, one kind
    good: list[tuple[Op, int | str]] = []
    for op in ops:
        try:
            id_ = op.id if op.id is not None else id_from_key(op.key, kind)
        except BadMessage as e:
            out.rejected.append(Rejected(op.record, str(e)))
            continue
        if kind is not None and (kind == "int") != isinstance(id_, int):
            want = "integer" if kind == "int" else "string"
            out.rejected.append(
                Rejected(
                    op.record, f"id {id_!r} is not a {want} id, and this index uses {want} ids"
                )
            )
            continue
        good.append((op, id_))
    return good


def _ids_arg(ids: list[int | str]) -> Any:
    if ids and all(type(i) is int for i in ids):
        return np.asarray(ids, dtype=np.int64)
    return ids


def _flush(index: Index, batch: Decoded, run: _Run, out: Outcome) -> None:
    if run.upserts:
        _upsert(index, batch, _resolve(index, run.upserts, out), out)
    if run.deletes:
        _delete(index, _resolve(index, run.deletes, out), out)


def _upsert(index: Index, batch: Decoded, items: list[tuple[Op, int | str]], out: Outcome) -> None:
    if not items:
        return
    ops = [op for op, _ in items]
    versions = [op.version for op in ops]
    try:
        res = index.upsert(
            _ids_arg([i for _, i in items]),
            batch.vectors[[op.row for op in ops]],
            attributes=[op.attributes for op in ops],
            versions=None if all(v is None for v in versions) else versions,
        )
    except InvalidInput as e:
        if len(items) == 1:
            out.rejected.append(Rejected(ops[0].record, str(e)))
            return
        mid = len(items) // 2
        _upsert(index, batch, items[:mid], out)
        _upsert(index, batch, items[mid:], out)
        return
    stale = int(res.stale.sum())  # superseded writes of a key count as applied
    out.applied += len(items) - stale
    out.ignored_stale += stale


def _delete(index: Index, items: list[tuple[Op, int | str]], out: Outcome) -> None:
    if not items:
        return
    ids = [i for _, i in items]
    versions = [op.version for op, _ in items]
    versioned = any(v is not None for v in versions)
    try:
        removed = index.delete(_ids_arg(ids), versions=versions if versioned else None)
    except InvalidInput as e:
        if len(items) == 1:
            out.rejected.append(Rejected(items[0][0].record, str(e)))
            return
        mid = len(items) // 2
        _delete(index, items[:mid], out)
        _delete(index, items[mid:], out)
        return
    stale = 0
    if versioned:
        # A versioned delete that removed nothing was stale if the item is still there
        # (else there was nothing to delete: a no-op, which counts as applied).
        stale = sum(
            1
            for (op, id_), gone in zip(items, removed.tolist(), strict=True)
            if not gone and op.version is not None and id_ in index
        )
    out.applied += len(items) - stale
    out.ignored_stale += stale
