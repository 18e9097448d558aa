"""Benchmark of attribute filters: row-mask construction and attribute writes.

Two parts, both on the CPU (or --device cuda):

1. `--part threshold`: one single-valued keyword field at N rows, stored as a bitmap and
   as posting lists, for several vocabulary sizes: mask time of `eq` and of `in` over 8
   values, memory per row. This is what chose linr.attributes.store._BITMAP_MAX_VALUES.
2. `--part yfcc`: a YFCC-like high-cardinality tag field (the big-ann NeurIPS'23 filter
   track): N items, 200k-word vocabulary, Zipf-distributed tags, 5-15 (mean 10) per item.
   Build rate, mask times for frequent to rare tags and for AND of two tags, then 10% of
   the items replaced in batches of 1000 and 1% deleted, and the masks again.

    python benchmarks/bench_filters.py                     # both parts, N = 1M
    python benchmarks/bench_filters.py --part yfcc --n 100000 --threads 2

Times are medians (and minimums) of repeated calls after a warm-up. The machine this was
written on is shared: --threads 1 (the default) gives the steadiest numbers there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import timed  # noqa: E402

from linr.attributes import AttributeStore  # noqa: E402
from linr.filters import parse_filter  # noqa: E402


def mask_time(store: AttributeStore, expr: str, n: int, reps: int = 30) -> tuple[float, float, int]:
    """(median ms, min ms, matches) of building the mask of `expr` over n rows."""
    node = parse_filter(expr)
    ms = np.array(timed(lambda: store.mask(node, n), reps, device=store.device)) * 1e3
    return float(np.median(ms)), float(ms.min()), int(store.mask(node, n).sum())


def part_threshold(n: int, device: str) -> None:
    print(f"== bitmap vs postings, one single-valued keyword field, {n} rows ==")
    rng = np.random.default_rng(0)
    for v in (16, 64, 256, 1024):
        names = [f"v{i}" for i in range(v)]
        items = [{"k": names[i]} for i in rng.integers(0, v, n).tolist()]
        in8 = "k in [" + ", ".join(f'"v{i * (v // 8)}"' for i in range(8)) + "]"
        for storage, threshold in (("bitmap", 1 << 30), ("postings", 0)):
            store = AttributeStore(device, bitmap_max_values=threshold)
            store.grow(n)
            for a in range(0, n, 100_000):
                b = min(n, a + 100_000)
                store.write(torch.arange(a, b), store.prepare(items[a:b]))
            eq = mask_time(store, 'k == "v3"', n)
            anyof = mask_time(store, in8, n)
            print(
                f"values {v:5d} {storage:8s}  eq {eq[0]:6.2f} ms (min {eq[1]:5.2f})  "
                f"in[8] {anyof[0]:6.2f} ms (min {anyof[1]:5.2f})  "
                f"memory {store.memory_bytes() / n:6.1f} B/row"
            )


def part_yfcc(n: int, device: str) -> None:
    vocab, per, batch = 200_000, 10, 10_000
    print(f"== YFCC-like tags: {n} items, {vocab} words, Zipf, ~{per} tags per item ==")
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    names = np.array([f"w{i}" for i in range(vocab)], dtype=object)

    def make(k: int) -> list[dict[str, object]]:
        counts = rng.integers(per - 5, per + 6, k)
        ids = rng.choice(vocab, size=int(counts.sum()), p=p)
        tags = np.split(names[ids], np.cumsum(counts)[:-1])
        return [{"tags": t.tolist(), "lang": "en" if i % 3 else "fr"} for i, t in enumerate(tags)]

    store = AttributeStore(device)
    store.grow(n)
    t_prep = t_write = 0.0
    for start in range(0, n, batch):
        attrs = make(min(batch, n - start))
        t0 = time.perf_counter()
        prepared = store.prepare(attrs)
        t1 = time.perf_counter()
        store.write(torch.arange(start, start + len(attrs)), prepared)
        t_write += time.perf_counter() - t1
        t_prep += t1 - t0
    print(
        f"build, batches of {batch}: prepare {t_prep:.1f} s + write {t_write:.1f} s = "
        f"{n / (t_prep + t_write):,.0f} items/s; storage of tags: {store.storage_of('tags')}; "
        f"attribute memory {store.memory_bytes() / 1e6:,.0f} MB"
    )
    queries = [
        'tags == "w0"',
        'tags == "w99"',
        'tags == "w5000"',
        'tags == "w150000"',
        'tags all ["w0", "w1"]',
        'tags all ["w10", "w500"]',
        'tags in ["w100", "w200", "w300", "w400", "w500", "w600", "w700", "w800"]',
        'tags == "w3" and lang == "fr"',
    ]

    def report(title: str) -> None:
        print(title)
        for q in queries:
            med, low, hits = mask_time(store, q, n)
            print(f"  {q:74s} {med:7.2f} ms (min {low:6.2f})  {hits:>8,d} rows")

    report("masks after the build:")
    updates = [
        (torch.from_numpy(rng.choice(n, 1000, replace=False)), make(1000))
        for _ in range(max(1, n // 10 // 1000))
    ]
    t0 = time.perf_counter()
    for rows, attrs in updates:
        prepared = store.prepare(attrs)
        store.clear(rows)
        store.write(rows, prepared)
    dt = time.perf_counter() - t0
    print(
        f"replace 10% of the items, {len(updates)} batches of 1000: "
        f"{1e3 * dt / len(updates):.1f} ms per batch (prepare + clear + write)"
    )
    t0 = time.perf_counter()
    store.clear(torch.arange(0, n // 100))
    print(f"delete {n // 100} rows in one call: {1e3 * (time.perf_counter() - t0):.1f} ms")
    report("masks after the updates and deletes:")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["threshold", "yfcc", "all"], default="all")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}")
    if args.part in ("threshold", "all"):
        part_threshold(args.n, args.device)
    if args.part in ("yfcc", "all"):
        part_yfcc(args.n, args.device)


if __name__ == "__main__":
    main()
