"""Writes a report dict (summary.py) as report.json, report.md and PNG plots (plots.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from linr.eval import onebit
from linr.eval.recall import SELECTIVITY_BUCKETS

PLOTS = {
    "recall_by_quantization.png": "Recall@k by quantization",
    "recall_vs_selectivity.png": "Recall@k against filter selectivity, pre- vs post-filtering",
    "latency.png": "Latency per batch",
}
# Per-filter table in report.md only up to this many distinct filters (all are in the JSON).
_MAX_FILTER_ROWS = 60


def write_report(report: dict[str, Any], out_dir: Path, plots: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json"]
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    if plots:
        from linr.eval.plots import write_plots

        written += write_plots(report, out_dir)
    md = render_markdown(report, plots)
    (out_dir / "report.md").write_text(md)
    written.append(out_dir / "report.md")
    return written


def _f(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.3g}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _modes(report: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for r in report["results"]:
        seen.setdefault(r["mode"], None)
    return list(seen)


def render_markdown(report: dict[str, Any], plots: bool = True) -> str:
    ds, st, sel, run = report["dataset"], report["settings"], report["selectivity"], report["run"]
    ks = st["k"]
    by = {(r["mode"], r["k"]): r for r in report["results"]}
    modes = _modes(report)
    lines = ["# linr eval report", ""]
    filt = (
        f"per-query filters from `{ds['query_filters']}`"
        if ds["query_filters"]
        else f"filter `{ds['filter']}` on every query"
        if ds["filter"]
        else "no filters"
    )
    lines += [
        f"- Base: `{ds['base']}`, {ds['n_base']:,} x {ds['dim']} ({ds['base_dtype']}), "
        f"metric `{ds['metric']}`",
        f"- Queries: {ds['n_queries']:,}"
        + (f" from `{ds['queries']}`" if ds["queries"] else "")
        + f"; {filt} ({ds['distinct_filters']} distinct filters, "
        f"{ds['queries_without_filter']} queries without one)",
        f"- Attributes: `{ds['attributes']}`" if ds["attributes"] else "- Attributes: none",
        f"- Ground truth: {st['ground_truth']}; a result tied with the k-th true score "
        f"(relative tolerance {st['tie_rtol']:g}) counts as a hit",
        f"- Filter selectivity: min {_pct(sel['min'])}, median {_pct(sel['median'])}, "
        f"max {_pct(sel['max'])}",
        "- Modes: `pre` = linr's pre-filtered exact search; `post-xN` = search the unfiltered "
        "index for k x N items, then drop those that fail the filter (the approximate-system "
        "baseline)",
        "",
        "## Recall@k",
        "",
    ]
    rows = []
    for m in modes:
        cells = [f"`{m}`"] + [_f(by[(m, k)]["recall"]) if (m, k) in by else "" for k in ks]
        viol = sum(by[(m, k)]["filter_violations"] for k in ks if (m, k) in by)
        short = max((by[(m, k)]["short_results"] for k in ks if (m, k) in by), default=0)
        rows.append(cells + [str(viol), str(short)])
    lines += _table(
        ["mode"] + [f"recall@{k}" for k in ks] + ["filter violations", "short lists (max over k)"],
        rows,
    )
    lines += ["", "Short lists: queries given fewer than min(k, matching items) results.", ""]

    lines += ["## Recall@k by filter selectivity", ""]
    counts = {b["bucket"]: b for b in sel["buckets"]}
    header = ["mode"] + [
        f"{b} ({counts[b]['queries']} q"
        + (
            f", {counts[b]['queries_without_matches']} empty"
            if counts[b]["queries_without_matches"]
            else ""
        )
        + ")"
        for b in SELECTIVITY_BUCKETS
    ]
    for k in ks:
        lines += [f"### k = {k}", ""]
        rows = [
            [f"`{m}`"] + [_f(by[(m, k)]["recall_by_bucket"][b]) for b in SELECTIVITY_BUCKETS]
            for m in modes
            if (m, k) in by
        ]
        lines += _table(header, rows) + [""]
    lines += ["Queries whose filter matches nothing have no recall and are left out of means.", ""]

    lines += [
        "## Latency",
        "",
        f"Device: {run['device']}. Milliseconds per batch of "
        f"{st['batch_size']} queries (after one warm-up batch); post-filtering includes "
        "dropping the rejected items. Timings vary from run to run; nothing else in this "
        "report does.",
        "",
    ]
    rows = []
    for r in report["results"]:
        lat = run["latency"][r["result"]]
        rows.append(
            [
                f"`{r['mode']}`",
                str(r["k"]),
                _f(lat["median_ms"], 2),
                _f(lat["p99_ms"], 2),
                _f(lat["qps"], 0),
                str(lat["batches"]),
            ]
        )
    lines += _table(["mode", "k", "median ms", "p99 ms", "queries/s", "batches"], rows)
    load = run.get("load_average") or {}
    if load.get("start") is not None:
        lines += [
            "",
            f"Machine load (1-minute load average) {load['start']:g} at the start, "
            f"{load['end']:g} at the end, on {run.get('cpu_cores')} cores: above the core "
            "count, other work was competing for the CPU and the timings are inflated.",
        ]
    secs = run.get("seconds", {})
    if secs:
        lines += [
            "",
            "Phases (s): "
            + ", ".join(f"{k} {v:g}" for k, v in secs.items())
            + f"; ground truth: {run.get('ground_truth', '?')}.",
        ]
    lines += [""]

    flt = [f for f in report["filters"] if f["filter"] is not None]
    if 0 < len(flt) <= _MAX_FILTER_ROWS:
        k0 = ks[0]
        cols = [
            m
            for m in modes
            if (m, k0) in by and (m.endswith("/pre") or m.startswith(modes[0].split("/")[0] + "/"))
        ]
        lines += ["## Filters", "", f"Mean recall@{k0} of the queries using each filter.", ""]
        rows = [
            [f"`{f['filter']}`", f"{f['matches']:,}", _pct(f["selectivity"]), str(f["queries"])]
            + [_f(f["recall"].get(f"{m}@{k0}")) for m in cols]
            for f in sorted(flt, key=lambda f: (f["selectivity"], f["filter"]))
        ]
        lines += _table(
            ["filter", "matches", "selectivity", "queries"] + [f"`{m}`" for m in cols], rows
        ) + [""]

    lines += onebit.markdown(report)

    if plots:
        lines += ["## Plots", ""]
        shown = dict(PLOTS)
        if onebit.markdown(report):
            shown[onebit.PLOT] = onebit.PLOT_TITLE
        for name, title in shown.items():
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    return "\n".join(lines)
