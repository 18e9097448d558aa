"""The ingester waits for searches (holders of index.lock) to finish before decoding and
applying, up to `yield_to_searches_ms`. No broker needed: the wait is tested on its own.
Bounds are loose on purpose (shared machine): they check which way it went, not speed."""

import threading
import time

import numpy as np

import linr
from ingest import Ingester, IngestSettings


def _ingester(ms: float) -> Ingester:
    index = linr.Index(4, device="cpu")
    index.upsert([1], np.ones((1, 4), np.float32))
    return Ingester(index, IngestSettings(bootstrap="127.0.0.1:9", yield_to_searches_ms=ms))


def _hold(lock, seconds: float, held: threading.Event) -> None:
    with lock:
        held.set()
        time.sleep(seconds)


def _timed_yield(ing: Ingester, hold_s: float) -> float:
    held = threading.Event()
    t = threading.Thread(target=_hold, args=(ing.index.lock, hold_s, held))
    t.start()
    assert held.wait(10)
    t0 = time.monotonic()
    ing._yield_to_searches()
    took = time.monotonic() - t0
    t.join()
    return took


def test_waits_for_a_search_to_finish():
    took = _timed_yield(_ingester(5_000), 0.1)
    assert 0.05 <= took < 4.0  # waited for the release (at ~0.1 s), not the 5 s limit


def test_gives_up_after_the_limit():
    took = _timed_yield(_ingester(30), 2.0)
    assert 0.025 <= took < 1.5  # ~30 ms, well before the 2 s release


def test_zero_never_waits_and_a_free_index_costs_nothing():
    assert _timed_yield(_ingester(0), 1.0) < 0.5
    ing = _ingester(5_000)
    t0 = time.monotonic()
    ing._yield_to_searches()
    assert time.monotonic() - t0 < 0.5
