"""Filter masks and exact ground truth for the recall tool.

Each distinct filter's matching set is kept as packed bits over base rows (N/8 bytes a filter),
so membership of any returned row is a lookup and per-query masks for the exact search are
unpacked a query batch at a time. Ground truth is `linr.knn` (the library's exact reference)
over base chunks, merged by (score desc, row asc), and cached under a hash of every input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linr.io.source import VectorSource, split_dataset
from linr.knn import knn

CACHE_VERSION = 1
# Base rows per exact-search chunk: knn holds a [128, chunk] float64 score block and the
# chunk in float64 (~1 KiB per row each at D = 128), so 2^18 rows stay under ~600 MB.
_GT_CHUNK_ROWS = 1 << 18
# Queries per exact-search call: bounds the unpacked [B, chunk] bool mask.
_GT_QUERY_BATCH = 256


class MaskTable:
    """Packed match bits of distinct filters over base rows [0, n)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._bits: list[np.ndarray] = []  # uint8 [ceil(n/8)] each, np.packbits order
        self.counts: list[int] = []

    def add(self, mask: np.ndarray) -> int:
        """Store a bool [n] mask; returns its filter number."""
        m = np.asarray(mask, dtype=bool)
        if m.shape != (self.n,):
            raise ValueError(f"mask has shape {m.shape}, expected ({self.n},)")
        self._bits.append(np.packbits(m))
        self.counts.append(int(m.sum()))
        return len(self._bits) - 1

    def dense(self, fids: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        """bool [len(fids), stop - start]: the masks of the given filters over rows
        [start, stop)."""
        stop = self.n if stop is None else stop
        b0, b1 = start // 8, (stop + 7) // 8
        skip = start - 8 * b0
        if not len(fids):
            return np.zeros((0, stop - start), dtype=bool)
        packed = np.stack([self._bits[int(f)][b0:b1] for f in fids])
        bits = np.unpackbits(packed, axis=1, count=stop - 8 * b0)
        return bits[:, skip:].astype(bool)

    def lookup(self, fids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """bool like rows [B, m]: row rows[i, j] matches filter fids[i]; -1 never matches."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self._bits:
            return np.zeros(rows.shape, dtype=bool)
        table = np.stack(self._bits)  # [F, ceil(n/8)]
        safe = np.maximum(rows, 0)
        byte = table[np.asarray(fids, dtype=np.int64)[:, None], safe >> 3]
        bit = (byte >> (7 - (safe & 7)).astype(np.uint8)) & 1
        return (bit == 1) & (rows >= 0)


def compute_ground_truth(
    queries: np.ndarray,
    base: VectorSource,
    n_base: int,
    k: int,
    metric: str,
    masks: MaskTable,
    query_fids: np.ndarray,
    dtype: torch.dtype = torch.float64,
    progress: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of every query among the base rows [0, n_base) matching its filter.

    queries: float32 [Q, D]; query_fids: int [Q] filter numbers in `masks`.
    Returns (rows int64 [Q, k] padded -1, scores float64 [Q, k] padded -inf), ordered by
    score desc then row asc: linr's result order, so ties resolve as the index resolves them.
    `progress(n)` is called with the number of base rows done after each chunk."""
    nq = queries.shape[0]
    best_s = torch.full((nq, k), -torch.inf, dtype=dtype)
    best_r = torch.full((nq, k), -1, dtype=torch.int64)
    for start in range(0, n_base, _GT_CHUNK_ROWS):
        stop = min(start + _GT_CHUNK_ROWS, n_base)
        xb = torch.from_numpy(base.read(start, stop))
        for q0 in range(0, nq, _GT_QUERY_BATCH):
            q1 = min(q0 + _GT_QUERY_BATCH, nq)
            mask = torch.from_numpy(masks.dense(query_fids[q0:q1], start, stop))
            s, r = knn(queries[q0:q1], xb, min(k, stop - start), metric, mask=mask, dtype=dtype)
            r = torch.where(r >= 0, r + start, r)
            # Chunks come in row order, so every kept row is below this chunk's: a stable
            # sort by score of (kept, new) is the (score desc, row asc) order, in float64.
            s_all = torch.cat([best_s[q0:q1], s], dim=1)
            r_all = torch.cat([best_r[q0:q1], r], dim=1)
            s_m, o = torch.sort(s_all, dim=1, descending=True, stable=True)
            r_m = r_all.gather(1, o)[:, :k]
            best_s[q0:q1], best_r[q0:q1] = s_m[:, :k], r_m.masked_fill(s_m[:, :k] == -torch.inf, -1)
        if progress is not None:
            progress(stop - start)
    return best_r.numpy(), best_s.numpy()


def file_digest(path: str, block: int = 1 << 24) -> str:
    """blake2b of a file's bytes (HDF5/Parquet datasets: of the whole file)."""
    h = hashlib.blake2b(digest_size=16)
    with open(split_dataset(path)[0], "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    text = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def load_cached(cache_dir: Path, key: str, nq: int, k: int) -> np.ndarray | None:
    path = cache_dir / f"gt-{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            rows = z["rows"]
            if str(z["key"]) != key or rows.shape != (nq, k):
                return None
            return np.asarray(rows, dtype=np.int64)
    except (OSError, ValueError, KeyError):
        return None  # a torn or foreign file is recomputed, never trusted


def store_cached(cache_dir: Path, key: str, rows: np.ndarray) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"gt-{key}.npz"
    tmp = cache_dir / f".gt-{key}.tmp.npz"
    np.savez(tmp, rows=rows, key=np.asarray(key))
    tmp.replace(path)
    return path


def digest_filters(keys: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for key in keys:
        h.update(key.encode())
        h.update(b"\n")
    return h.hexdigest()
