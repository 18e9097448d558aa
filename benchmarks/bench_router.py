"""Benchmark of `linr router`: what the router costs, and the scaling model of
docs/scaling.md against this machine.

1. Overhead: one `linr serve`-equivalent shard (N random items, D = 128, fp32) in a child
   process, and `linr router --shard <it>` in another; the same single-vector searches
   (k = 10) sent straight to the shard and through the router, by 1 and by 32 concurrent
   keep-alive clients (the minimal asyncio client of bench_service.py). Printed: p50, p99,
   requests/s of each, and router/direct ratios. A sample of answers through the router is
   checked against linr.knn first.
2. Merge: `service.router.merge.merge_hits` on S shards' top-k lists (k = 10, 100, 1000;
   S = 2 .. 64), and json.loads of those S answers (which the router also does per
   request); baseline in the same run: one sort of all S x k hits.
3. Model: docs/scaling.md predicts a shard's scan time as rows x bytes per row / the
   bandwidth the scan achieves, so splitting N over S shards divides it by S. Measured: the
   exact scan (linr.Index.search, B = 1, k = 10) at N, N/2, N/4 rows; printed: the
   bandwidth implied at N, the time that predicts at N/2 and N/4, and what was measured.

    python benchmarks/bench_router.py                    # N = 100k, 5 s per load config
    python benchmarks/bench_router.py --n 20000 --seconds 2 --skip-overhead   # merge + model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_service as bs  # noqa: E402 - its server, client and readiness wait

_MERGE_REPEATS = 25


def overhead(args: argparse.Namespace) -> list[dict[str, Any]]:
    x, q = bs.make_data(args.n, args.dim)
    shard_port, router_port = bs._free_port(), bs._free_port()
    ctx = mp.get_context("spawn")
    shard = ctx.Process(target=bs._serve, args=(shard_port, args.n, args.dim, {}, 0))
    shard.start()
    router = None
    rows = []
    try:
        asyncio.run(bs._wait_ready(shard_port, 300))
        cmd = [sys.executable, "-m", "linr", "router", "--port", str(router_port)]
        cmd += ["--shard", f"http://127.0.0.1:{shard_port}", "--log-level", "warning"]
        router = subprocess.Popen(cmd, cwd=ROOT)
        asyncio.run(bs._wait_ready(router_port, 120))
        asyncio.run(bs._check_answers(router_port, x, q, args.k))
        bodies = [json.dumps({"vector": v.tolist(), "k": args.k}).encode() for v in q]
        for clients in (1, 32):
            for name, port in (("direct", shard_port), ("router", router_port)):
                n, errors, lat = asyncio.run(
                    bs._load(port, bodies, clients, args.warmup, args.seconds)
                )
                ms = lat * 1e3
                rows.append(
                    {
                        "clients": clients,
                        "path": name,
                        "rps": n / args.seconds,
                        "p50_ms": float(np.percentile(ms, 50)),
                        "p99_ms": float(np.percentile(ms, 99)),
                        "errors": errors,
                    }
                )
    finally:
        if router is not None:
            router.terminate()
            router.wait(30)
        shard.terminate()
        shard.join(30)
    return rows


def _shard_answers(rng: np.random.Generator, shards: int, k: int) -> list[bytes]:
    out = []
    for s in range(shards):
        scores = np.sort(rng.standard_normal(k).astype(np.float32))[::-1]
        hits = [{"id": int(s * k + j), "score": float(v)} for j, v in enumerate(scores)]
        out.append(json.dumps({"results": hits, "count": k, "took_ms": 1.0}).encode())
    return out


def _median_s(fn: Any) -> float:
    fn()  # warm-up
    times = []
    for _ in range(_MERGE_REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def merge_costs() -> list[dict[str, Any]]:
    from service.router.merge import hit_key, merge_hits

    rng = np.random.default_rng(0)
    rows = []
    for k in (10, 100, 1000):
        for shards in (2, 4, 8, 16, 32, 64):
            raw = _shard_answers(rng, shards, k)
            lists = [json.loads(b)["results"] for b in raw]
            merge = _median_s(lambda: merge_hits(lists, k))  # noqa: B023 - called right here
            sort = _median_s(lambda: sorted((h for r in lists for h in r), key=hit_key)[:k])  # noqa: B023
            parse = _median_s(lambda: [json.loads(b) for b in raw])  # noqa: B023
            rows.append(
                {
                    "k": k,
                    "shards": shards,
                    "merge_ms": merge * 1e3,
                    "sort_ms": sort * 1e3,
                    "parse_ms": parse * 1e3,
                }
            )
    return rows


def scan_model(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Scan time at N, N/2, N/4 rows, timed in interleaved rounds (the fastest of
    _MERGE_REPEATS each: on a shared machine the minimum is the least disturbed)."""
    import linr

    x, q = bs.make_data(args.n, args.dim)
    sizes = [args.n, args.n // 2, args.n // 4]
    indexes = []
    for n in sizes:
        index = linr.Index(dim=args.dim, device="cpu")
        index.upsert(np.arange(n), x[:n])
        index.search(q[:1], 10)  # warm-up
        indexes.append(index)
    best = [float("inf")] * len(sizes)
    for _ in range(_MERGE_REPEATS):
        for i, index in enumerate(indexes):
            t0 = time.perf_counter()
            index.search(q[:1], 10)
            best[i] = min(best[i], time.perf_counter() - t0)
    bandwidth = sizes[0] * args.dim * 4 / best[0]
    print(f"scan bandwidth implied at N={args.n}: {bandwidth / 1e9:.2f} GB/s")
    return [
        {"rows": n, "measured_ms": t * 1e3, "predicted_ms": n * args.dim * 4 / bandwidth * 1e3}
        for n, t in zip(sizes, best)
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seconds", type=float, default=5.0, help="measured time per load config")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--skip-overhead", action="store_true", help="only merge and model")
    args = p.parse_args()
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    print(
        f"# bench_router: N={args.n} D={args.dim} fp32 k={args.k}, {os.cpu_count()} CPUs "
        f"({cpu}), load average {load:.1f}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    if not args.skip_overhead:
        rows = overhead(args)
        print(f"{'clients':>7} {'path':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for r in rows:
            print(
                f"{r['clients']:7d} {r['path']:>7} {r['rps']:8.1f} {r['p50_ms']:8.2f} "
                f"{r['p99_ms']:8.2f} {r['errors']:6d}"
            )
        for c in (1, 32):
            d, r = (x for x in rows if x["clients"] == c)
            print(
                f"router/direct at {c} clients: p50 {r['p50_ms'] / d['p50_ms']:.2f}x "
                f"(+{r['p50_ms'] - d['p50_ms']:.2f} ms), p99 {r['p99_ms'] / d['p99_ms']:.2f}x, "
                f"req/s {r['rps'] / d['rps']:.2f}x"
            )
    head = f"{'k':>5} {'shards':>6} {'merge ms':>9} {'sort-all ms':>11} {'json ms':>8}"
    print(head + f" {'sort/merge':>10}")
    for r in merge_costs():
        print(
            f"{r['k']:5d} {r['shards']:6d} {r['merge_ms']:9.3f} {r['sort_ms']:11.3f} "
            f"{r['parse_ms']:8.3f} {r['sort_ms'] / r['merge_ms']:10.2f}"
        )
    print(f"{'rows':>8} {'measured ms':>11} {'model ms':>9} {'measured/model':>14}")
    for r in scan_model(args):
        print(
            f"{r['rows']:8d} {r['measured_ms']:11.3f} {r['predicted_ms']:9.3f} "
            f"{r['measured_ms'] / r['predicted_ms']:14.2f}"
        )


if __name__ == "__main__":
    main()
