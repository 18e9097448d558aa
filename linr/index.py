"""The index: a "model binary" of item embeddings and attributes held as tensors on one
device, searched exhaustively with attribute pre-filtering.

Two locks, both private to this module: other code calls the methods below and never
takes them. `lock` guards the tensors: a search holds it, and so does each write while it
changes them, so a search never sees a half-applied call. `write_lock` orders the writers
(upsert, delete, reserve) and `save` among themselves: a write validates and plans its batch
holding only `write_lock`, so searches wait just for the short part that changes tensors,
and `save` reads a state no writer can change without stopping searches at all. Code that
needs both takes `write_lock` first. Writes validate the whole call before touching any
tensor: a bad item rejects its call and changes nothing. `write_batch()` holds the writers'
turn across several calls (an ingest batch), and `wait_for_searches()` lets background work
step aside for searches.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linr.attributes import AttributeStore
from linr.cpu import small
from linr.deleted import DeletedVersions
from linr.errors import InvalidInput
from linr.filters import FilterNode
from linr.ids import Id, IdMap
from linr.limits import MAX_DIM, MAX_INDEX_K
from linr.mask_cache import MaskCache
from linr.metrics import check_metric, normalize_rows
from linr.onebit import hooks as onebit
from linr.quantization import check_quantization
from linr.search import DEFAULT_SCAN_BYTES, Queries, parse_backend, parse_strategy
from linr.search.plan import faiss_module

FORMAT_VERSION = 1
_GROWTH = 1.5  # capacity grows geometrically: amortized O(1) copies per row
_NO_VERSION = np.iinfo(np.int64).min
_FP16_MAX = 65504.0
_SQNORM_MAX = 1e37  # keeps ||x||^2 (and 2<q,x> - ||x||^2) finite in float32


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device 'cuda' was requested but CUDA is not available")
    return dev


@dataclass
class UpsertResult:
    """One bool [n] per write of the call. A write is exactly one of: in effect, stale, or
    superseded (applied, then replaced by a later write of the same id in the same call)."""

    created: np.ndarray  # the id was new
    applied: np.ndarray  # not stale: in effect, or superseded
    stale: np.ndarray  # ignored: its version was below the item's current version
    superseded: np.ndarray  # applied, then replaced by a later write of the same id


@dataclass
class Item:
    id: Id
    vector: np.ndarray
    attributes: dict[str, Any]
    version: int | None = None


@dataclass
class SearchResult:
    """scores float32 [B, k] padded with -inf; rows int64 [B, k] padded with -1;
    ids: per query, the ids of its (at most k) results in order."""

    scores: np.ndarray
    rows: np.ndarray
    ids: list[list[Id]]

    @property
    def labels(self) -> np.ndarray:
        """int64 [B, k] ids padded with -1 (integer-id indexes only), as faiss returns."""
        out = np.full(self.rows.shape, -1, np.int64)
        for b, ids in enumerate(self.ids):
            out[b, : len(ids)] = ids
        return out


@dataclass
class _Parts:
    """Everything an index holds besides its settings: fresh, or read by `Index.load`."""

    store: Any  # linr.storage.VectorStore, or linr.onebit.store.OneBitStore (1bit)
    attrs: AttributeStore
    ids: IdMap
    valid: torch.Tensor  # bool [capacity] on the device: live rows
    versions: np.ndarray | None  # int64 [capacity], allocated on the first versioned write
    n_rows: int  # rows [0, n_rows) have been used; the scan stops there
    free: list[int]  # deleted rows, reused first
    deleted: DeletedVersions = field(default_factory=DeletedVersions)  # of deleted ids


class Index:
    def __init__(
        self,
        dim: int,
        metric: str = "ip",
        quantization: str = "fp32",
        device: str | torch.device = "auto",
        schema: Mapping[str, str] | None = None,
        fields: Sequence[str] | None = None,
        capacity: int = 1024,
        id_kind: str | None = None,
        scan_bytes: int = DEFAULT_SCAN_BYTES,
        bits: int | None = None,
        rerank: str | None = None,
        rerank_device: str | torch.device | None = None,
        seed: int | None = None,
        *,
        _parts: _Parts | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
            raise InvalidInput(f"dim must be an integer from 1 to {MAX_DIM}, got {dim!r}")
        self.dim = dim
        self.metric = check_metric(metric)
        self.quantization = check_quantization(quantization)
        self.device = resolve_device(device)
        self.fields = list(fields) if fields is not None else None
        if self.quantization != "1bit":
            onebit.check_unused(self.quantization, bits, rerank, rerank_device, seed)
        if _parts is None:
            capacity = max(int(capacity), 1)
            _parts = _Parts(
                onebit.make_store(
                    dim,
                    self.metric,
                    self.quantization,
                    self.device,
                    capacity,
                    bits,
                    rerank,
                    rerank_device,
                    seed,
                ),
                AttributeStore(self.device, schema, fields),
                IdMap(id_kind, capacity),
                torch.zeros(capacity, dtype=torch.bool, device=self.device),
                None,
                0,
                [],
            )
        _parts.attrs.grow(_parts.store.capacity)
        _parts.ids.grow(_parts.store.capacity)
        self._store, self._attrs, self._ids = _parts.store, _parts.attrs, _parts.ids
        self._valid, self._versions = _parts.valid, _parts.versions
        self._n_rows, self._free = _parts.n_rows, _parts.free
        self._deleted = _parts.deleted  # versions of deleted ids (linr/deleted.py)
        # quantization 1bit (linr/onebit): codes, the estimate's scan and the exact rerank
        self._scanner = onebit.make_scanner(self._store, self.metric, scan_bytes)
        self.lock = threading.RLock()  # searches and reads; writers while changing tensors
        self.write_lock = threading.RLock()  # writers and save, one at a time; before `lock`
        self.manifest_extra: dict[str, Any] = {}
        self._masks = MaskCache()  # cleared by every write, under `lock`

    # ---- introspection -------------------------------------------------------------------
    def __len__(self) -> int:
        with self.lock:
            return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        with self.lock:  # the id table may be rehashing on another thread
            return self._row_of(id_) >= 0

    @property
    def capacity(self) -> int:
        return self._store.capacity

    @property
    def l2_centre(self) -> torch.Tensor | None:
        """l2 indexes: float32 [D] on the device, the point rows are stored relative to
        (fixed by the first write; linr/storage.py says why); None for other metrics."""
        return self._store.centre

    @property
    def n_rows(self) -> int:
        """Rows used so far, live or freed: `SearchResult.rows` lie in [0, n_rows)."""
        return self._n_rows

    @property
    def id_kind(self) -> str | None:
        return self._ids.kind

    @property
    def schema(self) -> dict[str, str]:
        return dict(self._attrs.schema)

    def memory_bytes(self) -> dict[str, int]:
        vec = self._store.memory_bytes() + self._valid.numel()
        if self._versions is not None:
            vec += self._versions.nbytes
        return {
            "vectors": vec,
            "ids": self._ids.memory_bytes(),
            "attributes": self._attrs.memory_bytes(),
            **onebit.extra_memory(self._store),
        }

    def stats(self) -> dict[str, Any]:
        with self.lock:
            mem = self.memory_bytes()
            return {
                "count": len(self),
                "capacity": self.capacity,
                "dim": self.dim,
                "metric": self.metric,
                "quantization": self.quantization,
                "device": str(self.device),
                "memory_bytes": sum(mem.values()),
                "memory": mem,
                "id_kind": self.id_kind,
                "schema": self.schema,
            }

    # ---- writes --------------------------------------------------------------------------
    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` rows now (a build that knows N avoids growth slack)."""
        with self.write_lock:
            if capacity > self.capacity:
                self._grow_to(capacity)

    @contextmanager
    def write_batch(self) -> Iterator[None]:
        """Hold the writers' turn across several writes: no other writer (nor `save`) runs
        between them, so each sees exactly the effects of those before it. Searches go on
        between the writes (each write is atomic to them), so a search sees the batch's
        writes in order, up to some point.

            with index.write_batch():
                index.upsert(ids, vectors, attributes)
                index.delete(gone)
        """
        with self.write_lock:
            yield

    def wait_for_searches(self, timeout_s: float) -> bool:
        """Block until no search (or write) is using the tensors, at most `timeout_s`;
        True if they were free. For background work (ingest decoding) that would otherwise
        share the cores with a running search and slow it."""
        if timeout_s <= 0:
            return False
        if not self.lock.acquire(timeout=timeout_s):
            return False
        self.lock.release()
        return True

    def _grow_to(self, capacity: int, n_insert: int = 0) -> None:
        """Room for `capacity` rows and `n_insert` more ids. Hold `write_lock`: the grown
        copies are built without `lock` (no writer can change what they copy, and searches
        only read), then swapped in under it, so a search waits for the swap, not the copy
        (160 ms to grow 200k x 128 fp32 rows on the 2-core dev machine)."""
        capacity = max(capacity, self.capacity)
        installs = [
            self._store.prepare_grow(capacity),
            self._attrs.prepare_grow(capacity),
            self._ids.prepare_grow(capacity, n_insert),
        ]
        valid = self._valid
        if capacity > valid.shape[0]:
            valid = torch.zeros(capacity, dtype=torch.bool, device=self.device)
            valid[: self._valid.shape[0]] = self._valid
        versions = self._versions
        if versions is not None and capacity > versions.shape[0]:
            extra = np.full(capacity - versions.shape[0], _NO_VERSION, np.int64)
            versions = np.concatenate([versions, extra])
        with self.lock:
            for install in installs:
                install()
            self._valid, self._versions = valid, versions

    def _make_room(self, n_new: int) -> None:
        """Before writing `n_new` new ids (holding `write_lock` only): grow now, so that
        the part of the write that holds `lock` never does."""
        fresh = max(n_new - len(self._free), 0)
        need = self._n_rows + fresh
        capacity = self.capacity
        if need > capacity:
            capacity = max(need, int(capacity * _GROWTH) + 1)
        if capacity > self.capacity or self._ids.needs_room(n_new):
            self._grow_to(capacity, n_new)

    def _allocate(self, n: int) -> np.ndarray:
        reuse = self._free[-n:] if n else []
        del self._free[len(self._free) - len(reuse) :]
        fresh = n - len(reuse)
        assert self._n_rows + fresh <= self.capacity, "_make_room runs before every write"
        rows = np.concatenate(
            [np.asarray(reuse, np.int64), np.arange(self._n_rows, self._n_rows + fresh)]
        )
        self._n_rows += fresh
        return rows

    def _prepare_vectors(self, vectors: Any, n: int, what: str = "vectors") -> torch.Tensor:
        if isinstance(vectors, torch.Tensor):
            arr = vectors.detach().cpu().numpy()
        else:
            try:
                arr = np.asarray(vectors)
            except ValueError as e:  # ragged nested lists
                raise InvalidInput(f"{what} are not a rectangular array of numbers: {e}") from None
        if arr.dtype.kind not in "fiu":
            raise InvalidInput(f"{what} must be numbers, got {arr.dtype}")
        if arr.ndim == 1 and n == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InvalidInput(
                f"{what} have shape {tuple(arr.shape)}; the index expects [n, {self.dim}]"
            )
        if arr.shape[0] != n:
            raise InvalidInput(f"got {arr.shape[0]} {what} for {n} ids")
        arr = arr.astype(np.float32, copy=False)
        # numpy's isfinite is ~100x faster than torch's on CPU here (ingest hot path)
        finite = np.isfinite(arr).all(1)
        if not finite.all():
            bad = int(np.nonzero(~finite)[0][0])
            raise InvalidInput(f"vector {bad} contains NaN or infinite values")
        if what == "vectors" and onebit.stores_fp16(self._store) and arr.size:
            big = np.abs(arr).max(1) > _FP16_MAX
            if big.any():
                bad = int(np.nonzero(big)[0][0])
                raise InvalidInput(
                    f"vector {bad} has a value beyond the fp16 range (|x| > {_FP16_MAX:g})"
                )
        if what == "vectors" and self.metric == "l2" and arr.size:
            sq = np.square(arr, dtype=np.float64).sum(1)
            if (sq > _SQNORM_MAX).any():
                bad = int(np.nonzero(sq > _SQNORM_MAX)[0][0])
                raise InvalidInput(f"vector {bad} is too large: its squared norm overflows float32")
        x = torch.from_numpy(np.ascontiguousarray(arr))
        if self.metric == "cosine":
            x = normalize_rows(x)
        return x

    def upsert(
        self,
        ids: Sequence[Id] | np.ndarray,
        vectors: Any,
        attributes: Sequence[Mapping[str, Any] | None] | None = None,
        versions: Sequence[int | None] | None = None,
    ) -> UpsertResult:
        """Insert or replace items. Writes of one id apply in order; a version below the
        item's current version is ignored (last writer wins). Validates the whole batch
        first: on error nothing changes."""
        with self.write_lock:  # validate and plan: searches go on meanwhile
            id_arr, kind = self._ids.normalize(ids)
            n = len(id_arr)
            x = self._prepare_vectors(vectors, n)
            if attributes is not None and len(attributes) != n:
                raise InvalidInput(f"got {len(attributes)} attribute objects for {n} ids")
            vers = self._check_versions(versions, n)
            attrs = list(attributes) if attributes is not None else [None] * n
            prepared = self._attrs.prepare(attrs)  # validates the whole batch
            rows = self._ids.lookup(id_arr) if self._ids.kind == kind else np.full(n, -1)
            final, applied = self._plan_writes(id_arr, vers, rows)
            created = np.zeros(n, bool)
            created[final] = rows[final] < 0
            superseded = applied.copy()
            superseded[final] = False
            result = UpsertResult(created, applied, ~applied, superseded)
            if final.size == 0:
                return result
            if final.size < n:
                prepared = self._attrs.prepare([attrs[i] for i in final.tolist()], like=prepared)
            # ---- nothing below can fail on bad input ----
            self._make_room(int((rows[final] < 0).sum()))
            with self.lock:
                rows = rows[final]
                new = rows < 0
                n_new = int(new.sum())
                if n_new:
                    rows[new] = self._allocate(n_new)
                rows_t = torch.from_numpy(rows)
                old_rows = rows_t[torch.from_numpy(~new)]
                if old_rows.numel():
                    self._attrs.clear(old_rows)
                dev_rows = rows_t.to(self.device)
                self._store.write(dev_rows, x[torch.from_numpy(final)].to(self.device))
                self._attrs.write(rows_t, prepared)
                if n_new:
                    pos = final[new]
                    new_ids = (
                        id_arr[pos]
                        if isinstance(id_arr, np.ndarray)
                        else [id_arr[i] for i in pos.tolist()]
                    )
                    self._ids.insert(new_ids, rows[new], kind)
                    if len(self._deleted):
                        self._deleted.forget(
                            new_ids.tolist() if isinstance(new_ids, np.ndarray) else new_ids
                        )
                if vers is not None and self._versions is None:
                    self._versions = np.full(self.capacity, _NO_VERSION, np.int64)
                if self._versions is not None:
                    self._versions[rows] = _NO_VERSION if vers is None else vers[final]
                self._valid[dev_rows] = True
                self._masks.clear()
                return result

    def _plan_writes(
        self, ids: Any, vers: np.ndarray | None, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions whose writes are the final state of their id, applied mask [n]).
        A write is stale when its version is below the id's current one (stored, or set by
        an earlier write of the same batch); writes without a version always apply."""
        n = rows.shape[0]
        stored = np.full(n, _NO_VERSION, np.int64)
        if self._versions is not None:
            hit = rows >= 0
            stored[hit] = self._versions[rows[hit]]
        keys = ids.tolist() if isinstance(ids, np.ndarray) else ids
        if len(self._deleted) and vers is not None:  # a deleted id keeps its last version
            miss = np.nonzero(rows < 0)[0]
            stored[miss] = self._deleted.versions([keys[i] for i in miss.tolist()])
        if len(set(keys)) == n:  # the common case, vectorized
            if vers is None:
                return np.arange(n), np.ones(n, bool)
            applied = ~((vers != _NO_VERSION) & (stored != _NO_VERSION) & (vers < stored))
            return np.nonzero(applied)[0], applied
        applied = np.zeros(n, bool)
        cur: dict[Any, int] = {}
        last: dict[Any, int] = {}
        for i, key in enumerate(keys):
            v = _NO_VERSION if vers is None else int(vers[i])
            c = cur.get(key, int(stored[i]))
            if v != _NO_VERSION and c != _NO_VERSION and v < c:
                continue
            applied[i] = True
            cur[key] = v
            last[key] = i
        return np.array(sorted(last.values()), np.int64), applied

    def _check_versions(self, versions: Sequence[int | None] | None, n: int) -> np.ndarray | None:
        if versions is None:
            return None
        if len(versions) != n:
            raise InvalidInput(f"got {len(versions)} versions for {n} ids")
        out = np.full(n, _NO_VERSION, np.int64)
        for i, v in enumerate(versions):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InvalidInput(f"version {v!r} of item {i} is not an integer")
            if not -(2**63) < int(v) < 2**63:
                raise InvalidInput(f"version {v} of item {i} does not fit in 64 bits")
            out[i] = v
        return out

    def delete(
        self, ids: Sequence[Id] | np.ndarray, versions: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """Remove items; returns bool [n], True where the id existed and was removed.
        A delete whose version is below the item's current version is ignored."""
        with self.write_lock:
            id_arr, kind = self._ids.normalize(ids)
            n = len(id_arr)
            vers = self._check_versions(versions, n)
            keys = id_arr.tolist() if isinstance(id_arr, np.ndarray) else id_arr
            first: dict[Any, int] = {}
            for i, key in enumerate(keys):
                first.setdefault(key, i)
            if n == 0 or self._ids.kind != kind:
                if vers is not None and self._ids.kind is None:  # nothing written yet
                    self._deleted.remember(list(first), vers[list(first.values())])
                return np.zeros(n, bool)
            pos = np.fromiter(first.values(), np.int64, len(first))
            uniq = id_arr[pos] if isinstance(id_arr, np.ndarray) else [id_arr[i] for i in pos]
            rows = self._ids.lookup(uniq)
            ok = rows >= 0
            v = vers[pos] if vers is not None else np.full(len(pos), _NO_VERSION, np.int64)
            cur = np.full(len(pos), _NO_VERSION, np.int64)
            if self._versions is not None:
                cur = np.where(ok, self._versions[np.maximum(rows, 0)], _NO_VERSION)
                ok &= ~((v != _NO_VERSION) & (cur != _NO_VERSION) & (v < cur))
            keys_u = uniq.tolist() if isinstance(uniq, np.ndarray) else uniq
            absent = np.nonzero(rows < 0)[0].tolist()
            if vers is not None and absent:  # a versioned delete of an absent id: remembered
                self._deleted.remember([keys_u[i] for i in absent], v[absent])
            removed = np.zeros(n, bool)
            removed[pos[ok]] = True
            if not ok.any():
                return removed
            with self.lock:
                rows = rows[ok]
                gone = (
                    uniq[ok] if isinstance(uniq, np.ndarray) else [u for u, f in zip(uniq, ok) if f]
                )
                rows_t = torch.from_numpy(rows)
                self._valid[rows_t.to(self.device)] = False
                self._attrs.clear(rows_t)
                self._ids.remove(gone, rows)
                self._deleted.remember(
                    gone.tolist() if isinstance(gone, np.ndarray) else gone,
                    np.maximum(cur[ok], v[ok]),
                )
                if self._versions is not None:
                    self._versions[rows] = _NO_VERSION
                self._free.extend(rows.tolist())
                self._masks.clear()
                return removed

    def check_attributes(self, attributes: Sequence[Mapping[str, Any] | None]) -> None:
        """Raise InvalidInput naming the item and field if an upsert of `attributes` would be
        refused now (a kind clash, a bad name, a null); changes nothing. For writes that
        reach the index later, through a log: another write may still fix a kind first."""
        with self.write_lock:
            self._attrs.prepare(list(attributes))

    def clear(self) -> None:
        """Remove every item and forget the versions of deleted ones (an index rebuilt from
        a new log). Capacity, schema and field kinds stay."""
        with self.write_lock:
            self.delete(self.ids())
            self._deleted.clear()

    # ---- reads ---------------------------------------------------------------------------
    def _row_of(self, id_: object) -> int:
        if self._ids.kind is None or isinstance(id_, bool):
            return -1
        if self._ids.kind == "int":
            if not isinstance(id_, (int, np.integer)) or not 0 <= int(id_) < 2**63:
                return -1
            return int(self._ids.lookup(np.array([id_], np.int64))[0])
        if not isinstance(id_, str):
            return -1
        return int(self._ids.lookup([id_])[0])

    def get(self, id_: Id) -> Item | None:
        with self.lock:
            row = self._row_of(id_)
            if row < 0:
                return None
            r = torch.tensor([row], device=self.device)
            vec = self._store.gather(r)[0].cpu().numpy()
            ver = None
            if self._versions is not None and self._versions[row] != _NO_VERSION:
                ver = int(self._versions[row])
            return Item(self._ids.id_of(row), vec, self._attrs.get(row), ver)

    def attributes(self, ids: Sequence[Id]) -> list[dict[str, Any] | None]:
        """The attributes of each id (None where the id is absent), without reading its
        vector: what a search answer shows next to its hits."""
        with self.lock:
            rows = [self._row_of(i) for i in ids]
            found = [r for r in rows if r >= 0]
            attrs = iter(self._attrs.get_many(found))
            return [next(attrs) if r >= 0 else None for r in rows]

    def stored_vectors(self, rows: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """float32 [n, D] on the CPU: the vectors of `rows` (as in `SearchResult.rows`) as
        stored, i.e. decoded (fp16 and int8 round what was written; cosine normalized):
        exactly what searches score against. A freed row holds its last vector."""
        r = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows, np.int64))
        with self.lock:
            if r.numel() and not (int(r.min()) >= 0 and int(r.max()) < self._n_rows):
                raise InvalidInput(f"rows must lie in [0, {self._n_rows})")
            return self._store.gather(r.to(self.device)).cpu()

    def ids(self) -> list[Id]:
        """Every id in the index, in row order."""
        with self.lock:
            rows = torch.nonzero(self._valid[: self._n_rows]).flatten().cpu().tolist()
            return self._ids.ids_of(rows)

    def filter_mask(self, filter: Any) -> torch.Tensor:
        """bool [n_rows] on the device: live rows that match the filter (None: all live rows)."""
        with self.lock:
            node = self._masks.parse(filter)[0]
            mask = self._valid[: self._n_rows]
            if node is not None:
                mask = mask & self._attrs.mask(node, self.capacity)[: self._n_rows]
            return mask

    def _prepare_queries(self, queries: Any, aggregate: str | None) -> Queries:
        if isinstance(queries, (list, tuple)) and aggregate is not None:
            mats = [
                self._prepare_vectors(q, np.shape(q)[0] if np.ndim(q) == 2 else 1, "query vectors")
                for q in queries
            ]
            if not mats:
                raise InvalidInput("no queries given")
            if aggregate not in ("max", "sum"):
                raise InvalidInput(f"aggregate must be 'max' or 'sum', got {aggregate!r}")
            m = max(x.shape[0] for x in mats)
            if min(x.shape[0] for x in mats) < 1:
                raise InvalidInput("a multi-embedding query needs at least one vector")
            q = torch.zeros((len(mats), m, self.dim))
            pad = torch.ones((len(mats), m), dtype=torch.bool)
            for i, x in enumerate(mats):
                q[i, : x.shape[0]] = x
                pad[i, : x.shape[0]] = False
            return Queries(
                q.view(-1, self.dim).to(self.device), len(mats), pad.to(self.device), aggregate
            )
        if aggregate is not None:
            raise InvalidInput("aggregate applies to multi-embedding queries (a list of [m, D])")
        arr = queries if isinstance(queries, torch.Tensor) else np.asarray(queries)
        n = 1 if arr.ndim == 1 else arr.shape[0]
        x = self._prepare_vectors(arr, n, "queries")
        return Queries(x.to(self.device), n)

    def search(
        self,
        queries: Any,
        k: int = 10,
        filter: Any = None,
        *,
        aggregate: str | None = None,
        strategy: str = "auto",
        backend: str = "auto",
        oversample: int | None = None,
    ) -> SearchResult:
        """k nearest items of each query among the live items matching the filter.

        queries: [B, D] or [D]; or, with aggregate="max"|"sum", a list of B arrays [m_i, D]
        (multi-embedding: each item scored by the max or sum of its scores against the m_i
        vectors). filter: None, one filter (string or JSON form) for all, or a list of B.
        strategy: "auto" (by the filter's measured selectivity), "mask" or "gather";
        backend: "auto", "torch", "faiss" or "triton" (linr/search/plan.py). Both change the
        speed; results agree to float32 rounding (README, "Search"). Anything else is
        InvalidInput. Results are padded with score -inf, row -1.
        oversample (quantization "1bit"; exact quantizations ignore it): candidates kept
        per result for the exact rerank, default 10 (linr.onebit.search).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_INDEX_K:
            raise InvalidInput(f"k must be an integer from 1 to {MAX_INDEX_K}, got {k!r}")
        k = int(k)
        if (
            aggregate is None
            and strategy == "auto"
            and backend == "auto"
            and isinstance(filter, str)
            and isinstance(queries, np.ndarray)
        ):
            one = self._search_one(queries, k, filter)
            if one is not None:
                return one
        strategy_, backend_ = parse_strategy(strategy), parse_backend(backend)
        with self.lock:
            qs = self._prepare_queries(queries, aggregate)
            extra = onebit.search_kwargs(self._store, oversample)
            b = qs.batch
            if isinstance(filter, list):
                if len(filter) != b:
                    raise InvalidInput(f"got {len(filter)} filters for {b} queries")
                per_query = [self._masks.parse(f) for f in filter]
            else:
                per_query = [self._masks.parse(filter)] * b
            groups: dict[str, list[int]] = {}
            nodes: dict[str, FilterNode | None] = {}
            for i, (node, key) in enumerate(per_query):
                groups.setdefault(key, []).append(i)
                nodes.setdefault(key, node)
            if len(groups) > 1:
                scores = torch.full((b, k), -torch.inf)
                rows = torch.full((b, k), -1, dtype=torch.int64)
            for key, idx in groups.items():
                sub = qs if len(groups) == 1 else _select(qs, idx)
                m = self._masks.get(key, partial(self._group_mask, nodes[key]))
                s, r = self._scanner.search(
                    sub, k, self._n_rows, m.mask, strategy_, backend_, cached=m, **extra
                )
                if len(groups) == 1:
                    scores, rows = s.cpu(), r.cpu()
                else:
                    scores[idx], rows[idx] = s.cpu(), r.cpu()
            rows_np = rows.numpy()
            return SearchResult(scores.numpy(), rows_np, self._ids.ids_of_topk(rows_np))

    def _search_one(self, q: np.ndarray, k: int, filter: str) -> SearchResult | None:
        """One float32 query under a selective string filter: linr.cpu.small's
        one_query_by_rows, or None (the caller takes the full path, which checks inputs)."""
        if q.dtype != np.float32 or q.shape not in ((self.dim,), (1, self.dim)):
            return None
        if self.metric == "l2" or not np.isfinite(q).all():
            return None
        q = np.ascontiguousarray(q.reshape(1, self.dim))  # faiss reads the buffer
        if self.metric == "cosine":
            if not q.any():  # a zero query: the full path raises
                return None
            q = normalize_rows(torch.from_numpy(q)).numpy()
        with self.lock:
            if onebit.search_kwargs(self._store, None):
                return None
            node, key = self._masks.parse(filter)
            m = self._masks.get(key, partial(self._group_mask, node))
            got = small.one_query_by_rows(self._store, self.metric, q, k, m, faiss_module())
            if got is None:
                return None
            return SearchResult(got[0], got[1], self._ids.ids_of_topk(got[1]))

    def _group_mask(self, node: Any) -> torch.Tensor:
        mask = self._valid[: self._n_rows]
        if node is not None:
            mask = mask & self._attrs.mask(node, self.capacity)[: self._n_rows]
        return mask

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write `path/tensors.safetensors` and `path/manifest.json` (written last)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # write_lock, not lock: no writer can change what is read here, and searches (which
        # only read) go on while it is written.
        with self.write_lock:
            n = self._n_rows
            tensors: dict[str, torch.Tensor] = {
                f"vec.{k}": v for k, v in self._store.state_dict(n).items()
            }
            tensors["valid"] = self._valid[:n]
            if self._versions is not None:
                tensors["versions"] = torch.from_numpy(self._versions[:n])
            for name, arr in self._deleted.to_state().items():
                tensors[name] = torch.from_numpy(arr)
            for name, arr in self._ids.to_state(n).items():
                tensors[name] = torch.from_numpy(arr)
            attr_tensors, attr_meta = self._attrs.state_dict()
            for k, v in attr_tensors.items():
                tensors[f"attr.{k}"] = v
            cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            save_file(cpu, str(path / "tensors.safetensors"))
            manifest = {
                "format": "linr-index",
                "format_version": FORMAT_VERSION,
                "dim": self.dim,
                "metric": self.metric,
                "quantization": self.quantization,
                "count": len(self),
                "n_rows": n,
                "capacity": self.capacity,
                "id_kind": self.id_kind,
                "fields": self.fields,
                "schema": self.schema,
                "attributes": attr_meta,
                "free_rows": self._free,
                "extra": dict(extra or {}),
                **onebit.manifest_entry(self._store),
            }
            _write_json(path / "manifest.json", manifest)

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        rerank_device: str | torch.device | None = None,
        *,
        mmap: bool = False,
    ) -> Index:
        """rerank_device (quantization 1bit): where to hold the rerank store; by default
        where it was saved from (the host stays the host), else with the codes.
        mmap: map the tensors copy-on-write instead of reading them (linr.io.mapped), for
        a process that will not save to `path`; a CPU index then scans the file's pages."""
        from linr.saved import read_tensors

        path = Path(path)
        manifest = read_manifest(path)
        dev = resolve_device(device)
        capacity = max(manifest["capacity"], 1)
        tensors = read_tensors(path, manifest, mmap=mmap)  # checked against the manifest
        n = manifest["n_rows"]
        store = onebit.make_store(
            manifest["dim"],
            manifest["metric"],
            manifest["quantization"],
            dev,
            capacity,
            **onebit.load_kwargs(manifest, rerank_device),
        )
        store.load_state({k[4:]: v for k, v in tensors.items() if k.startswith("vec.")})
        valid = torch.zeros(capacity, dtype=torch.bool, device=dev)
        valid[:n] = tensors["valid"].to(dev)
        versions = None
        if "versions" in tensors:
            versions = np.full(capacity, _NO_VERSION, np.int64)
            versions[:n] = tensors["versions"].numpy()
        ids_state = {k: v.numpy() for k, v in tensors.items() if k.startswith("ids.")}
        attr_t = {k[5:]: v for k, v in tensors.items() if k.startswith("attr.")}
        parts = _Parts(
            store,
            AttributeStore.from_state(attr_t, manifest["attributes"], dev),
            IdMap.from_state(manifest["id_kind"], ids_state, capacity),
            valid,
            versions,
            n,
            list(manifest.get("free_rows", [])),
            DeletedVersions.from_state(
                {k: v.numpy() for k, v in tensors.items() if k.startswith("deleted.")}
            ),
        )
        idx = cls(
            manifest["dim"],
            manifest["metric"],
            manifest["quantization"],
            dev,
            fields=manifest.get("fields"),
            _parts=parts,
        )
        idx.manifest_extra = dict(manifest.get("extra", {}))
        return idx


def _select(qs: Queries, idx: list[int]) -> Queries:
    it = torch.tensor(idx, device=qs.q.device)
    if qs.pad is None:
        return Queries(qs.q[it], len(idx))
    m = qs.pad.shape[1]
    q = qs.q.view(qs.batch, m, -1)[it].reshape(-1, qs.q.shape[1])
    return Queries(q, len(idx), qs.pad[it], qs.aggregate)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path) / "manifest.json"
    if not p.is_file():
        raise InvalidInput(f"{path} is not a linr index: {p.name} is missing")
    try:
        manifest: dict[str, Any] = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{p} is not valid JSON: {e}") from None
    if manifest.get("format") != "linr-index":
        raise InvalidInput(f"{p} is not a linr index manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"{p} has format_version {manifest.get('format_version')}; this linr reads "
            f"{FORMAT_VERSION}"
        )
    return manifest
