"""linr's CPU search against its baselines, side by side in one run.

    python benchmarks/bench_search.py                 # N=1M, D=128, 1024 queries, k=100
    python benchmarks/bench_search.py --n 100000      # quicker

Baselines: faiss IndexFlatIP (unfiltered), faiss IndexFlatIP + IDSelectorBitmap (filtered),
naive torch (mm into a [B, chunk] score block + masked_fill + topk), and the memory-bandwidth
floor (bytes of the index over a measured copy bandwidth). Medians of --repeats runs; the
ratios are what to compare across machines. Rows are appended to benchmarks/results/search.csv.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import faiss
import numpy as np
import torch
from _harness import append_rows, copy_bandwidth, floor_s, median_s, paired

from linr import Index


def naive_torch(q: torch.Tensor, x: torch.Tensor, k: int, mask: torch.Tensor | None):
    best_s = torch.full((q.shape[0], k), -torch.inf)
    best_i = torch.full((q.shape[0], k), -1, dtype=torch.int64)
    chunk = 65536
    for s0 in range(0, x.shape[0], chunk):
        s = q @ x[s0 : s0 + chunk].T
        if mask is not None:
            s.masked_fill_(~mask[s0 : s0 + chunk], -torch.inf)
        v, i = s.topk(min(k, s.shape[1]), dim=1)
        allv = torch.cat([best_s, v], 1)
        alli = torch.cat([best_i, i + s0], 1)
        best_s, o = allv.topk(k, dim=1)
        best_i = alli.gather(1, o)
    return best_s, best_i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--csv", default="benchmarks/results/search.csv")
    args = ap.parse_args()
    n, d, b, k = args.n, args.d, args.queries, args.k
    threads = torch.get_num_threads()
    faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    q = rng.standard_normal((b, d), dtype=np.float32)
    bucket = rng.integers(0, 1000, n)  # selectivity: bucket < 10 is 1%, < 100 is 10%
    attrs = [{"bucket": int(v)} for v in bucket]
    print(f"N={n} D={d} B={b} k={k} threads={threads} ({platform.processor() or 'cpu'})")
    bw = copy_bandwidth()
    rows: list[dict[str, object]] = []

    def report(case: str, ours: float, base_name: str, base: float, floor: float) -> None:
        ratio = base / ours
        print(
            f"{case:<28} linr {ours * 1e3:9.1f} ms   {base_name:<22} {base * 1e3:9.1f} ms"
            f"   ratio {ratio:6.2f}x   floor {floor * 1e3:7.1f} ms"
        )
        rows.append(
            {
                "case": case,
                "linr_s": ours,
                "baseline": base_name,
                "baseline_s": base,
                "ratio": ratio,
                "floor_s": floor,
            }
        )

    t = time.perf_counter()
    index = Index(d, "ip", "fp32", "cpu", capacity=n, schema={"bucket": "int"})
    index.upsert(np.arange(n), x, attrs)
    print(f"build fp32 index: {time.perf_counter() - t:.1f} s")
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    floor = floor_s(n * d * 4, bw)

    ours, base = paired(lambda: index.search(q, k), lambda: flat.search(q, k), args.repeats)
    report("fp32 unfiltered", ours, "faiss IndexFlatIP", base, floor)
    qt, xt = torch.from_numpy(q), torch.from_numpy(x)
    naive = median_s(lambda: naive_torch(qt, xt, k, None), 1)
    report("fp32 unfiltered", ours, "naive torch mm+topk", naive, floor)

    for pct, limit in ((1, 10), (10, 100), (50, 500)):
        m = bucket < limit
        bits = np.packbits(m, bitorder="little")
        sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        params = faiss.SearchParameters(sel=sel)
        flt = f"bucket < {limit}"
        ours, base = paired(
            lambda flt=flt: index.search(q, k, flt),
            lambda params=params: flat.search(q, k, params=params),
            args.repeats if pct < 50 else 1,  # faiss's selector path takes ~30 s at 50%
        )
        report(f"fp32 {pct}% filter", ours, "faiss + IDSelectorBitmap", base, floor * m.mean())
        # the answers agree
        _, fi = flat.search(q[:8], k, params=params)
        assert (index.search(q[:8], k, flt).labels == fi).mean() > 0.999

    one = q[:1]
    ours, base = paired(lambda: index.search(one, k), lambda: flat.search(one, k), 9)
    report("fp32 unfiltered B=1", ours, "faiss IndexFlatIP", base, floor)
    index = None  # free the fp32 index before building the int8 one

    q8 = Index(d, "ip", "int8", "cpu", capacity=n)
    q8.upsert(np.arange(n), x)
    mem = q8.memory_bytes()
    budget = 1.15 * n * d
    print(
        f"int8 memory: vectors {mem['vectors'] / 1e6:.1f} MB = {mem['vectors'] / (n * d):.3f}"
        f" x N x D bytes (budget 1.15), id map {mem['ids'] / n:.1f} bytes/item"
    )
    assert mem["vectors"] <= budget
    ours = median_s(lambda: q8.search(q, k), args.repeats)
    report(
        "int8 unfiltered",
        ours,
        "faiss IndexFlatIP fp32",
        statistics.median([r["baseline_s"] for r in rows if r["case"] == "fp32 unfiltered"][:1]),
        floor_s(n * d, bw),
    )

    append_rows(args.csv, rows, n=n, d=d, b=b, k=k)


if __name__ == "__main__":
    main()
