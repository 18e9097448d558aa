"""`linr eval` end to end on small data: exactness of pre-filtering, the post-filtering
baseline's loss at low selectivity, determinism, the CLI and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import linr
from linr.cli.main import main
from linr.eval.runner import EvalConfig, run_eval

LANGS = ["en", "fr", "de", "es", "ja"]


def _fbin(path: Path, x: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.array(x.shape, dtype="<u4").tofile(f)
        x.astype("<f4").tofile(f)


def _jsonl(path: Path, values: list[Any]) -> None:
    path.write_text("".join(json.dumps(v) + "\n" for v in values))


def _random_filter(rng: np.random.Generator) -> Any:
    kind = rng.integers(0, 6)
    lang = LANGS[int(rng.integers(0, 5))]
    lo = int(rng.integers(0, 100))
    if kind == 0:
        return {"field": "lang", "eq": lang}
    if kind == 1:
        return f"x >= {lo} and x < {lo + int(rng.integers(1, 20))}"
    if kind == 2:
        return {"and": [{"field": "lang", "in": [lang, "ja"]}, {"field": "x", "lt": lo}]}
    if kind == 3:
        return f'not lang == "{lang}" or x == {lo}'
    if kind == 4:
        return {"field": "tags", "all": ["t1", f"t{int(rng.integers(0, 6))}"]}
    return None


@pytest.fixture
def random_data(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(11)
    n, d, nq = 1500, 19, 40
    _fbin(tmp_path / "base.fbin", rng.standard_normal((n, d)).astype(np.float32))
    _fbin(tmp_path / "q.fbin", rng.standard_normal((nq, d)).astype(np.float32))
    attrs = []
    for _ in range(n):
        a: dict[str, Any] = {"x": int(rng.integers(0, 100))}
        if rng.random() < 0.9:  # some items lack lang: absent fields match no eq
            a["lang"] = LANGS[min(int(rng.zipf(1.6)) - 1, 4)]
        a["tags"] = [f"t{int(t)}" for t in rng.choice(6, int(rng.integers(0, 4)), replace=False)]
        attrs.append(a)
    _jsonl(tmp_path / "attrs.jsonl", attrs)
    _jsonl(tmp_path / "qf.jsonl", [_random_filter(rng) for _ in range(nq)])
    return {
        k: str(tmp_path / f)
        for k, f in [
            ("base", "base.fbin"),
            ("queries", "q.fbin"),
            ("attributes", "attrs.jsonl"),
            ("query_filters", "qf.jsonl"),
        ]
    }


def _config(paths: dict[str, Any], tmp_path: Path, **kw: Any) -> EvalConfig:
    return EvalConfig(**paths, cache_dir=tmp_path / "cache", progress=False, batch_size=16, **kw)


def test_fp32_prefiltered_recall_is_exact(random_data: dict[str, str], tmp_path: Path) -> None:
    for metric in ("ip", "l2"):
        report = run_eval(
            _config(
                random_data,
                tmp_path,
                ks=(1, 10, 37),
                quantizations=("fp32",),
                filterings=("pre",),
                metric=metric,
            )
        )
        for r in report["results"]:
            assert r["filter_violations"] == 0 and r["short_results"] == 0
            recalls = report["per_query"]["recall"][r["result"]]
            assert all(v == 1.0 for v in recalls if v is not None), (metric, r)
            assert r["recall"] == 1.0
        assert len(set(report["per_query"]["matches"])) > 10  # the filters really vary


def test_quantized_and_post_filtered_modes_run(random_data: dict[str, str], tmp_path: Path) -> None:
    report = run_eval(
        _config(
            random_data, tmp_path, ks=(10,), quantizations=("fp16", "int8"), oversampling=(1, 3)
        )
    )
    names = [r["result"] for r in report["results"]]
    assert names == [
        "fp16/pre@10",
        "fp16/post-x1@10",
        "fp16/post-x3@10",
        "int8/pre@10",
        "int8/post-x1@10",
        "int8/post-x3@10",
    ]
    by = {r["result"]: r for r in report["results"]}
    assert by["fp16/pre@10"]["recall"] > 0.99
    assert by["int8/pre@10"]["recall"] > 0.9
    for r in report["results"]:
        assert r["filter_violations"] == 0  # post-filtering drops what fails the filter
    assert by["fp16/post-x1@10"]["recall"] <= by["fp16/post-x3@10"]["recall"] < 1.0


def test_post_filtering_loses_recall_at_low_selectivity(tmp_path: Path) -> None:
    # 1% of the items are "rare" and lie on the far side of the queries: every unfiltered
    # top-k candidate is "common", so post-filtering finds nothing; pre-filtering is exact.
    rng = np.random.default_rng(3)
    n, d = 2000, 8
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[:, 0] = np.abs(x[:, 0]) + 1.0
    rare = rng.choice(n, 20, replace=False)
    x[rare, 0] = -x[rare, 0]
    _fbin(tmp_path / "b.fbin", x)
    q = rng.standard_normal((12, d)).astype(np.float32)
    q[:, 0] = 5.0
    _fbin(tmp_path / "q.fbin", q)
    _jsonl(tmp_path / "a.jsonl", [{"g": "rare" if i in set(rare) else "common"} for i in range(n)])
    cfg = EvalConfig(
        base=str(tmp_path / "b.fbin"),
        queries=str(tmp_path / "q.fbin"),
        attributes=str(tmp_path / "a.jsonl"),
        filter='g == "rare"',
        ks=(10,),
        quantizations=("fp32",),
        oversampling=(1, 4, 200),
        progress=False,
        cache_dir=tmp_path / "c",
    )
    by = {r["result"]: r for r in run_eval(cfg)["results"]}
    assert by["fp32/pre@10"]["recall"] == 1.0
    assert by["fp32/post-x1@10"]["recall"] == 0.0
    assert by["fp32/post-x4@10"]["recall"] < 1.0
    assert by["fp32/post-x1@10"]["short_results"] == 12
    assert by["fp32/post-x200@10"]["recall"] == 1.0  # k x 200 = every item: exact again
    assert by["fp32/pre@10"]["recall_by_bucket"]["1-10%"] == 1.0


def test_report_is_deterministic_and_ground_truth_cached(
    random_data: dict[str, str], tmp_path: Path
) -> None:
    cfg = _config(random_data, tmp_path, ks=(5,), quantizations=("int8",), oversampling=(2,))
    first, second = run_eval(cfg), run_eval(cfg)
    assert first["run"]["ground_truth"] == "computed"
    assert second["run"]["ground_truth"] == "cache"
    first.pop("run"), second.pop("run")
    assert json.dumps(first) == json.dumps(second)
    assert len(list((tmp_path / "cache").glob("gt-*.npz"))) == 1


def test_ground_truth_from_file_agrees(random_data: dict[str, str], tmp_path: Path) -> None:
    # Unfiltered, so an .ibin ground truth written independently with linr.knn applies.
    paths = {"base": random_data["base"], "queries": random_data["queries"]}
    xb = np.fromfile(paths["base"], "<f4", offset=8).reshape(1500, 19)
    xq = np.fromfile(paths["queries"], "<f4", offset=8).reshape(40, 19)
    _, ids = linr.knn(xq, xb, 20)
    gt = tmp_path / "gt.ibin"
    with open(gt, "wb") as f:
        np.array([40, 20], "<u4").tofile(f)
        ids.numpy().astype("<i4").tofile(f)
    kw: dict[str, Any] = {"ks": (20,), "quantizations": ("int8",), "filterings": ("pre",)}
    from_file = run_eval(_config(paths, tmp_path, gt=str(gt), **kw))
    computed = run_eval(_config(paths, tmp_path, **kw))
    assert from_file["run"]["ground_truth"] == "file"
    assert from_file["per_query"] == computed["per_query"]
    with pytest.raises(linr.InvalidInput, match="need 50 of 40"):
        run_eval(_config(paths, tmp_path, gt=str(gt), ks=(50,), quantizations=("fp32",)))


def test_spmat_tags_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n, nq = 600, 15

    def spmat(path: Path, rows: list[list[int]]) -> None:
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        with open(path, "wb") as f:
            np.array([len(rows), 50, indptr[-1]], "<i8").tofile(f)
            indptr.astype("<i8").tofile(f)
            np.array([t for r in rows for t in r], "<i4").tofile(f)
            np.ones(int(indptr[-1]), "<f4").tofile(f)

    spmat(
        tmp_path / "items.spmat",
        [sorted(rng.choice(50, rng.integers(0, 6), replace=False)) for _ in range(n)],
    )
    spmat(
        tmp_path / "q.spmat",
        [sorted(rng.choice(8, rng.integers(0, 3), replace=False)) for _ in range(nq)],
    )
    _fbin(tmp_path / "b.fbin", rng.standard_normal((n, 8)).astype(np.float32))
    _fbin(tmp_path / "q.fbin", rng.standard_normal((nq, 8)).astype(np.float32))
    cfg = EvalConfig(
        base=str(tmp_path / "b.fbin"),
        queries=str(tmp_path / "q.fbin"),
        attributes=str(tmp_path / "items.spmat"),
        query_filters=str(tmp_path / "q.spmat"),
        ks=(10,),
        quantizations=("fp32",),
        filterings=("pre",),
        progress=False,
        cache_dir=tmp_path / "c",
    )
    report = run_eval(cfg)
    assert report["results"][0]["recall"] == 1.0
    assert report["selectivity"]["min"] < report["selectivity"]["max"]


def test_cli_end_to_end(
    random_data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "eval",
            "--base",
            random_data["base"],
            "--queries",
            random_data["queries"],
            "--attributes",
            random_data["attributes"],
            "--query-filters",
            random_data["query_filters"],
            "--k",
            "5,10",
            "--quantization",
            "fp32,int8",
            "--filtering",
            "pre,post",
            "--oversampling",
            "1,4",
            "--batch-size",
            "8",
            "--report",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    for name in (
        "report.json",
        "report.md",
        "recall_by_quantization.png",
        "recall_vs_selectivity.png",
        "latency.png",
    ):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert len(report["results"]) == 2 * 3 * 2
    md = (out / "report.md").read_text()
    assert "| `fp32/pre` | 1.0000 | 1.0000 |" in md
    assert "fp32/pre@10" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--filter", 'lang == "en" and'], "filter"),
        (["--filter", 'nosuchfield == "x"'], "nosuchfield"),
        (["--k", "0"], "--k"),
        (["--quantization", "int4"], "int4"),
        (["--gt", "/nonexistent/gt.ibin"], "gt.ibin"),
    ],
)
def test_cli_bad_input_exits_2(
    random_data: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    rc = main(
        [
            "eval",
            "--base",
            random_data["base"],
            "--queries",
            random_data["queries"],
            "--attributes",
            random_data["attributes"],
            "--k",
            "5",
            "--quantization",
            "fp32",
            "--report",
            str(tmp_path / "o"),
            "--no-progress",
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1


def test_hdf5_dataset_end_to_end(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(8)
    train = rng.standard_normal((300, 12)).astype(np.float32)
    test = rng.standard_normal((9, 12)).astype(np.float32)
    _, neighbors = linr.knn(test, train, 10, "cosine")
    p = tmp_path / "data.hdf5"
    with h5py.File(p, "w") as f:
        f.attrs["distance"] = "angular"
        f.create_dataset("train", data=train)
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=neighbors.numpy().astype(np.int32))
    cfg = EvalConfig(
        base=str(p),
        gt=str(p),
        ks=(10,),
        quantizations=("fp32",),
        filterings=("pre",),
        progress=False,
        cache_dir=tmp_path / "c",
    )
    report = run_eval(cfg)
    assert report["dataset"]["metric"] == "cosine" and report["dataset"]["n_queries"] == 9
    assert report["results"][0]["recall"] == 1.0


def test_parquet_base_with_attribute_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((400, 6)).astype(np.float32)
    color = [["red", "blue", "green"][i % 3] for i in range(400)]
    pq.write_table(
        pa.table({"embedding": x.tolist(), "color": color}),
        tmp_path / "i.parquet",
        row_group_size=128,
    )
    _fbin(tmp_path / "q.fbin", rng.standard_normal((7, 6)).astype(np.float32))
    cfg = EvalConfig(
        base=str(tmp_path / "i.parquet"),
        queries=str(tmp_path / "q.fbin"),
        filter='color == "red"',
        ks=(5,),
        quantizations=("fp32",),
        oversampling=(1,),
        progress=False,
        cache_dir=tmp_path / "c",
    )
    report = run_eval(cfg)
    assert report["filters"][0]["matches"] == 134
    by = {r["result"]: r for r in report["results"]}
    assert by["fp32/pre@5"]["recall"] == 1.0
    assert by["fp32/post-x1@5"]["filter_violations"] == 0
