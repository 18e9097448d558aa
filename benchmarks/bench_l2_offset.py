"""Precision of l2 search on data far from the origin: linr against faiss, both checked
against float64 exact search.

linr scores l2 from a float32 matrix product per chunk. Scored as 2<q, x> - ||x||^2 -
||q||^2, data with a large common offset makes the three terms large and nearly cancel,
and float32 can no longer order near neighbours; so the index centres them at a point
fixed by its first write (linr.storage.choose_centre). This measures recall on such data,
against faiss IndexFlatL2 on the same data.

    python benchmarks/bench_l2_offset.py
    python benchmarks/bench_l2_offset.py --n 20000 --offsets 0,100,1000

It prints recall@k of each for every offset, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import linr  # noqa: E402
from linr.eval.recall import recall_at_k  # noqa: E402


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(recall_at_k(found, truth, truth.shape[1]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--offsets", default="0,10,100,1000", help="comma-separated constants")
    args = ap.parse_args()
    try:
        import faiss
    except ImportError:
        faiss = None
    rng = np.random.default_rng(0)
    base = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    qs = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    print(f"N={args.n:,} D={args.dim} {args.queries} queries, recall@{args.k} vs float64:")
    for c in (float(v) for v in args.offsets.split(",")):
        x, q = base + np.float32(c), qs + np.float32(c)
        _, truth = linr.knn(q.astype(np.float64), x.astype(np.float64), args.k, "l2")
        index = linr.Index(args.dim, "l2", "fp32", "cpu")
        index.upsert(np.arange(args.n), x)
        ours = recall(index.search(q, args.k).rows, truth.numpy())
        line = f"  offset {c:>8g}: linr {ours:.3f}"
        if faiss is not None:
            flat = faiss.IndexFlatL2(args.dim)
            flat.add(x)
            theirs = recall(flat.search(q, args.k)[1], truth.numpy())
            line += f"  faiss IndexFlatL2 {theirs:.3f}  ratio {ours / theirs:.3f}"
        print(line)


if __name__ == "__main__":
    main()
