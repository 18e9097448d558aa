"""The cyclic garbage collector paused while one batch is read, decoded and applied.

A batch of 5,000 upserts allocates some 30,000 container objects (records, parsed values,
attribute dicts, ops) that all live until the batch is applied, so the collector's
allocation-driven passes keep re-scanning them for nothing: measured on the 2-core dev
machine, decode + apply took 12-32 us per upsert with the collector on and 11 us with it
paused (benchmarks/bench_ingest.py, BENCHMARKS.md). When the batch is done it is garbage
without cycles, freed by reference counting, and the first allocation after the pause runs
the collection that is due. The pause covers decoding and applying one batch, and the
poll before it while records flow; never a poll that may wait up to its timeout (100 ms)
for records after an empty one.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the collector for the block, unless something else has already paused it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
