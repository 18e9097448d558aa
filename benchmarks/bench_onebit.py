"""1-bit codes + exact rerank: recall@k against exact fp32, and speed against fp32 exact,
in one run (the machine is shared: compare the ratios, not the seconds).

    python benchmarks/bench_onebit.py --set clustered           # 1M x 128, ip
    python benchmarks/bench_onebit.py --set sentence --n 250000 # 384-d, cosine
    python benchmarks/bench_onebit.py --n 20000 --queries 100   # quick

Data (seeded, not uniform noise):
- clustered: 1,000 Gaussian clusters of Zipf-skewed sizes; anisotropic (a decaying
  spectrum in a random basis, per-cluster scale) and norms that vary (log-normal, sigma
  0.3), metric ip, so the norm term of the estimate matters.
- sentence: the shape of sentence embeddings: unit vectors (metric cosine) with a shared
  mean direction, 200 overlapping topics, a decaying spectrum (hard: neighbours are close).
- catalogue: benchmarks/make_sample_report.py's unit vectors (64 anisotropic clusters
  around a shared mean direction, cosine ~0.65 within a cluster, ~0.11 between items).
Queries are fresh draws from the same mixture; the filter `tag == 3` keeps ~10% of the
items. For each bits (D, 2D, 4D): one scan for the best 50 k candidates by estimate (the
top o k is its first o k, ties by row: the same list a search at oversample o uses), then
the fp16 rerank of the first o k, for every o. Speed: index.search at k = 10, 1,024
queries, 1-bit (bits = 4D by default) with fp16 rerank at the smallest oversample whose
recall reached 0.95, against the fp32 index's exact search, alternating, medians.
Rows are appended to benchmarks/results/onebit.csv.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linr import Index  # noqa: E402
from linr.eval.recall import recall_at_k  # noqa: E402
from linr.onebit.search import rerank_exact  # noqa: E402
from linr.search import Queries  # noqa: E402

SEED = 20260101
TARGET_RECALL = 0.95
_BATCH = 100_000  # rows per upsert while building


def zipf(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


def random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def make_set(name: str, n: int, nq: int, d: int) -> tuple[np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(SEED)
    if name == "catalogue":  # the sample report's generator (benchmarks/make_sample_report.py)
        from make_sample_report import make_vectors

        x, q, _ = make_vectors(rng, n, nq, d)
        return x, q, "cosine"
    basis = random_rotation(rng, d)
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(d))
    if name == "clustered":
        n_cl, metric = 1000, "ip"
        centres = rng.standard_normal((n_cl, d)) * spectrum * 1.5
        spread = rng.uniform(0.3, 1.0, n_cl)
        weights = zipf(n_cl, 0.7)
    else:
        n_cl, metric = 200, "cosine"
        mean = rng.standard_normal(d)
        mean *= 0.8 / np.linalg.norm(mean)
        centres = mean + rng.standard_normal((n_cl, d)) * spectrum * 0.9
        spread = rng.uniform(0.5, 1.0, n_cl)
        weights = zipf(n_cl, 0.9)
        spectrum = spectrum * 0.9

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, d), np.float32)
        for s0 in range(0, m, _BATCH):
            cnt = min(_BATCH, m - s0)
            cl = rng.choice(n_cl, cnt, p=weights)
            z = rng.standard_normal((cnt, d)) * spectrum * spread[cl, None]
            x = centres[cl] + z @ basis.T
            if name == "clustered":
                x *= rng.lognormal(0.0, 0.3, (cnt, 1))
            out[s0 : s0 + cnt] = x
        return out

    return draw(n), draw(nq), metric


def build(x: np.ndarray, metric: str, tags: np.ndarray, **kw) -> tuple[Index, float]:
    t = time.perf_counter()
    idx = Index(x.shape[1], metric, device="cpu", capacity=x.shape[0], **kw)
    for s0 in range(0, x.shape[0], _BATCH):
        sl = slice(s0, s0 + _BATCH)
        idx.upsert(np.arange(s0, s0 + x[sl].shape[0]), x[sl], [{"tag": int(v)} for v in tags[sl]])
    return idx, time.perf_counter() - t


def paired(a, b, repeats: int) -> tuple[float, float]:
    """Medians of alternating runs (both see the same background load), after a warm-up
    when there is more than one run (the recall section has run both paths before)."""
    if repeats > 1:
        a(), b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("clustered", "sentence", "catalogue"), default="clustered")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=None, help="default 128 (clustered), else 384")
    ap.add_argument("--queries", type=int, default=1024, help="queries of the speed runs")
    ap.add_argument("--recall-queries", type=int, default=1024, help="the first of them")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--bits-mult", default="1,2,4", help="bits as multiples of D")
    ap.add_argument("--oversample", default="1,4,10,20,50")
    ap.add_argument("--speed-mults", default="1,4", help="bits / D of the speed runs")
    ap.add_argument("--threads", type=int, default=0, help="torch and faiss threads (0: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--csv", default="benchmarks/results/onebit.csv")
    args = ap.parse_args()
    d = args.dim or (128 if args.set == "clustered" else 384)
    k = args.k
    overs = [int(o) for o in args.oversample.split(",")]
    mults = [int(m) for m in args.bits_mult.split(",")]
    speed_mults = [int(m) for m in args.speed_mults.split(",") if m]
    if args.threads:
        import faiss  # type: ignore[import-untyped]

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"# {args.set} {args.n} x {d}, {args.recall_queries} recall / {args.queries} speed "
        f"queries, k={k}; {stamp}; "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        "shared machine (other jobs running): compare ratios"
    )
    x, q, metric = make_set(args.set, args.n, args.queries, d)
    tags = np.random.default_rng(SEED + 1).integers(0, 10, args.n)
    flt = "tag == 3"
    exact, t_build = build(x, metric, tags)
    print(f"fp32 index built in {t_build:.1f} s")
    qr = q[: args.recall_queries]
    truth = {None: exact.search(qr, k).rows, flt: exact.search(qr, k, flt).rows}
    rows_out: list[tuple] = []
    for mult in mults:
        speed_over = None
        bits = mult * d
        idx, t_build = build(x, metric, tags, quantization="1bit", bits=bits, rerank="fp16")
        print(f"1bit bits={bits} ({mult}D) built in {t_build:.1f} s")
        st, sc = idx._store, idx._scanner
        for f in (None, flt):
            qs = Queries(torch.from_numpy(np.ascontiguousarray(qr)), qr.shape[0])
            if metric == "cosine":
                qs = Queries(torch.nn.functional.normalize(qs.q, dim=1), qr.shape[0])
            mask = idx.filter_mask(f)
            t = time.perf_counter()
            _, cand, _ = sc.candidates(qs, max(overs) * k, idx._n_rows, mask)
            t_scan = time.perf_counter() - t
            for o in overs:
                _, r = rerank_exact(st, qs.q, cand[:, : o * k].contiguous(), k, metric)
                rec = float(np.nanmean(recall_at_k(r.numpy(), truth[f], k)))
                rows_out.append((args.set, args.n, d, metric, bits, o, f or "", rec))
                print(
                    f"  bits={bits:5d} oversample={o:3d} filter={f or '-':9s} recall@{k}={rec:.4f}"
                )
                if f is None and rec >= TARGET_RECALL:
                    speed_over = o if speed_over is None else min(speed_over, o)
            print(f"  (candidate scan of {max(overs) * k} per query: {t_scan:.1f} s)")
        if mult in speed_mults:
            code_b = st.codes.numel() + st.norms.numel() * 4
            fp32_b = exact._store.memory_bytes()
            print(
                f"device memory: codes+norms {code_b / 1e6:.1f} MB vs fp32 {fp32_b / 1e6:.1f} MB"
                f" = 1/{fp32_b / code_b:.1f}"
            )
            o = speed_over or max(overs)
            search_1bit = functools.partial(idx.search, q, k, oversample=o)
            t1, t0 = paired(search_1bit, functools.partial(exact.search, q, k), args.repeats)
            print(
                f"speed: 1bit bits={bits} fp16 rerank oversample={o}: {t1:.2f} s; "
                f"fp32 exact: {t0:.2f} s; fp32 / 1bit = {t0 / t1:.2f}x"
            )
            rows_out.append((args.set, args.n, d, metric, bits, o, "speed", t0 / t1))
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(
                ["date", "set", "n", "dim", "metric", "bits", "oversample", "filter", "value"]
            )
        for row in rows_out:
            w.writerow([stamp, *row])


if __name__ == "__main__":
    main()
