"""benchmarks/bench_scan.py runs its CPU smoke configuration and writes labelled rows."""

import csv
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("triton")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_scan.py"


def test_bench_scan_smoke(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))  # its shared harness, benchmarks/_harness.py
    spec = importlib.util.spec_from_file_location("bench_scan", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "scan.csv"
    assert mod.main(["--smoke", "--csv", str(out), "--max-s", "0"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8  # 2 batches x (fp16-query, int8-query, 1% rows, 1% mask)
    assert {r["device"] for r in rows} == {mod.SMOKE_LABEL}
    assert {r["mode"] for r in rows} == {"fp16-query", "int8-query"}
    assert all(float(r["ids_match_reference"]) == 1.0 for r in rows)
    assert all(float(r["time_ms"]) > 0 and float(r["naive_ms"]) > 0 for r in rows)
    assert "not a GPU measurement" in capsys.readouterr().out
