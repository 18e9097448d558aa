"""`linr eval` end to end: read the data, build one index per quantization, get the ground
truth, search in every mode, score, and return the report as a dict (see report.py).

Everything but the `run` section (timings, device, cache hits) is a pure function of the
inputs, so the same inputs give the same report.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linr.errors import InvalidInput
from linr.eval import onebit
from linr.eval.attributes import (
    AttributeSource,
    Filter,
    ParquetAttributes,
    filter_key,
    open_attributes,
    parse_filter_arg,
    read_query_filters,
)
from linr.eval.groundtruth import (
    MaskTable,
    cache_key,
    compute_ground_truth,
    digest_filters,
    file_digest,
    load_cached,
    store_cached,
)
from linr.eval.modes import Mode, ModeRun, kth_true_scores, run_mode, score_mode
from linr.eval.summary import summarize
from linr.io.columnar import hdf5_metric
from linr.io.source import (
    HDF5_SUFFIXES,
    VectorSource,
    open_vectors,
    read_ground_truth,
    split_dataset,
    suffix_of,
)


@dataclass
class EvalConfig:
    base: str
    queries: str | None = None  # None with an HDF5 base: its "test" dataset
    attributes: str | None = None
    query_filters: str | None = None
    filter: str | None = None
    gt: str | None = None
    ks: tuple[int, ...] = (10, 100)
    quantizations: tuple[str, ...] = ("fp32", "fp16", "int8")
    filterings: tuple[str, ...] = ("pre", "post")
    oversampling: tuple[int, ...] = (1, 2, 4, 10)
    bits: tuple[int, ...] = ()  # quantization 1bit: one index per value (default D)
    rerank_oversample: tuple[int, ...] = (1, 4, 10, 20, 50)  # 1bit: a mode per value
    rerank: str = "fp16"  # 1bit
    metric: str | None = None
    fields: list[str] | None = None
    schema: dict[str, str] | None = None
    tag_field: str = "tags"
    vector_column: str | None = None
    device: str = "auto"
    batch_size: int = 100
    gt_dtype: str = "float64"
    max_base: int | None = None
    max_queries: int | None = None
    chunk_rows: int = 65536
    cache_dir: Path | None = None  # where computed ground truth is cached; None: not cached
    progress: bool = True
    run_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    base: VectorSource
    n_base: int
    queries: np.ndarray  # float32 [Q, D]
    metric: str
    attributes: AttributeSource | None
    filters: list[Filter]  # per query
    filter_keys: list[str]  # distinct, in first-seen order
    query_fids: np.ndarray  # int64 [Q] index into filter_keys


def _bar(cfg: EvalConfig, total: int, desc: str, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not cfg.progress,
        leave=False,
        dynamic_ncols=True,
    )


def load_dataset(cfg: EvalConfig) -> Dataset:
    base = open_vectors(cfg.base, "base", cfg.vector_column)
    queries_path = cfg.queries
    if queries_path is None:
        if suffix_of(cfg.base) not in HDF5_SUFFIXES:
            raise InvalidInput("--queries is required unless --base is an ann-benchmarks HDF5")
        queries_path = split_dataset(cfg.base)[0]
    qsrc = open_vectors(queries_path, "queries", cfg.vector_column)
    if qsrc.dim != base.dim:
        raise InvalidInput(f"queries have dimension {qsrc.dim}, base vectors {base.dim}")
    n_base = base.n if cfg.max_base is None else min(cfg.max_base, base.n)
    nq = qsrc.n if cfg.max_queries is None else min(cfg.max_queries, qsrc.n)
    if n_base == 0 or nq == 0:
        raise InvalidInput(f"nothing to evaluate: {n_base} base vectors, {nq} queries")
    queries = qsrc.read(0, nq)
    metric = cfg.metric
    if metric is None and suffix_of(cfg.base) in HDF5_SUFFIXES:
        metric = hdf5_metric(cfg.base)
    metric = metric or "ip"

    attrs: AttributeSource | None = None
    if cfg.attributes is not None:
        attrs = open_attributes(cfg.attributes, cfg.tag_field, cfg.vector_column)
    elif suffix_of(cfg.base) == ".parquet":
        pa_attrs = ParquetAttributes(cfg.base, cfg.vector_column)
        attrs = pa_attrs if pa_attrs.columns else None
    if attrs is not None and (attrs.n < n_base or (cfg.max_base is None and attrs.n != base.n)):
        raise InvalidInput(
            f"{attrs.path} has attributes for {attrs.n} items, the base set has {base.n} vectors"
        )

    if cfg.query_filters is not None and cfg.filter is not None:
        raise InvalidInput("give --filter or --query-filters, not both")
    if cfg.query_filters is not None:
        filters = read_query_filters(cfg.query_filters, cfg.tag_field)
        if len(filters) < nq or (cfg.max_queries is None and len(filters) != qsrc.n):
            raise InvalidInput(
                f"{cfg.query_filters} has {len(filters)} filters for {qsrc.n} queries"
            )
        filters = filters[:nq]
    else:
        one = parse_filter_arg(cfg.filter) if cfg.filter is not None else None
        filters = [one] * nq
    if attrs is None and any(f is not None for f in filters):
        raise InvalidInput("filters need item attributes: give --attributes")
    keys: dict[str, int] = {}
    fids = np.array([keys.setdefault(filter_key(f), len(keys)) for f in filters], np.int64)
    return Dataset(base, n_base, queries, metric, attrs, filters, list(keys), fids)


def check_filters(ds: Dataset) -> None:
    """Parse every distinct filter before any work, so a typo costs nothing (exit 2)."""
    import linr

    seen: set[int] = set()
    for i, fid in enumerate(ds.query_fids.tolist()):
        if fid not in seen:
            seen.add(fid)
            try:
                linr.parse_filter(ds.filters[i])
            except ValueError as e:
                raise InvalidInput(f"filter of query {i}: {e}") from e


def build_index(cfg: EvalConfig, ds: Dataset, quantization: str, **kw: Any) -> Any:
    import linr

    index = linr.Index(
        ds.base.dim,
        ds.metric,
        quantization,
        cfg.device,
        schema=cfg.schema,
        fields=cfg.fields,
        capacity=ds.n_base,
        **kw,
    )
    attr_chunks = (
        ds.attributes.chunks(cfg.chunk_rows, ds.n_base) if ds.attributes is not None else None
    )
    with _bar(cfg, ds.n_base, f"build {quantization}", "vec") as bar:
        for start, x in ds.base.chunks(cfg.chunk_rows, ds.n_base):
            attrs = next(attr_chunks) if attr_chunks is not None else None
            try:
                index.upsert(np.arange(start, start + x.shape[0]), x, attrs)
            except ValueError as e:
                raise InvalidInput(f"base rows {start}..{start + x.shape[0] - 1}: {e}") from e
            bar.update(x.shape[0])
    return index


def row_mapping(index: Any, n_base: int) -> np.ndarray | None:
    """index row -> base row; None when they coincide (a fresh index fills rows in order)."""
    ids = np.asarray(index.ids(), dtype=np.int64)
    if ids.shape[0] != n_base:
        raise RuntimeError(f"index holds {ids.shape[0]} items after loading {n_base}")
    return None if np.array_equal(ids, np.arange(n_base)) else ids


def evaluate_masks(index: Any, ds: Dataset, row_to_base: np.ndarray | None) -> MaskTable:
    table = MaskTable(ds.n_base)
    first = {int(f): i for i, f in reversed(list(enumerate(ds.query_fids.tolist())))}
    for fid in range(len(ds.filter_keys)):
        rows = index.filter_mask(ds.filters[first[fid]]).cpu().numpy()
        mask = np.zeros(ds.n_base, dtype=bool)
        if row_to_base is None:
            mask[: rows.shape[0]] = rows
        else:
            mask[row_to_base[: rows.shape[0]][rows]] = True
        table.add(mask)
    return table


def ground_truth(cfg: EvalConfig, ds: Dataset, masks: MaskTable, k: int) -> tuple[np.ndarray, bool]:
    """(true base rows [Q, >= k], whether it came from the cache or a file)."""
    nq = ds.queries.shape[0]
    if cfg.gt is not None:
        gt = read_ground_truth(cfg.gt)
        if gt.shape[0] < nq or gt.shape[1] < k:
            raise InvalidInput(
                f"{cfg.gt} holds {gt.shape[1]} neighbours of {gt.shape[0]} "
                f"queries; need {k} of {nq}"
            )
        if gt.size and int(gt.max()) >= ds.n_base:
            raise InvalidInput(
                f"{cfg.gt} names base row {int(gt.max())}, beyond the {ds.n_base} base vectors used"
            )
        return gt[:nq, :k], True
    key = cache_key(
        {
            "base": file_digest(cfg.base),
            "base_path_dataset": split_dataset(cfg.base)[1],
            "vector_column": cfg.vector_column,
            "n_base": ds.n_base,
            "queries": _digest(ds.queries),
            "attributes": file_digest(cfg.attributes) if cfg.attributes else None,
            "fields": cfg.fields,
            "schema": cfg.schema,
            "tag_field": cfg.tag_field,
            "filters": digest_filters(ds.filter_keys[int(f)] for f in ds.query_fids),
            "metric": ds.metric,
            "k": k,
            "dtype": cfg.gt_dtype,
        }
    )
    cached = load_cached(cfg.cache_dir, key, nq, k) if cfg.cache_dir else None
    if cached is not None:
        return cached, True
    dtype = torch.float64 if cfg.gt_dtype == "float64" else torch.float32
    with _bar(cfg, ds.n_base, "ground truth", "vec") as bar:
        rows, _ = compute_ground_truth(
            ds.queries, ds.base, ds.n_base, k, ds.metric, masks, ds.query_fids, dtype, bar.update
        )
    if cfg.cache_dir:
        store_cached(cfg.cache_dir, key, rows)
    return rows, False


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).hexdigest()


@contextmanager
def _timed(store: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    store[name] = round(time.perf_counter() - t0, 3)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


def _load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): timings on a machine whose
    load exceeds its cores are not comparable with a quiet run's."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    t_start = time.perf_counter()
    load_start = _load_average()
    ks = tuple(sorted(set(cfg.ks)))
    ds = load_dataset(cfg)
    check_filters(ds)
    timings: dict[str, float] = {}
    masks: MaskTable | None = None
    truth: np.ndarray | None = None
    kth: dict[int, np.ndarray] = {}
    runs: list[ModeRun] = []
    scored: dict[tuple[str, int], Any] = {}
    gt_reused = False
    device = ""
    builds: list[tuple[str, int | None]] = [(q, None) for q in cfg.quantizations if q != "1bit"]
    if "1bit" in cfg.quantizations:
        builds += [("1bit", b) for b in onebit.bits_list(cfg.bits, ds.base.dim)]
    for quant, bits in builds:
        label = quant if bits is None else onebit.label(bits)
        kw: dict[str, Any] = {} if bits is None else {"bits": bits, "rerank": cfg.rerank}
        with _timed(timings, f"build {label}"):
            index = build_index(cfg, ds, quant, **kw)
        device = device_name(index.device)
        row_to_base = row_mapping(index, ds.n_base)
        if masks is None:
            with _timed(timings, "filter masks"):
                masks = evaluate_masks(index, ds, row_to_base)
        if truth is None:
            with _timed(timings, "ground truth"):
                truth, gt_reused = ground_truth(cfg, ds, masks, max(ks))
            for k in ks:
                kth[k] = kth_true_scores(truth, k, ds.queries, ds.base, ds.metric)
        modes = [Mode(quant, "pre")] if "pre" in cfg.filterings else []
        if bits is not None:  # the rerank oversample is the 1bit axis (pre-filtered)
            modes = [Mode(quant, "pre", None, bits, o) for o in cfg.rerank_oversample]
            modes = modes if "pre" in cfg.filterings else []
        if "post" in cfg.filterings:
            modes += [Mode(quant, "post", o, bits) for o in cfg.oversampling]
        nq = ds.queries.shape[0]
        with _bar(cfg, nq * len(modes) * len(ks), f"search {label}", "q") as bar:
            warmed: set[str] = set()  # one untimed batch per index and filtering
            for mode in modes:
                for k in ks:
                    run = run_mode(
                        index,
                        mode,
                        k,
                        ds.queries,
                        ds.filters,
                        ds.query_fids,
                        masks,
                        row_to_base,
                        cfg.batch_size,
                        bar.update,
                        warm_up=mode.filtering not in warmed,
                    )
                    warmed.add(mode.filtering)
                    runs.append(run)
                    scored[(mode.name, k)] = score_mode(
                        run.found,
                        k,
                        truth,
                        kth[k],
                        ds.queries,
                        ds.base,
                        ds.metric,
                        masks,
                        ds.query_fids,
                    )
        del index
        gc.collect()
    assert masks is not None
    run_info = {
        "device": device,
        "cpu_cores": os.cpu_count(),
        "load_average": {"start": load_start, "end": _load_average()},
        "ground_truth": "file" if cfg.gt else ("cache" if gt_reused else "computed"),
        "seconds": {**timings, "total": round(time.perf_counter() - t_start, 3)},
        **cfg.run_info,
    }
    return summarize(cfg, ds, masks, ks, runs, scored, run_info)
