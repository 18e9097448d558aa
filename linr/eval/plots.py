"""PNG plots of a report dict. matplotlib (the `eval` extra) is imported here only, and only
through its object API (Figure), so no GUI backend or global pyplot state is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_DPI = 110
# Per-query selectivity is averaged in log-spaced bins, this many per decade, for the
# recall-vs-selectivity curves (the report's tables use the four fixed buckets).
_BINS_PER_DECADE = 2


def _by(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["mode"], r["k"]): r for r in report["results"]}


def _post_modes(report: dict[str, Any], quant: str) -> list[str]:
    return sorted(
        {
            r["mode"]
            for r in report["results"]
            if r["quantization"] == quant and r["filtering"] == "post"
        },
        key=lambda m: int(m.rsplit("x", 1)[1]),
    )


def plot_recall_by_quantization(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    ks = report["settings"]["k"]
    quants = report["settings"]["quantizations"]
    by = _by(report)
    variants = ["pre"] if any(r["filtering"] == "pre" for r in report["results"]) else []
    variants += [
        f"post-x{o}"
        for o in report["settings"]["oversampling"]
        if any(r["filtering"] == "post" for r in report["results"])
    ]
    fig = Figure(figsize=(5.2 * len(ks), 4.2), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, len(ks), squeeze=False)[0]
    colors = _variant_colors(variants)
    width = 0.8 / max(len(variants), 1)
    for ax, k in zip(axes, ks, strict=True):
        x = np.arange(len(quants))
        for j, v in enumerate(variants):
            vals = [by.get((f"{q}/{v}", k), {}).get("recall") for q in quants]
            h = [np.nan if y is None else y for y in vals]
            bars = ax.bar(
                x + (j - (len(variants) - 1) / 2) * width, h, width, label=v, color=colors[v]
            )
            for b, y in zip(bars, vals, strict=True):
                if y is not None:
                    ax.text(
                        b.get_x() + b.get_width() / 2,
                        y + 0.01,
                        f"{y:.4f}",
                        ha="center",
                        va="bottom",
                        fontsize=6.5,
                        rotation=90,
                    )
        ax.set_xticks(x, quants)
        ax.set_ylim(0, 1.18)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(f"recall@{k} (mean over queries)")
        ax.set_xlabel("stored quantization")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("recall")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        title="filtering",
        fontsize=8,
        loc="outside lower center",
        ncol=len(variants),
    )
    fig.suptitle(_dataset_line(report), fontsize=9)
    fig.savefig(path)


def _variant_colors(variants: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    posts = [v for v in variants if v.startswith("post")]
    ramp = colormaps["Oranges"](np.linspace(0.35, 0.85, max(len(posts), 1)))
    out: dict[str, Any] = {"pre": "tab:blue"}
    out.update({v: ramp[i] for i, v in enumerate(posts)})
    return out


def _dataset_line(report: dict[str, Any]) -> str:
    ds = report["dataset"]
    return (
        f"{ds['base']}: {ds['n_base']:,} x {ds['dim']}, {ds['metric']}, "
        f"{ds['n_queries']:,} queries, {ds['distinct_filters']} distinct filters"
    )


def plot_recall_vs_selectivity(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    ks = report["settings"]["k"]
    quants = report["settings"]["quantizations"]
    pq = report["per_query"]
    sel = np.asarray(pq["matches"], dtype=np.float64) / report["dataset"]["n_base"]
    ok = sel > 0
    lo = np.floor(np.log10(sel[ok].min()) * _BINS_PER_DECADE) if ok.any() else 0
    edges = 10.0 ** (np.arange(lo, 1) / _BINS_PER_DECADE)
    edges[-1] = 1.0 + 1e-12
    which = np.searchsorted(edges, sel, side="right") - 1
    fig = Figure(figsize=(5.8 * len(ks), 4.4), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, len(ks), squeeze=False)[0]
    pre_colors = ["tab:blue", "tab:green", "tab:purple", "tab:brown"]
    posts = _post_modes(report, quants[0])
    post_colors = _variant_colors([m.split("/")[1] for m in posts])
    for ax, k in zip(axes, ks, strict=True):
        markers = ["o", "^", "D", "v"]
        pre = dict.fromkeys(r["mode"] for r in report["results"] if r["filtering"] == "pre")
        lines = [(m, pre_colors[i % 4], "-", markers[i % 4]) for i, m in enumerate(pre)]
        lines += [(m, post_colors[m.split("/")[1]], "--", "s") for m in posts]
        for mode, color, style, marker in lines:
            key = f"{mode}@{k}"
            if key not in pq["recall"]:
                continue
            rec = np.array([np.nan if v is None else v for v in pq["recall"][key]])
            xs, ys = [], []
            for b in range(len(edges) - 1):
                inb = ok & (which == b) & ~np.isnan(rec)
                if inb.any():
                    xs.append(float(np.exp(np.log(sel[inb]).mean())))
                    ys.append(float(rec[inb].mean()))
            ax.plot(
                xs,
                ys,
                linestyle=style,
                marker=marker,
                markersize=4.5,
                color=color,
                markerfacecolor="none" if style == "-" else color,
                label=mode,
            )
        for edge in (1e-3, 1e-2, 1e-1):
            ax.axvline(edge, color="0.85", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("filter selectivity (fraction of items matching, log scale)")
        ax.set_title(f"recall@{k}")
        ax.grid(alpha=0.25)
    axes[0].set_ylabel("mean recall of queries in the bin")
    handles, labels = axes[0].get_legend_handles_labels()
    if labels:
        ncol = min(len(labels), 5)
        fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=ncol)
    fig.suptitle(
        _dataset_line(report) + f"; pre-filtering (solid) vs post-filtering ({quants[0]}, dashed)",
        fontsize=9,
    )
    fig.savefig(path)


def plot_latency(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ks = report["settings"]["k"]
    lat = report["run"]["latency"]
    modes = list(dict.fromkeys(r["mode"] for r in report["results"]))
    fig = Figure(figsize=(5.2 * len(ks), 0.9 + 0.32 * len(modes)), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, len(ks), squeeze=False)[0]
    for ax, k in zip(axes, ks, strict=True):
        names = [m for m in modes if f"{m}@{k}" in lat]
        med = np.array([lat[f"{m}@{k}"]["median_ms"] for m in names], dtype=np.float64)
        p99 = np.array([lat[f"{m}@{k}"]["p99_ms"] for m in names], dtype=np.float64)
        y = np.arange(len(names))[::-1]
        colors = ["tab:blue" if m.endswith("/pre") else "tab:orange" for m in names]
        ax.barh(y, med, color=colors, height=0.65)
        ax.errorbar(p99, y, fmt="|", color="black", markersize=9, label="p99")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlabel(
            f"ms per batch of {report['settings']['batch_size']} queries, log scale "
            "(bar: median, tick: p99)"
        )
        ax.set_title(f"k = {k}")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"latency on {report['run']['device']}", fontsize=9)
    fig.savefig(path)


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    paths = [
        out_dir / "recall_by_quantization.png",
        out_dir / "recall_vs_selectivity.png",
        out_dir / "latency.png",
    ]
    plot_recall_by_quantization(report, paths[0])
    plot_recall_vs_selectivity(report, paths[1])
    plot_latency(report, paths[2])
    from linr.eval import onebit

    if onebit.plot(report, out_dir / onebit.PLOT):
        paths.append(out_dir / onebit.PLOT)
    return paths
