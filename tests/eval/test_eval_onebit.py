"""`linr eval` with quantization 1bit: a bits axis and a rerank-oversample axis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from linr.cli.main import main
from linr.eval.runner import run_eval
from tests.eval.test_eval_run import _config, random_data  # noqa: F401 - fixture


def test_bits_and_oversample_axes(random_data: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    report = run_eval(
        _config(
            random_data,
            tmp_path,
            ks=(10,),
            quantizations=("fp32", "1bit"),
            filterings=("pre",),
            bits=(64, 128),
            rerank_oversample=(1, 200),
            rerank="fp32",
        )
    )
    by = {r["result"]: r for r in report["results"]}
    assert list(by) == [
        "fp32/pre@10",
        "1bit-64/pre-o1@10",
        "1bit-64/pre-o200@10",
        "1bit-128/pre-o1@10",
        "1bit-128/pre-o200@10",
    ]
    for r in report["results"]:
        assert r["filter_violations"] == 0 and r["short_results"] == 0
    # 200 x 10 candidates hold every row of this 1,500-row set: the fp32 rerank is exact.
    assert by["1bit-64/pre-o200@10"]["recall"] == 1.0
    assert by["1bit-64/pre-o1@10"]["recall"] < by["1bit-128/pre-o200@10"]["recall"]
    assert by["1bit-128/pre-o1@10"]["bits"] == 128
    assert report["settings"]["rerank_oversample"] == [1, 200]


def test_cli_1bit_report_and_plot(
    random_data: dict[str, str],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    argv: list[Any] = [
        "eval", "--base", random_data["base"], "--queries", random_data["queries"],
        "--attributes", random_data["attributes"], "--query-filters",
        random_data["query_filters"], "--k", "10", "--quantization", "1bit",
        "--filtering", "pre", "--bits", "64,192", "--rerank-oversample", "1,4",
        "--report", out, "--no-progress",
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert (out / "recall_1bit.png").stat().st_size > 0
    md = (out / "report.md").read_text()
    assert "## 1-bit codes" in md and "| bits 192 (10.1 D) |" in md
    report = json.loads((out / "report.json").read_text())
    assert {r["bits"] for r in report["results"]} == {64, 192}
    assert main([str(a) for a in argv[:-3] + ["--bits", "100", "--report", out]]) == 2
