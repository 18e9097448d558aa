"""Memory of a large 1-bit index as built, against the README's capacity table.

    python benchmarks/bench_onebit_memory.py --n 30000000    # 128-bit codes, rerank none

Builds Index(128, quantization="1bit", bits=128, rerank="none", device="cpu") with integer
ids and no attributes, capacity reserved up front (so rows never grow by copying), from
chunks of random vectors (their values do not change the size), then prints the bytes per
item of every part (index.memory_bytes()), the process's peak resident memory, and the
table's prediction for N. The id table is a power-of-two hash table at load <= 0.6
(linr/ids.py), so its bytes per item step with N: the script says what it would be at
--extrapolate (default 100M) as well.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linr import Index  # noqa: E402


def id_table_bytes(n: int) -> int:
    """linr.ids: keys int64 + rows int32 per slot, 2**ceil(log2(n / 0.6)) slots, and the
    row -> id column (int64 per row)."""
    slots = 1 << max(4, int(np.ceil(np.log2(max(n, 1) / 0.6))))
    return slots * 12 + n * 8


def predicted(n: int, bits: int) -> dict[str, int]:
    return {"codes+norms": n * (bits // 8 + 4), "valid": n, "ids": id_table_bytes(n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--bits", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=500_000)
    ap.add_argument("--extrapolate", type=int, default=100_000_000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    n, d = args.n, args.dim
    t0 = time.perf_counter()
    idx = Index(d, quantization="1bit", bits=args.bits, rerank="none", device="cpu", capacity=n)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.chunk, d), dtype=np.float32)
    for s0 in range(0, n, args.chunk):
        m = min(args.chunk, n - s0)
        x[:m] = rng.standard_normal((m, d), dtype=np.float32)
        idx.upsert(np.arange(s0, s0 + m), x[:m])
        if s0 // args.chunk % 20 == 0:
            print(f"  {s0 + m:,} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    mem = idx.memory_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = sum(mem.values())
    print(
        f"built {len(idx):,} x {d} with {args.bits}-bit codes in {time.perf_counter() - t0:.0f} s"
    )
    for part, b in mem.items():
        print(f"  {part:10s} {b / 1e9:7.3f} GB = {b / n:6.2f} B/item")
    print(f"  total      {total / 1e9:7.3f} GB = {total / n:6.2f} B/item")
    print(f"  peak RSS   {peak / 1e9:7.3f} GB (process, incl. Python/torch and one chunk)")
    pred = predicted(n, args.bits)
    print("capacity table at this N: " + ", ".join(f"{k} {v / n:.2f}" for k, v in pred.items()))
    e = args.extrapolate
    pe = predicted(e, args.bits)
    print(
        f"at {e:,}: "
        + ", ".join(f"{k} {v / e:.2f} B/item" for k, v in pe.items())
        + f" = {sum(pe.values()) / 1e9:.2f} GB"
    )


if __name__ == "__main__":
    main()
