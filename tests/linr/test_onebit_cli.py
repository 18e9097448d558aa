"""`linr build --quantization 1bit` and `linr search --oversample` end to end."""

from __future__ import annotations

import json

import numpy as np

import linr
from linr.cli.main import main
from linr.io import write_fbin
from linr.knn import knn
from tests.linr.onebit_data import clustered


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_build_search_1bit(capsys, tmp_path, rng):
    n, d = 600, 24
    x = clustered(rng, n, d)
    q = rng.standard_normal((7, d)).astype(np.float32)
    write_fbin(tmp_path / "x.fbin", x)
    write_fbin(tmp_path / "q.fbin", q)
    attrs = tmp_path / "a.jsonl"
    attrs.write_text("".join(json.dumps({"odd": i % 2 == 1}) + "\n" for i in range(n)))
    out = tmp_path / "idx"
    rc, _, err = run(
        capsys, "build", tmp_path / "x.fbin", "--attributes", attrs, "--quantization", "1bit",
        "--bits", 128, "--rerank", "fp32", "--out", out, "--quiet",
    )  # fmt: skip
    assert rc == 0, err
    manifest = linr.read_manifest(out)
    assert manifest["quantization"] == "1bit" and manifest["onebit"]["bits"] == 128
    # oversample x k covering every row: the rerank makes the search exact.
    rc, text, err = run(
        capsys, "search", out, "--queries", tmp_path / "q.fbin", "--k", 5,
        "--oversample", 120, "--filter", "odd == true", "--rerank-device", "cpu", "--quiet",
    )  # fmt: skip
    assert rc == 0, err
    got = [json.loads(line)["ids"] for line in text.splitlines()]
    allowed = np.arange(n) % 2 == 1
    _, want = knn(q, x, 5, "ip", mask=allowed)
    assert got == want.tolist()


def test_bad_1bit_flags_exit_2(capsys, tmp_path, rng):
    write_fbin(tmp_path / "x.fbin", rng.standard_normal((10, 8)).astype(np.float32))
    base = ("build", tmp_path / "x.fbin", "--out", tmp_path / "o", "--quiet")
    rc, _, err = run(capsys, *base, "--quantization", "1bit", "--bits", 100)
    assert rc == 2 and "multiple of 64" in err
    rc, _, err = run(capsys, *base, "--bits", 64)  # fp32 index
    assert rc == 2 and "apply to quantization '1bit'" in err
    rc, _, err = run(capsys, *base, "--quantization", "1bit")
    assert rc == 0, err
    write_fbin(tmp_path / "q.fbin", rng.standard_normal((2, 8)).astype(np.float32))
    rc, _, err = run(
        capsys, "search", tmp_path / "o", "--queries", tmp_path / "q.fbin", "--oversample", 5000
    )
    assert rc == 2 and "oversample" in err
