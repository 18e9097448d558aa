"""Hostile or damaged inputs to `linr build` / `linr search`: exit status 2 and one line on
stderr naming the problem (not exit 1 with a RecursionError, SafetensorError or a torch
RuntimeError from deep inside)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from linr.cli.main import main
from linr.io import write_fbin

D = 8


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return rc, err


@pytest.fixture
def built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    rng = np.random.default_rng(0)
    write_fbin(tmp_path / "base.fbin", rng.standard_normal((40, D), dtype=np.float32))
    write_fbin(tmp_path / "q.fbin", rng.standard_normal((3, D), dtype=np.float32))
    lines = [json.dumps({"lang": ["en", "fr"][i % 2]}) for i in range(40)]
    (tmp_path / "attrs.jsonl").write_text("\n".join(lines) + "\n")
    attrs, out = tmp_path / "attrs.jsonl", tmp_path / "idx"
    rc, err = run(capsys, "build", tmp_path / "base.fbin", "--attributes", attrs,
                  "--metric", "l2", "--out", out, "--quiet")  # fmt: skip
    assert rc == 0, err
    return tmp_path


def assert_exit_2(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("linr: error: "), err
    for f in fragments:
        assert f in err, err


def test_attributes_nested_100000_deep(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [json.dumps({"lang": "en"})] * 39
    (built / "deep.jsonl").write_text("\n".join([*lines[:5], deep, *lines[5:]]) + "\n")
    rc, err = run(capsys, "build", built / "base.fbin", "--attributes", built / "deep.jsonl",
                  "--out", built / "idx2", "--quiet")  # fmt: skip
    assert_exit_2(rc, err, "deep.jsonl line 6", "nested too deeply")
    assert not (built / "idx2").exists()


@pytest.mark.parametrize("depth", [10_000, 2_000, 900])
def test_json_filter_nested_deep(
    built: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    f = '{"not": ' * depth + '{"field": "lang", "eq": "en"}' + "}" * depth
    rc, err = run(capsys, "search", built / "idx", "--queries", built / "q.fbin", "--filter", f)
    assert_exit_2(rc, err, "--filter", "nested deeper than 64 levels")


def test_json_filters_file_nested_deep(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = '{"not": ' * 10_000 + '{"field": "lang", "eq": "en"}' + "}" * 10_000
    (built / "filters.jsonl").write_text("null\n" + deep + "\nnull\n")
    rc, err = run(capsys, "search", built / "idx", "--queries", built / "q.fbin",
                  "--filters", built / "filters.jsonl")  # fmt: skip
    assert_exit_2(rc, err, "filters.jsonl line 2", "nested too deeply")


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_index_with_truncated_tensor_data(
    built: Path, capsys: pytest.CaptureFixture[str], keep: float
) -> None:
    f = built / "idx" / "tensors.safetensors"
    os.truncate(f, int(f.stat().st_size * keep))
    rc, err = run(capsys, "search", built / "idx", "--queries", built / "q.fbin")
    assert_exit_2(rc, err, "tensors.safetensors", "not a complete safetensors file")


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        ({"dim": D - 1}, ["vec.codes", "(40, 8)", "dim 7"]),
        ({"dim": D + 5}, ["vec.codes", "dim 13"]),
        ({"n_rows": 41}, ["(40, 8)", "41 rows"]),
        ({"quantization": "fp16"}, ["vec.codes", "torch.float32", "fp16"]),
    ],
)
def test_manifest_disagreeing_with_its_tensors(
    built: Path, capsys: pytest.CaptureFixture[str], edit: dict, fragments: list[str]
) -> None:
    m = built / "idx" / "manifest.json"
    manifest = json.loads(m.read_text())
    m.write_text(json.dumps({**manifest, **edit}))
    dim = edit.get("dim", D)  # queries of the manifest's dimension, which the CLI checks
    write_fbin(built / "qd.fbin", np.ones((2, dim), np.float32))
    rc, err = run(capsys, "search", built / "idx", "--queries", built / "qd.fbin")
    assert_exit_2(rc, err, "tensors.safetensors", *fragments)


def test_a_missing_tensor(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = built / "idx" / "tensors.safetensors"
    tensors = load_file(str(f))
    del tensors["vec.sqnorms"]
    save_file(tensors, str(f))
    rc, err = run(capsys, "search", built / "idx", "--queries", built / "q.fbin")
    assert_exit_2(rc, err, "'vec.sqnorms' is missing")


def test_the_intact_index_still_searches(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [str(a) for a in ("search", built / "idx", "--queries", built / "q.fbin", "--k", "2")]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert len(out.splitlines()) == 3
