"""`linr build` and `linr search` end to end: results equal the exact reference `linr.knn` over
the items a filter selects (evaluated here in plain Python), and every bad input is exit
status 2 with a one-line reason. Mostly in-process through main() for speed; a few runs
through `python -m linr` check the real process (exit status, stdout, stderr)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import linr
from linr.cli import main as cli_main
from linr.cli.main import main
from linr.io import read_ibin, write_fbin, write_fvecs
from linr.testing.topk import assert_same_topk

REPO = Path(__file__).resolve().parents[2]
LANGS = ("en", "fr", "de", "ja")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def make_attrs(rng: np.random.Generator, n: int) -> list[dict]:
    """Attributes with every kind, absent fields and attribute-less items."""
    out: list[dict] = []
    for r in range(n):
        a: dict = {"id": 1000 + r}
        if rng.random() < 0.9:
            a["lang"] = LANGS[int(rng.integers(len(LANGS)))]
        a["ts"] = int(rng.integers(0, 100))
        a["tags"] = [f"t{t}" for t in rng.choice(6, size=int(rng.integers(0, 3)), replace=False)]
        if rng.random() < 0.5:
            a["ok"] = bool(rng.random() < 0.5)
        if r % 17 == 0:
            a = {"id": 1000 + r}  # no attributes at all
        out.append(a)
    return out


# The filters used below, each with an independent Python predicate over the attributes.
FILTERS = {
    'lang == "en"': lambda a: a.get("lang") == "en",
    'lang == "en" and ts >= 50': lambda a: a.get("lang") == "en" and a.get("ts", -1) >= 50,
    # an absent field satisfies no comparison, so `not ts < 90` holds where ts is absent
    'tags in ["t1", "t2"] or not ts < 90': lambda a: (
        bool({"t1", "t2"} & set(a.get("tags", []))) or not ("ts" in a and a["ts"] < 90)
    ),
    'lang != "fr"': lambda a: a.get("lang") != "fr",
    "ok == true": lambda a: a.get("ok") is True,
    "ts == 3": lambda a: a.get("ts") == 3,  # few matches: k > matches
}


@pytest.fixture
def data(tmp_path, rng):
    n, d = 301, 13  # awkward sizes
    x = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((9, d)).astype(np.float32)
    attrs = make_attrs(rng, n)
    write_fbin(tmp_path / "base.fbin", x)
    write_fbin(tmp_path / "q.fbin", q)
    (tmp_path / "attrs.jsonl").write_text("".join(json.dumps(a) + "\n" for a in attrs))
    return tmp_path, x, q, attrs


def reference(x, q, k, metric="ip", mask=None):
    """Expected (ids per query, scores per query) from the exact search."""
    scores, idx = linr.knn(q, x, k, metric=metric, mask=mask)
    ids, sc = [], []
    for s_row, i_row in zip(scores.numpy(), idx.numpy(), strict=True):
        keep = i_row >= 0
        ids.append([1000 + int(i) for i in i_row[keep]])
        sc.append(s_row[keep])
    return ids, sc


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def check_results(lines: list[dict], ids, scores) -> None:
    assert len(lines) == len(ids)
    for got, want_ids, want_scores in zip(lines, ids, scores, strict=True):
        # ids exactly but for fp32 near-ties; scores: fp32 vs float64 over d = 13 terms
        assert_same_topk([got["ids"]], [got["scores"]], [want_ids], [want_scores], 2e-5, 2e-5)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_build_and_search_equal_exact_search(capsys, data, metric):
    tmp, x, q, attrs = data
    rc, _, err = run(
        capsys, "build", tmp / "base.fbin", "--attributes", tmp / "attrs.jsonl",
        "--metric", metric, "--batch-size", "64", "--out", tmp / "idx",
    )  # fmt: skip
    assert rc == 0, err
    assert "built" in err and "301 items" in err
    rc, out, err = run(capsys, "search", tmp / "idx", "--queries", tmp / "q.fbin", "--k", "7")
    assert rc == 0, err
    check_results(read_jsonl(out), *reference(x, q, 7, metric))


@pytest.mark.parametrize("text", list(FILTERS))
def test_filtered_search_equals_exact_search_over_matches(capsys, data, text):
    tmp, x, q, attrs = data
    assert run(capsys, "build", tmp / "base.fbin", "--attributes", tmp / "attrs.jsonl",
               "--out", tmp / "idx")[0] == 0  # fmt: skip
    mask = np.array([FILTERS[text](a) for a in attrs])
    k = 10
    rc, out, err = run(
        capsys, "search", tmp / "idx", "--queries", tmp / "q.fbin", "--k", str(k),
        "--filter", text, "--output", tmp / "r.jsonl",
    )  # fmt: skip
    assert rc == 0, err
    assert out == ""
    lines = read_jsonl((tmp / "r.jsonl").read_text())
    check_results(lines, *reference(x, q, k, mask=mask))
    if mask.sum() < k:
        assert all(len(line["ids"]) == mask.sum() for line in lines)


def test_per_query_filters_json_and_string_forms(capsys, data):
    tmp, x, q, attrs = data
    assert run(capsys, "build", tmp / "base.fbin", "--attributes", tmp / "attrs.jsonl",
               "--fields", "lang,ts", "--out", tmp / "idx")[0] == 0  # fmt: skip

    def early_fr_de(a):
        return a.get("ts", 99) < 20 and a.get("lang") in ("fr", "de")

    per_query = [
        ({"field": "lang", "eq": "en"}, lambda a: a.get("lang") == "en"),
        (None, lambda a: True),
        ('ts < 20 and lang in ["fr", "de"]', early_fr_de),
        ({}, lambda a: True),
        ({"or": [{"field": "ts", "gte": 95}, {"not": {"field": "lang", "exists": True}}]},
         lambda a: a.get("ts", -1) >= 95 or "lang" not in a),
        ({"field": "lang", "eq": "en"}, lambda a: a.get("lang") == "en"),
        ('lang == "ja"', lambda a: a.get("lang") == "ja"),
        (None, lambda a: True),
        ('ts < 20 and lang in ["fr", "de"]', early_fr_de),
    ]  # fmt: skip
    (tmp / "f.jsonl").write_text("".join(json.dumps(f) + "\n" for f, _ in per_query))
    mask = np.array([[pred(a) for a in attrs] for _, pred in per_query])
    # batch size 2: groups of equal filters are split over several calls
    rc, out, err = run(
        capsys, "search", tmp / "idx", "--queries", tmp / "q.fbin", "--k", "5",
        "--filters", tmp / "f.jsonl", "--batch-size", "2",
    )  # fmt: skip
    assert rc == 0, err
    check_results(read_jsonl(out), *reference(x, q, 5, mask=mask))


def test_ibin_output_and_other_query_formats(capsys, data):
    tmp, x, q, attrs = data
    assert run(capsys, "build", tmp / "base.fbin", "--attributes", tmp / "attrs.jsonl",
               "--out", tmp / "idx")[0] == 0  # fmt: skip
    mask = np.array([FILTERS["ts == 3"](a) for a in attrs])
    want, _ = reference(x, q, 20, mask=mask)
    write_fvecs(tmp / "q.fvecs", q)
    np.save(tmp / "q.npy", q.astype(np.float16))
    for qfile in ("q.fbin", "q.fvecs"):
        rc, _, err = run(
            capsys, "search", tmp / "idx", "--queries", tmp / qfile, "--k", "20",
            "--filter", '{"field": "ts", "eq": 3}', "--output", tmp / "r.ibin",
        )  # fmt: skip
        assert rc == 0, err
        got = read_ibin(tmp / "r.ibin")
        assert got.shape == (9, 20)
        for row, ids in zip(got, want, strict=True):
            assert row.tolist() == ids + [-1] * (20 - len(ids))
    # float16 queries: compare with the reference on the same (rounded) queries
    q16 = q.astype(np.float16).astype(np.float32)
    rc, out, err = run(capsys, "search", tmp / "idx", "--queries", tmp / "q.npy", "--k", "4")
    assert rc == 0, err
    check_results(read_jsonl(out), *reference(x, q16, 4))


def test_string_ids_from_ids_file(capsys, data):
    tmp, x, q, attrs = data
    (tmp / "ids.txt").write_text("".join(f"doc-{r}\n" for r in range(len(x))))
    rc, _, err = run(capsys, "build", tmp / "base.fbin", "--ids", tmp / "ids.txt",
                     "--quantization", "fp16", "--out", tmp / "idx")  # fmt: skip
    assert rc == 0, err
    rc, out, err = run(capsys, "search", tmp / "idx", "--queries", tmp / "q.fbin", "--k", "3")
    assert rc == 0, err
    lines = read_jsonl(out)
    want, _ = reference(x, q, 1)
    # fp16 storage: the nearest item is still found on this well-separated data
    assert all(line["ids"][0] == f"doc-{w[0] - 1000}" for line, w in zip(lines, want, strict=True))
    rc, _, err = run(capsys, "search", tmp / "idx", "--queries", tmp / "q.fbin",
                     "--output", tmp / "r.ibin")  # fmt: skip
    assert rc == 2 and "string ids" in err and not (tmp / "r.ibin").exists()


def test_env_defaults(capsys, data, monkeypatch):
    tmp, x, q, attrs = data
    monkeypatch.setenv("LINR_QUANTIZATION", "int8")
    monkeypatch.setenv("LINR_QUIET", "1")
    rc, _, err = run(capsys, "build", tmp / "base.fbin", "--out", tmp / "idx")
    assert rc == 0 and err == ""
    assert linr.read_manifest(tmp / "idx")["quantization"] == "int8"
    monkeypatch.setenv("LINR_K", "3")
    rc, out, _ = run(capsys, "search", tmp / "idx", "--queries", tmp / "q.fbin")
    assert rc == 0 and all(len(line["ids"]) == 3 for line in read_jsonl(out))
    monkeypatch.setenv("LINR_METRIC", "hamming")
    rc, _, err = run(capsys, "build", tmp / "base.fbin", "--out", tmp / "idx2")
    assert rc == 2 and "LINR_METRIC" in err and "hamming" in err
    monkeypatch.setenv("LINR_QUIET", "maybe")
    rc, _, err = run(capsys, "build", tmp / "base.fbin", "--out", tmp / "idx2")
    assert rc == 2 and "LINR_QUIET" in err


def _one_line_error(rc: int, err: str, *words: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("linr: error: "), err
    for w in words:
        assert w in err, err


@pytest.fixture
def built(capsys, data):
    tmp, x, q, attrs = data
    rc, _, err = run(capsys, "build", tmp / "base.fbin", "--attributes", tmp / "attrs.jsonl",
                     "--out", tmp / "idx")  # fmt: skip
    assert rc == 0, err
    return data


def test_search_bad_input_exits_2(capsys, built):
    tmp, x, q, attrs = built
    base = ["search", tmp / "idx", "--queries", tmp / "q.fbin"]

    write_fbin(tmp / "q5.fbin", q[:, :5])
    _one_line_error(*run(capsys, "search", tmp / "idx", "--queries", tmp / "q5.fbin")[::2],
                    "dimension 5", "dimension 13")  # fmt: skip
    qn = q.copy()
    qn[4, 2] = np.nan
    write_fbin(tmp / "qn.fbin", qn)
    _one_line_error(*run(capsys, "search", tmp / "idx", "--queries", tmp / "qn.fbin")[::2],
                    "query 4", "NaN")  # fmt: skip
    _one_line_error(*run(capsys, *base, "--filter", 'lang = "en"')[::2], "--filter")
    _one_line_error(*run(capsys, *base, "--filter", 'color == "red"')[::2], "color")
    _one_line_error(*run(capsys, *base, "--filter", '{"field": "lang", "eq": ')[::2],
                    "invalid JSON")  # fmt: skip
    _one_line_error(*run(capsys, *base, "--filter", 'ts == "x"')[::2], "ts")
    (tmp / "f.jsonl").write_text('null\n"lang == \\"en\\""\n"nope >> 3"\n' + "null\n" * 6)
    _one_line_error(*run(capsys, *base, "--filters", tmp / "f.jsonl")[::2], "f.jsonl line 3")
    (tmp / "f.jsonl").write_text("null\n" * 4)
    _one_line_error(*run(capsys, *base, "--filters", tmp / "f.jsonl")[::2], "4 lines", "9 queries")
    _one_line_error(*run(capsys, *base, "--k", "0")[::2], "--k")
    _one_line_error(*run(capsys, *base, "--k", "1001")[::2], "--k")
    _one_line_error(*run(capsys, *base, "--filter", "ts == 1", "--filters", "x")[::2],
                    "not allowed with")  # fmt: skip
    _one_line_error(*run(capsys, *base, "--output", tmp / "r.csv")[::2], ".csv")
    (tmp / "bad.fbin").write_bytes(struct.pack("<II", 9, 13) + b"\0" * 40)
    _one_line_error(*run(capsys, "search", tmp / "idx", "--queries", tmp / "bad.fbin")[::2],
                    "bad.fbin", "truncated")  # fmt: skip
    _one_line_error(*run(capsys, "search", tmp / "nothing", "--queries", tmp / "q.fbin")[::2],
                    "not a linr index")  # fmt: skip
    _one_line_error(*run(capsys, "search", tmp / "idx", "--queries", tmp / "missing.fbin")[::2],
                    "missing.fbin")  # fmt: skip
    _one_line_error(*run(capsys, "search", tmp / "idx")[::2], "--queries")
    assert not (tmp / "r.jsonl").exists()


def test_build_bad_input_exits_2(capsys, data):
    tmp, x, q, attrs = data
    out = ["--out", tmp / "idx"]
    lines = [json.dumps(a) for a in attrs]
    lines[40] = json.dumps({"id": 1040, "ts": "late"})  # kind clash with the int field ts
    (tmp / "a.jsonl").write_text("\n".join(lines) + "\n")
    _one_line_error(
        *run(capsys, "build", tmp / "base.fbin", "--attributes", tmp / "a.jsonl",
             "--batch-size", "16", *out)[::2],
        "a.jsonl line 41", "ts",
    )  # fmt: skip
    lines[40] = '{"id": 1040, "ts": '
    (tmp / "a.jsonl").write_text("\n".join(lines) + "\n")
    _one_line_error(*run(capsys, "build", tmp / "base.fbin", "--attributes", tmp / "a.jsonl",
                         *out)[::2], "a.jsonl line 41: invalid JSON")  # fmt: skip
    (tmp / "short.jsonl").write_text("{}\n" * 5)
    _one_line_error(*run(capsys, "build", tmp / "base.fbin", "--attributes",
                         tmp / "short.jsonl", *out)[::2], "5 lines", "301 vectors")  # fmt: skip
    (tmp / "s.json").write_text('{"ts": "timestamp"}')
    _one_line_error(*run(capsys, "build", tmp / "base.fbin", "--attributes", tmp / "attrs.jsonl",
                         "--schema", tmp / "s.json", *out)[::2], "ts")  # fmt: skip
    _one_line_error(*run(capsys, "build", tmp / "base.fbin", "--fields", "lang,9x", *out)[::2],
                    "9x")  # fmt: skip
    xn = x.copy()
    xn[200, 0] = np.inf
    write_fbin(tmp / "inf.fbin", xn)
    _one_line_error(*run(capsys, "build", tmp / "inf.fbin", *out)[::2], "row 200")
    (tmp / "v.fvecs").write_bytes(struct.pack("<i2f", 2, 1, 2) + struct.pack("<i2f", 3, 1, 2))
    _one_line_error(*run(capsys, "build", tmp / "v.fvecs", *out)[::2], "record 1")
    (tmp / "junk").mkdir()
    (tmp / "junk" / "keep.txt").write_text("mine")
    _one_line_error(*run(capsys, "build", tmp / "base.fbin", "--out", tmp / "junk")[::2],
                    "not a linr index")  # fmt: skip
    _one_line_error(*run(capsys, "build", tmp / "base.fbin")[::2], "--out")
    _one_line_error(*run(capsys, "build", tmp / "base.fbin", "--metric", "dot", *out)[::2],
                    "--metric")  # fmt: skip
    assert not (tmp / "idx").exists()


def test_top_level_usage(capsys, monkeypatch):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and all(name in out for name in cli_main.COMMANDS)
    rc, out, _ = run(capsys, "search", "--help")
    assert rc == 0 and "--filters" in out
    _one_line_error(*run(capsys)[::2], "COMMAND")
    _one_line_error(*run(capsys, "frobnicate")[::2], "frobnicate")
    monkeypatch.setitem(cli_main.COMMANDS, "nosuchcommand", "not a module")
    rc, _, err = run(capsys, "nosuchcommand")
    assert rc == 1 and "'nosuchcommand' is not available" in err


def _linr(*argv, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "linr", *map(str, argv)],
        capture_output=True, text=True, env=env, timeout=120, **kw,
    )  # fmt: skip


def test_python_m_linr_process(capsys, built):
    """The real process: results on stdout (and nothing else), errors as one stderr line."""
    tmp, x, q, attrs = built
    p = _linr("search", tmp / "idx", "--queries", tmp / "q.fbin", "--k", "6",
              "--filter", 'lang == "en" and ts >= 50')  # fmt: skip
    assert p.returncode == 0, p.stderr
    mask = np.array([FILTERS['lang == "en" and ts >= 50'](a) for a in attrs])
    check_results(read_jsonl(p.stdout), *reference(x, q, 6, mask=mask))
    p = _linr("search", tmp / "idx", "--queries", tmp / "q.fbin", "--filter", "lang ==")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("linr: error: ") and p.stderr.count("\n") == 1
