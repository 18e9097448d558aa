"""The 1-bit axes of `linr eval`: one index per `bits`, one pre-filtered mode per rerank
oversample, and their table and plot (recall@k against oversample, a line per bits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from linr.onebit.transform import default_bits

PLOT = "recall_1bit.png"
PLOT_TITLE = "1-bit codes: recall@k against the rerank oversample, per bits"


def bits_list(cfg_bits: tuple[int, ...], dim: int) -> tuple[int, ...]:
    return cfg_bits or (default_bits(dim),)


def label(bits: int) -> str:
    """The quantization column of a 1-bit mode: `1bit-512`."""
    return f"1bit-{bits}"


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r.get("bits") is not None and r["filtering"] == "pre"]


def markdown(report: dict[str, Any]) -> list[str]:
    rows = _rows(report)
    if not rows:
        return []
    ks = report["settings"]["k"]
    bits = sorted({r["bits"] for r in rows})
    overs = sorted({r["rerank_oversample"] for r in rows})
    by = {(r["bits"], r["rerank_oversample"], r["k"]): r["recall"] for r in rows}
    dim = report["dataset"]["dim"]
    out = [
        "## 1-bit codes",
        "",
        f"Sign codes of `bits` random projections, the best `oversample x k` rows by the "
        f"codes' estimate reranked exactly against the `{report['settings'].get('rerank')}` "
        "store, pre-filtered (docs/onebit.md). Recall@k by bits and oversample:",
        "",
    ]
    for k in ks:
        header = [f"k = {k}"] + [f"oversample {o}" for o in overs]
        table = [
            [f"bits {b} ({b / dim:.3g} D)"]
            + [("n/a" if by.get((b, o, k)) is None else f"{by[(b, o, k)]:.4f}") for o in overs]
            for b in bits
        ]
        out += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in table] + [""]
    return out


def plot(report: dict[str, Any], path: Path) -> bool:
    """Write the plot; False (nothing written) when the report has no 1-bit modes."""
    rows = _rows(report)
    if not rows:
        return False
    from matplotlib.figure import Figure

    ks = report["settings"]["k"]
    fig = Figure(figsize=(5.2 * len(ks), 4.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(ks), squeeze=False)[0]
    for ax, k in zip(axes, ks, strict=True):
        for b in sorted({r["bits"] for r in rows}):
            pts = sorted(
                (r["rerank_oversample"], r["recall"])
                for r in rows
                if r["bits"] == b and r["k"] == k and r["recall"] is not None
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{b} bits")
        ax.set_xscale("log")
        ax.set_xlabel("oversample (candidates per result reranked)")
        ax.set_ylabel(f"recall@{k}")
        ax.set_title(f"k = {k}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path)
    return True
