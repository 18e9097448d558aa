"""The report as a dict: every number `linr eval` measured, in a stable order.

Layout (report.json):
    dataset, settings      what was evaluated, and how
    selectivity            per bucket: how many queries, how many with no match at all
    results                per mode and k: mean recall, recall per selectivity bucket,
                           filter violations (rows returned that fail the filter), short lists
    filters                per distinct filter: matches, selectivity, mean recall per result
    per_query              filter number, matches and recall of every query, per result
    run                    device, latency per result (ms per batch: median, p99), seconds per
                           phase -- the only section that changes between identical runs
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from linr.eval.recall import SELECTIVITY_BUCKETS, TIE_RTOL, bucket_of, mean_or_none

if TYPE_CHECKING:
    from linr.eval.groundtruth import MaskTable
    from linr.eval.modes import ModeRun, Scored
    from linr.eval.runner import Dataset, EvalConfig

REPORT_VERSION = 1


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), digits)


def result_key(mode_name: str, k: int) -> str:
    return f"{mode_name}@{k}"


def _latency(run: ModeRun) -> dict[str, Any]:
    ms = np.asarray(run.batch_ms)
    total_s = float(ms.sum()) / 1e3
    return {
        "batches": int(ms.size),
        "batch_size": run.batch_size,
        "median_ms": _r(float(np.median(ms)), 3),
        "p99_ms": _r(float(np.percentile(ms, 99)), 3),
        "qps": _r(run.found.shape[0] / total_s if total_s > 0 else None, 1),
        "batch_ms": [round(float(v), 1) for v in ms],
    }


def summarize(
    cfg: EvalConfig,
    ds: Dataset,
    masks: MaskTable,
    ks: tuple[int, ...],
    runs: list[ModeRun],
    scored: Mapping[tuple[str, int], Scored],
    run_info: dict[str, Any],
) -> dict[str, Any]:
    counts = np.asarray(masks.counts, dtype=np.int64)
    matches = counts[ds.query_fids]
    selectivity = matches / ds.n_base
    bucket = bucket_of(selectivity)

    buckets = []
    for b, name in enumerate(SELECTIVITY_BUCKETS):
        inb = bucket == b
        buckets.append(
            {
                "bucket": name,
                "queries": int(inb.sum()),
                "queries_without_matches": int((inb & (matches == 0)).sum()),
            }
        )

    results = []
    per_query: dict[str, list[float | None]] = {}
    latency: dict[str, Any] = {}
    for run in runs:
        sc = scored[(run.mode.name, run.k)]
        key = result_key(run.mode.name, run.k)
        defined = ~np.isnan(sc.recall)
        results.append(
            {
                "result": key,
                "mode": run.mode.name,
                "quantization": run.mode.quantization,
                "filtering": run.mode.filtering,
                "oversampling": run.mode.oversampling,
                "bits": run.mode.bits,
                "rerank_oversample": run.mode.rerank_oversample,
                "k": run.k,
                "recall": _r(mean_or_none(sc.recall)),
                "recall_min": _r(float(sc.recall[defined].min())) if defined.any() else None,
                "queries_scored": int(defined.sum()),
                "recall_by_bucket": {
                    name: _r(mean_or_none(sc.recall[bucket == b]))
                    for b, name in enumerate(SELECTIVITY_BUCKETS)
                },
                "filter_violations": sc.violations,
                "short_results": sc.short,
            }
        )
        per_query[key] = [_r(x) for x in sc.recall.tolist()]
        latency[key] = _latency(run)

    n_f = len(ds.filter_keys)
    by_filter: dict[str, np.ndarray] = {}
    for run in runs:
        rec = scored[(run.mode.name, run.k)].recall
        ok = ~np.isnan(rec)
        sums = np.bincount(ds.query_fids[ok], weights=rec[ok], minlength=n_f)
        cnt = np.bincount(ds.query_fids[ok], minlength=n_f)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_filter[result_key(run.mode.name, run.k)] = np.where(cnt > 0, sums / cnt, np.nan)
    n_queries = np.bincount(ds.query_fids, minlength=n_f)
    filters = [
        {
            "filter": text or None,
            "queries": int(n_queries[fid]),
            "matches": int(counts[fid]),
            "selectivity": _r(counts[fid] / ds.n_base, 8),
            "recall": {key: _r(v[fid]) for key, v in by_filter.items()},
        }
        for fid, text in enumerate(ds.filter_keys)
    ]

    return {
        "report_version": REPORT_VERSION,
        "dataset": {
            "base": Path(cfg.base).name,
            "queries": Path(cfg.queries).name if cfg.queries else None,
            "attributes": Path(cfg.attributes).name if cfg.attributes else None,
            "query_filters": Path(cfg.query_filters).name if cfg.query_filters else None,
            "filter": cfg.filter,
            "n_base": ds.n_base,
            "n_queries": int(ds.queries.shape[0]),
            "dim": ds.base.dim,
            "base_dtype": str(ds.base.dtype),
            "metric": ds.metric,
            "distinct_filters": sum(1 for key in ds.filter_keys if key),
            "queries_without_filter": sum(1 for f in ds.filters if f is None),
        },
        "settings": {
            "k": list(ks),
            "quantizations": list(cfg.quantizations),
            "filterings": list(cfg.filterings),
            "oversampling": list(cfg.oversampling),
            "bits": list(cfg.bits),
            "rerank_oversample": list(cfg.rerank_oversample),
            "rerank": cfg.rerank,
            "batch_size": cfg.batch_size,
            "ground_truth": Path(cfg.gt).name if cfg.gt else f"exact knn ({cfg.gt_dtype})",
            "tie_rtol": TIE_RTOL,
        },
        "selectivity": {
            "min": _r(float(selectivity.min()), 8),
            "median": _r(float(np.median(selectivity)), 8),
            "max": _r(float(selectivity.max()), 8),
            "buckets": buckets,
        },
        "results": results,
        "filters": filters,
        "per_query": {
            "filter": ds.query_fids.tolist(),
            "matches": matches.tolist(),
            "recall": per_query,
        },
        "run": {**run_info, "latency": latency},
    }
