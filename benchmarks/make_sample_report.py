"""Generate the sample `linr eval` report in docs/report/ from a seeded synthetic dataset.

    .venv/bin/python benchmarks/make_sample_report.py            # 100,000 x 128, 1,000 queries
    .venv/bin/python benchmarks/make_sample_report.py --n 20000 --queries 200 --out /tmp/r

The data imitate a catalogue of embedded items rather than uniform noise:
- vectors: a mixture of 64 anisotropic Gaussian clusters of Zipf-skewed sizes around a
  shared mean direction, unit norm (metric ip = cosine; mean cosine ~0.65 within a
  cluster, ~0.11 between random items); queries are fresh draws from the same mixture;
- attributes with skewed value frequencies, partly correlated with the clusters: `lang`
  (12 languages, Zipf, each cluster with its own mix), `category` (300 values, Zipf),
  `tags` (1-4 of 3,000, Zipf), `ts` (a timestamp, more items recently), `price`
  (log-normal), `verified` (8% true);
- filters: 120 distinct filters of several shapes whose selectivities, measured here with
  numpy (independently of linr), spread log-uniformly from 0.01% to 50%; each query gets
  one at random, and 5% of the queries get none.

The same seed gives the same files and the same report (timings aside).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

SEED = 20251123
LANGS = ["en", "es", "de", "fr", "pt", "ja", "it", "nl", "pl", "tr", "ko", "sv"]
N_CLUSTERS = 64
N_CATEGORIES = 300
N_TAGS = 3000
TS0, TS1 = 1_700_000_000, 1_731_536_000  # one year


def zipf_probs(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


def make_vectors(rng: np.random.Generator, n: int, nq: int, d: int) -> tuple[Any, Any, Any]:
    weights = zipf_probs(N_CLUSTERS, 0.8)
    # A shared offset (embeddings of real models share a mean direction), cluster centres,
    # and anisotropic noise: each cluster has its own axes scaled by a decaying spectrum.
    # Calibrated so that, after normalization, two items of one cluster have cosine ~0.65
    # on average and two random items ~0.11, and the 10th and 11th neighbours of an item
    # differ by ~0.002 in cosine.
    offset = rng.standard_normal(d)
    offset *= 3.0 / np.linalg.norm(offset)
    centers = offset + 0.5 * rng.standard_normal((N_CLUSTERS, d))
    spectrum = 2.0 / np.sqrt(1.0 + np.arange(d))

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        cl = rng.choice(N_CLUSTERS, m, p=weights)
        x = np.empty((m, d), dtype=np.float32)
        for c in range(N_CLUSTERS):
            sel = np.flatnonzero(cl == c)
            if sel.size:
                rot = rotations[c]
                noise = rng.standard_normal((sel.size, d)) * spectrum
                x[sel] = centers[c] + noise @ rot
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x, cl

    rotations = [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(N_CLUSTERS)]
    base, clusters = draw(n)
    queries, _ = draw(nq)
    return base, queries, clusters


def make_attributes(rng: np.random.Generator, clusters: np.ndarray) -> dict[str, Any]:
    n = clusters.shape[0]
    lang_global = zipf_probs(len(LANGS), 1.3)
    # Each cluster mixes languages around the global Zipf law (Dirichlet, concentration 20).
    lang_mix = rng.dirichlet(lang_global * 20 + 1e-3, N_CLUSTERS)
    u = np.asarray(rng.random(n))
    lang = (u[:, None] > np.cumsum(lang_mix[clusters], axis=1)).sum(1).clip(0, len(LANGS) - 1)
    category = rng.choice(N_CATEGORIES, n, p=zipf_probs(N_CATEGORIES, 1.15))
    n_tags = rng.integers(1, 5, size=(n,)).tolist()
    tag_p = zipf_probs(N_TAGS, 1.05)
    tags = [rng.choice(N_TAGS, k, replace=False, p=tag_p) for k in n_tags]
    ts = (TS0 + (TS1 - TS0) * np.sqrt(rng.random(n))).astype(np.int64)  # denser recently
    price = np.round(np.exp(rng.normal(3.0, 1.0, n)), 2)
    verified = rng.random(n) < 0.08
    return {
        "lang": lang,
        "category": category,
        "tags": tags,
        "ts": ts,
        "price": price,
        "verified": verified,
    }


def candidate_filters(a: dict[str, Any], rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """(string-form filter, its matching mask computed with numpy) of several shapes."""
    n = a["ts"].shape[0]
    out: list[tuple[str, np.ndarray]] = []
    lang, cat, ts, price, ver = a["lang"], a["category"], a["ts"], a["price"], a["verified"]
    tag_sets = a["tags"]
    for li, name in enumerate(LANGS):
        out.append((f'lang == "{name}"', lang == li))
    for c in range(N_CATEGORIES):
        out.append((f'category == "c{c}"', cat == c))
    tag_hits: dict[int, np.ndarray] = {}
    for i, ts_i in enumerate(tag_sets):
        for t in ts_i.tolist():
            tag_hits.setdefault(t, np.zeros(n, bool))[i] = True
    for t in sorted(tag_hits)[::7]:
        out.append((f'tags == "t{t}"', tag_hits[t]))
    for q in np.linspace(0.5, 0.9999, 60):
        cut = int(np.quantile(ts, q))
        out.append((f"ts >= {cut}", ts >= cut))
        li = int(rng.integers(0, 4))
        out.append((f'lang == "{LANGS[li]}" and ts >= {cut}', (lang == li) & (ts >= cut)))
        p = float(np.round(np.quantile(price, 1 - q), 2))
        out.append((f"verified == true and price < {p}", ver & (price < p)))
        c2 = int(rng.integers(0, 40))
        out.append(
            (
                f'category in ["c{c2}", "c{c2 + 40}"] and price < {p}',
                np.isin(cat, [c2, c2 + 40]) & (price < p),
            )
        )
        out.append(
            (f'not lang in ["en", "es"] and ts >= {cut}', ~np.isin(lang, [0, 1]) & (ts >= cut))
        )
    return out


def choose_filters(
    cands: list[tuple[str, np.ndarray]],
    n_filters: int,
    lo: float,
    hi: float,
    rng: np.random.Generator,
) -> list[tuple[str, float]]:
    """Filters whose selectivity is closest to log-uniform targets in [lo, hi], distinct."""
    n = cands[0][1].shape[0]
    sel = np.array([m.sum() / n for _, m in cands])
    ok = sel > 0
    targets = np.exp(np.linspace(np.log(lo), np.log(hi), n_filters))
    used: set[int] = set()
    chosen = []
    for t in targets:
        dist = np.where(ok, np.abs(np.log(np.maximum(sel, 1e-12)) - np.log(t)), np.inf)
        dist[list(used)] = np.inf
        # Among the near-equal candidates, rotate shapes rather than always taking one kind.
        near = np.flatnonzero(dist <= dist.min() + 0.15)
        i = int(rng.choice(near))
        used.add(i)
        chosen.append((cands[i][0], float(sel[i])))
    return chosen


def write_dataset(out: Path, n: int, nq: int, d: int) -> dict[str, str]:
    rng = np.random.default_rng(SEED)
    base, queries, clusters = make_vectors(rng, n, nq, d)
    attrs = make_attributes(rng, clusters)
    filters = choose_filters(candidate_filters(attrs, rng), 120, 1e-4, 0.5, rng)
    out.mkdir(parents=True, exist_ok=True)
    for name, x in (("base.fbin", base), ("queries.fbin", queries)):
        with open(out / name, "wb") as f:
            np.array(x.shape, "<u4").tofile(f)
            x.astype("<f4").tofile(f)
    with open(out / "attrs.jsonl", "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "lang": LANGS[int(attrs["lang"][i])],
                        "category": f"c{int(attrs['category'][i])}",
                        "tags": [f"t{int(t)}" for t in attrs["tags"][i]],
                        "ts": int(attrs["ts"][i]),
                        "price": float(attrs["price"][i]),
                        "verified": bool(attrs["verified"][i]),
                    }
                )
                + "\n"
            )
    pick = rng.integers(0, len(filters), nq)
    none = rng.random(nq) < 0.05
    with open(out / "qf.jsonl", "w") as f:
        for i in range(nq):
            f.write(json.dumps(None if none[i] else filters[int(pick[i])][0]) + "\n")
    sels = [s for _, s in filters]
    print(
        f"dataset: {n} x {d}, {nq} queries, {len(filters)} filters, selectivity "
        f"{min(sels):.4%} .. {max(sels):.1%} (numpy)",
        file=sys.stderr,
    )
    return {
        "base": str(out / "base.fbin"),
        "queries": str(out / "queries.fbin"),
        "attributes": str(out / "attrs.jsonl"),
        "query_filters": str(out / "qf.jsonl"),
    }


_PREAMBLE = (
    "> Sample report, generated by `{command}` from a seeded synthetic dataset: {n:,} unit "
    "vectors in {d} dimensions from 64 anisotropic Gaussian clusters of skewed sizes; "
    "attributes with Zipf-skewed value frequencies (language, category, tags, timestamp, "
    "price, verified); 120 distinct filters from 0.01% to 50% selectivity "
    "(`benchmarks/make_sample_report.py` says exactly how). `linr eval` took {seconds:.0f} s "
    "here, on the device named under Latency. [docs/eval.md](../eval.md) explains every "
    "number.\n\n"
)


def _ONEBIT_ARGS(d: int) -> list[str]:  # noqa: N802 - a table of flags, read as one
    """Flags of the 1-bit report; later flags override the defaults above."""
    return [
        "--quantization", "fp32,1bit", "--filtering", "pre", "--k", "10",
        "--bits", f"{d},{2 * d},{4 * d}", "--rerank-oversample", "1,4,10,20,50",
        "--rerank", "fp16",
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--data-dir", default="build/eval-sample")
    ap.add_argument("--out", default="docs/report")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--onebit",
        action="store_true",
        help="the 1-bit report instead: fp32 and 1bit at bits D, 2D, 4D, rerank oversample "
        "1..50, pre-filtered, k = 10 (default --out docs/report-1bit)",
    )
    args = ap.parse_args()
    from linr.cli.main import main as linr_main

    if args.onebit and args.out == "docs/report":
        args.out = "docs/report-1bit"

    paths = write_dataset(Path(args.data_dir), args.n, args.queries, args.dim)
    argv = [
        "eval",
        "--base",
        paths["base"],
        "--queries",
        paths["queries"],
        "--attributes",
        paths["attributes"],
        "--query-filters",
        paths["query_filters"],
        "--k",
        "10,100",
        "--quantization",
        "fp32,fp16,int8",
        "--filtering",
        "pre,post",
        "--oversampling",
        "1,2,4,10",
        "--device",
        args.device,
        *(_ONEBIT_ARGS(args.dim) if args.onebit else []),
        "--cache-dir",
        str(Path(args.data_dir) / "cache"),
        "--report",
        args.out,
    ]
    t0 = time.perf_counter()
    rc = linr_main(argv)
    seconds = time.perf_counter() - t0
    print(f"linr eval: exit {rc}, {seconds:.1f} s", file=sys.stderr)
    if rc == 0:
        md = Path(args.out) / "report.md"
        command = (
            "python benchmarks/make_sample_report.py"
            + " --onebit" * args.onebit
            + (
                ""
                if (args.n, args.queries, args.dim) == (100_000, 1_000, 128)
                else f" --n {args.n} --queries {args.queries} --dim {args.dim}"
            )
        )
        title, _, rest = md.read_text().partition("\n\n")
        preamble = _PREAMBLE.format(command=command, n=args.n, d=args.dim, seconds=seconds)
        md.write_text(f"{title}\n\n{preamble}{rest}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
