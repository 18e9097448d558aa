"""Benchmark of linr.ops.scan_topk (fused filtered scan + top-k) on a GPU.

For each configuration (N rows, D dims, B queries, k, filter selectivity, filter form) it
prints the median time (CUDA events, warm-up first), QPS, achieved GB/s, the floor (bytes
that must be read over the device-to-device copy bandwidth measured in this run, or the
operations over the matrix rate measured in this run, whichever is larger), the % of that
floor reached, and the ratio against naive torch (fp16 mm + masked_fill + topk, chunked to
fit) measured in the same run. Rows are appended to benchmarks/results/scan.csv with the GPU
name and the date.

    python benchmarks/bench_scan.py                 # the acceptance configurations
    python benchmarks/bench_scan.py --sweep         # the full sweep (BENCHMARKS.md)
    python benchmarks/bench_scan.py --n 1M,10M,max --d 128 --b 1,1024 --k 100 --sel 1,0.01

Without CUDA it runs a tiny smoke configuration (torch reference, naive torch, and the
kernels through Triton's CPU interpreter) so the script stays testable; those rows are
labelled "CPU smoke test, not a GPU measurement" and go to scan_smoke.csv.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from _harness import append_rows, copy_bandwidth, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
SMOKE_LABEL = "CPU smoke test, not a GPU measurement"
_NAIVE_SCORE_BYTES = 1 << 30  # naive torch materializes at most this much of [B, N] scores


def parse_n(text: str) -> list[int | str]:
    out: list[int | str] = []
    for t in text.split(","):
        t = t.strip().upper()
        if t == "MAX":
            out.append("max")
        else:
            mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(t[-1], 1)
            out.append(int(float(t.rstrip("KMG")) * mult))
    return out


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",")]


def floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",")]


def timed_ms(
    fn: Callable[[], object], dev: torch.device, min_reps: int, max_s: float
) -> list[float]:
    """Milliseconds per call after two warm-up calls: at least min_reps, more up to max_s."""
    return [t * 1e3 for t in timed(fn, min_reps, device=dev, warmup=2, max_s=max_s)]


def matmul_rate(dev: torch.device, int8: bool) -> float:
    """Dense matrix-product operations/s: fp16 mm, or int8 x int8 -> int32 (torch._int_mm)."""
    n = 8192 if dev.type == "cuda" else 256
    if int8:
        if not hasattr(torch, "_int_mm") or dev.type != "cuda":
            return float("nan")
        a = torch.randint(-127, 127, (n, n), dtype=torch.int8, device=dev)
        b = torch.randint(-127, 127, (n, n), dtype=torch.int8, device=dev).T
        ms = statistics.median(timed_ms(lambda: torch._int_mm(a, b), dev, 5, 1.0))
    else:
        dt = torch.float16 if dev.type == "cuda" else torch.float32
        a = torch.randn(n, n, device=dev).to(dt)
        b = torch.randn(n, n, device=dev).to(dt)
        ms = statistics.median(timed_ms(lambda: a @ b, dev, 5, 1.0))
    return 2 * n**3 / (ms / 1e3)


def naive_topk(
    q16: torch.Tensor,
    codes16: torch.Tensor,
    scales: torch.Tensor,
    allowed: torch.Tensor | None,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LiNR's "similarity masking" baseline: mm, scale, masked_fill, topk, chunked over N so
    that the [B, chunk] score block stays under _NAIVE_SCORE_BYTES."""
    b, n = q16.shape[0], codes16.shape[0]
    chunk = max(k, _NAIVE_SCORE_BYTES // (4 * b))
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        s = (q16 @ codes16[c0:c1].T).float() * scales[c0:c1]
        if allowed is not None:
            s.masked_fill_(~allowed[c0:c1], -torch.inf)
        v, i = torch.topk(s, min(k, c1 - c0), dim=1)
        i = i + c0
        if best is not None:
            v, j = torch.topk(torch.cat([best[0], v], 1), min(k, best[0].shape[1] + v.shape[1]))
            i = torch.cat([best[1], i], 1).gather(1, j)
        best = (v, i)
    assert best is not None
    return best


def max_rows(dev: torch.device, d: int) -> int:
    """Largest N whose int8 codes, scales and the naive baseline's fp16 copy fit with 8 GiB
    to spare, below the kernel's int32 position limit."""
    free, _ = torch.cuda.mem_get_info(dev)
    n = int((free - (8 << 30)) // (3 * d + 8))
    return max(10**6, min(n // 10**6 * 10**6, (1 << 31) - (1 << 24)))


def run_config(ctx: dict, n: int, d: int, b: int, k: int, sel: float, form: str, mode) -> dict:
    from linr.ops.mask_words import pack_mask
    from linr.ops.topk_search import plan_search, run_plan

    dev, codes, scales = ctx["dev"], ctx["codes"], ctx["scales"]
    q = torch.randn(b, d, device=dev)
    mask_words = rows = allowed = None
    if sel < 1.0:
        allowed = torch.rand(n, device=dev) < sel
        if form == "mask":
            mask_words = pack_mask(allowed)
        else:
            rows = torch.nonzero(allowed).flatten()
    n_pos = rows.shape[0] if rows is not None else n
    kw = {"scales": scales, "mask_words": mask_words, "rows": rows}
    plan = plan_search(q, codes, k, mode=mode, **kw)  # the occupancy of the compiled kernel

    def fused():
        return run_plan(q, codes, k, plan, scales=scales, mask_words=mask_words, rows=rows)

    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fused()
        torch.cuda.synchronize()
        extra_mb = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        extra_mb = float("nan")
    t = timed_ms(fused, dev, ctx["min_reps"], ctx["max_s"])
    ms = statistics.median(t)
    match = float("nan")
    if dev.type == "cpu":  # smoke: the result must be the reference's (the tests say why)
        from linr.ops.topk_search import scan_topk_reference

        got = fused()[1]
        want = scan_topk_reference(q, codes, k, scales=scales, mask_words=mask_words, rows=rows)[1]
        match = (got == want).float().mean().item()
    # Fewest bytes: each scanned row's codes and scale once (+ its id for the row list),
    # the mask words, the queries and the results.
    item = codes.element_size()
    nbytes = n_pos * (d * item + 4) + b * d * 4 + b * k * 12
    nbytes += rows.numel() * 8 if rows is not None else 0
    nbytes += mask_words.numel() * 4 if mask_words is not None else 0
    flops = 2.0 * b * n_pos * d
    rate = ctx["int8_rate"] if plan.mode == 2 else ctx["fp16_rate"]
    floor_ms = max(nbytes / ctx["copy_bw"], flops / rate if rate == rate else 0.0) * 1e3
    naive_ms = float("nan")
    if ctx["codes16"] is not None and not ctx["no_naive"]:
        q16 = q.to(ctx["codes16"].dtype)
        naive_ms = statistics.median(
            timed_ms(
                lambda: naive_topk(q16, ctx["codes16"], scales, allowed, k), dev, 3, ctx["max_s"]
            )
        )
    return {
        "device": ctx["device_name"],
        "date": ctx["date"],
        "dtype": str(codes.dtype).replace("torch.", ""),
        "n": n,
        "d": d,
        "b": b,
        "k": k,
        "selectivity": sel,
        "filter": form if sel < 1.0 else "none",
        "mode": {0: "fp32-tf32", 1: "fp16-query", 2: "int8-query"}[plan.mode],
        "time_ms": round(ms, 4),
        "p10_ms": round(sorted(t)[len(t) // 10], 4),
        "p90_ms": round(sorted(t)[(len(t) * 9) // 10], 4),
        "reps": len(t),
        "qps": round(b / (ms / 1e3), 1),
        "gbps": round(nbytes / (ms / 1e3) / 1e9, 1),
        "floor_ms": round(floor_ms, 4),
        "pct_of_floor": round(100 * floor_ms / ms, 1),
        "naive_ms": round(naive_ms, 4),
        "speedup_vs_naive": round(naive_ms / ms, 2),
        "extra_mem_mb": round(extra_mb, 1),
        "ids_match_reference": match,
        "copy_gbps": round(ctx["copy_bw"] / 1e9, 1),
        "torch": torch.__version__,
        "triton": ctx["triton"],
    }


def configs(args) -> list[tuple]:
    """(n, d, b, k, sel, form, mode) in an order that builds each index once."""
    out = []
    for n in args.n:
        for d in args.d:
            for b in args.b:
                for k in args.k:
                    for sel in args.sel:
                        forms = ["none"] if sel >= 1.0 else args.forms
                        for form in forms:
                            modes: list[int | None] = [None]
                            if args.both_modes and sel >= 1.0 and args.dtype == "int8":
                                modes = [1, 2]
                            out += [(n, d, b, k, sel, form, m) for m in modes]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweep", action="store_true", help="the full sweep (BENCHMARKS.md)")
    p.add_argument("--n", type=parse_n, default=None, help="rows, e.g. 1M,10M,max")
    p.add_argument("--d", type=ints, default=None)
    p.add_argument("--b", type=ints, default=None)
    p.add_argument("--k", type=ints, default=None)
    p.add_argument("--sel", type=floats, default=None, help="selectivities, e.g. 1,0.01")
    p.add_argument("--forms", default="rows,mask", help="filter forms for selectivity < 1")
    p.add_argument("--dtype", default="int8", choices=["int8", "float16", "float32"])
    p.add_argument("--both-modes", action="store_true", help="int8: fp16- and int8-query dots")
    p.add_argument("--no-naive", action="store_true", help="skip the naive torch baseline")
    p.add_argument("--max-s", type=float, default=1.0, help="seconds of repeats per config")
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="tiny CPU configuration")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda:
        # The kernels run through Triton's interpreter: tiny sizes only.
        os.environ.setdefault("TRITON_INTERPRET", "1")
        args.n, args.d, args.b, args.k = [1024], [40], [1, 5], [10]
        args.sel, args.both_modes = args.sel or [1.0, 0.01], True
    elif args.sweep:
        args.n = args.n or ["1M", 10**7, "max"]
        args.n = [10**6 if x == "1M" else x for x in args.n]
        args.d, args.b = args.d or [128, 256], args.b or [1, 32, 1024]
        args.k, args.sel = args.k or [10, 100, 1000], args.sel or [1.0, 0.1, 0.01, 0.001]
        args.both_modes = True
    else:  # the default configurations (BENCHMARKS.md)
        args.n, args.d = args.n or [10**7], args.d or [128]
        args.b, args.k = args.b or [1, 1024], args.k or [100]
        args.sel, args.both_modes = args.sel or [1.0, 0.01], True
    args.forms = args.forms.split(",")
    dev = torch.device("cuda" if cuda else "cpu")
    import triton

    ctx: dict = {
        "dev": dev,
        "device_name": torch.cuda.get_device_name(dev) if cuda else SMOKE_LABEL,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "triton": triton.__version__,
        "min_reps": 10 if cuda else 2,
        "max_s": args.max_s if cuda else 0.05,
        "no_naive": args.no_naive,
        "copy_bw": copy_bandwidth(dev, (2 << 30) if cuda else (64 << 20)),
        "fp16_rate": matmul_rate(dev, False),
        "int8_rate": matmul_rate(dev, True),
    }
    print(
        f"device: {ctx['device_name']}; copy {ctx['copy_bw'] / 1e9:.0f} GB/s (read+write), "
        f"fp16 mm {ctx['fp16_rate'] / 1e12:.0f} TFLOP/s, int8 mm "
        f"{ctx['int8_rate'] / 1e12:.0f} TOP/s"
    )
    dtype = {"int8": torch.int8, "float16": torch.float16, "float32": torch.float32}[args.dtype]
    results: list[dict] = []
    out = args.csv or RESULTS / ("scan.csv" if cuda else "scan_smoke.csv")
    built: tuple | None = None
    for n, d, b, k, sel, form, mode in configs(args):
        n_rows = max_rows(dev, d) if n == "max" else n
        if built != (n_rows, d):
            ctx["codes"] = ctx["codes16"] = None
            torch.cuda.empty_cache() if cuda else None
            if dtype == torch.int8:
                ctx["codes"] = torch.randint(-127, 128, (n_rows, d), dtype=torch.int8, device=dev)
            else:
                ctx["codes"] = torch.randn(n_rows, d, device=dev).to(dtype)
            ctx["scales"] = torch.rand(n_rows, device=dev) / 64 + 1e-3
            half = torch.float16 if cuda else torch.float32
            try:
                ctx["codes16"] = ctx["codes"].to(half)
            except torch.cuda.OutOfMemoryError:
                ctx["codes16"] = None  # too big for the baseline's fp16 copy: no ratio
            built = (n_rows, d)
        r = run_config(ctx, n_rows, d, b, k, sel, form, mode)
        results.append(r)
        append_rows(out, [r])  # row by row: a run cut short keeps its rows
        print(
            f"N={n_rows:>11,} D={d} B={b:>4} k={k:>4} sel={sel:<6} {r['filter']:>4} "
            f"{r['mode']:>10}: {r['time_ms']:9.3f} ms  {r['qps']:>12,.0f} q/s "
            f"{r['gbps']:7.1f} GB/s  floor {r['floor_ms']:8.3f} ms ({r['pct_of_floor']:5.1f}%)"
            f"  naive {r['naive_ms']:9.3f} ms  x{r['speedup_vs_naive']:<6} "
            f"+{r['extra_mem_mb']:.0f} MB",
            flush=True,
        )
    print(f"appended {len(results)} rows to {out}")
    _summary(results)
    return 0


def _summary(results: list[dict]) -> None:
    """Filtered vs unfiltered (same N, D, B, k) and the ratios against naive torch, last."""
    base = {
        (r["n"], r["d"], r["b"], r["k"]): r["time_ms"] for r in results if r["filter"] == "none"
    }
    print("\nsummary (ratio > 1: linr.ops faster)")
    for r in results:
        key = (r["n"], r["d"], r["b"], r["k"])
        vs_unf = base.get(key, float("nan")) / r["time_ms"] if r["filter"] != "none" else 1.0
        print(
            f"  N={r['n']:>11,} B={r['b']:>4} k={r['k']:>4} sel={r['selectivity']:<6} "
            f"{r['filter']:>4} {r['mode']:>10}: {r['pct_of_floor']:5.1f}% of floor, "
            f"x{r['speedup_vs_naive']} vs naive, x{vs_unf:.1f} vs unfiltered"
        )
    if results[0]["device"] == SMOKE_LABEL:
        print(f"\n({SMOKE_LABEL}: the kernels ran in Triton's interpreter.)")


if __name__ == "__main__":
    raise SystemExit(main())
