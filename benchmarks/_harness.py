"""What every benchmark here shares, written once: timers (warm-up first; CUDA events on a
GPU), the memory-bandwidth floor, percentiles, and CSV rows appended with the date and the
machine. A benchmark script is its setup plus calls to these (run from the repository root:
`python benchmarks/bench_search.py`)."""

from __future__ import annotations

import csv
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def timed(
    fn: Callable[[], object],
    repeats: int = 5,
    *,
    device: torch.device | str = "cpu",
    warmup: int = 1,
    max_s: float = 0.0,
    max_repeats: int = 100,
) -> list[float]:
    """Seconds per call, after `warmup` calls: `repeats` of them, and more (up to
    `max_repeats`) while less than `max_s` has passed. On CUDA, timed with events."""
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - t0 < max_s and len(times) < max_repeats):
        if dev.type == "cuda":
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return times


def median_s(fn: Callable[[], object], repeats: int = 5, **kw: Any) -> float:
    return statistics.median(timed(fn, repeats, **kw))


def paired(
    ours: Callable[[], object], base: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of alternating runs, so that both sides see the same background load
    (the machine these ran on is shared)."""
    ours()
    base()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        for fn, out in ((ours, a), (base, b)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def copy_bandwidth(device: torch.device | str = "cpu", nbytes: int = 1 << 27) -> float:
    """Bytes/s of a large memory copy on `device`, counting the bytes read plus the bytes
    written (what a copy moves): the rate a scan that only reads may approach."""
    dev = torch.device(device)
    src = torch.ones(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    return 2 * nbytes / median_s(lambda: dst.copy_(src), 10, device=dev, max_s=1.0)


def floor_s(nbytes: float, bandwidth: float) -> float:
    """The least time to read `nbytes` at `bandwidth` (copy_bandwidth's bytes/s)."""
    return nbytes / bandwidth


def pct(xs: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100) of xs; NaN when there are none."""
    arr = np.asarray(list(xs), np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def machine() -> str:
    """Host name, CPU count and torch's thread count: shared machines make this matter."""
    return f"{platform.node()} {os.cpu_count()} cpus {torch.get_num_threads()} threads"


def append_rows(path: str | Path, rows: list[Mapping[str, Any]], **common: Any) -> Path:
    """Append `rows` (with `date`, `machine` and the `common` fields first) to a CSV file,
    writing the header when the file is new; an existing file keeps its own columns.
    Returns the path."""
    path = Path(path)
    if not rows:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    lead = {"date": stamp, "machine": machine(), **common}
    fields = list(dict.fromkeys([*lead, *rows[0]]))
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as f:
            fields = next(csv.reader(f))
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({**lead, **r})
    return path
