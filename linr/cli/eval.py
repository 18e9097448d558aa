"""`linr eval`: offline recall and latency of every quantization x filtering mode.

    linr eval --base base.fbin --queries query.fbin --attributes attrs.jsonl \
        --query-filters qf.jsonl --k 10,100 --quantization fp32,fp16,int8 \
        --filtering pre,post --report out/

writes out/report.json, out/report.md and PNG plots; docs/eval.md explains every number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from linr.cli.main import env_default
from linr.errors import InvalidInput

_QUANTIZATIONS = ("fp32", "fp16", "int8", "1bit")
_FILTERINGS = ("pre", "post")


def _int_list(name: str, lo: int, hi: int) -> Any:
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be comma-separated integers, got {text!r}"
            ) from None
        if not values or any(not lo <= v <= hi for v in values):
            raise argparse.ArgumentTypeError(f"{name} values must be in [{lo}, {hi}], got {text!r}")
        return tuple(dict.fromkeys(values))

    return parse


def _choice_list(name: str, choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(
                f"{name}: {', '.join(bad) or 'nothing'} not in {', '.join(choices)}"
            )
        return tuple(dict.fromkeys(values))

    return parse


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="offline recall and latency evaluation",
        description="Measure recall@k and latency of pre-filtered search (and of the "
        "post-filtering baseline) for each quantization, against exact ground truth, and "
        "write report.json, report.md and PNG plots. See docs/eval.md.",
    )
    d = env_default
    p.add_argument(
        "--base",
        required=d("base", None) is None,
        default=d("base", None),
        help="base vectors: .fbin .u8bin .i8bin .fvecs .bvecs .npy .hdf5[:name] .parquet",
    )
    p.add_argument(
        "--queries",
        default=d("queries", None),
        help="query vectors, same formats (default with an HDF5 base: its 'test')",
    )
    p.add_argument(
        "--attributes",
        default=d("attributes", None),
        help="item attributes: .jsonl (line i = item i), .parquet, or a tag .spmat",
    )
    p.add_argument(
        "--query-filters",
        default=d("query_filters", None),
        help="per-query filters: .jsonl (line i = filter of query i, null = none) "
        "or a query tag .spmat (AND of the row's tags)",
    )
    p.add_argument(
        "--filter",
        default=d("filter", None),
        help="one filter (JSON or string form) for every query",
    )
    p.add_argument(
        "--gt",
        default=d("gt", None),
        help="ground truth: big-ann .ibin, .ivecs, .npy or ann-benchmarks HDF5 "
        "(default: computed exactly and cached)",
    )
    p.add_argument(
        "--k",
        type=_int_list("--k", 1, 1000),
        default=d("k", "10,100"),
        help="comma-separated k values (default 10,100)",
    )
    p.add_argument(
        "--quantization",
        type=_choice_list("--quantization", _QUANTIZATIONS),
        default=d("quantization", "fp32,fp16,int8"),
    )
    p.add_argument(
        "--filtering",
        type=_choice_list("--filtering", _FILTERINGS),
        default=d("filtering", "pre,post"),
    )
    p.add_argument(
        "--oversampling",
        type=_int_list("--oversampling", 1, 1000),
        default=d("oversampling", "1,2,4,10"),
        help="post-filtering searches for k x each of these (default 1,2,4,10)",
    )
    p.add_argument(
        "--bits",
        type=_int_list("--bits", 64, 1 << 16),
        default=d("bits", None),
        help="1bit: code sizes to compare, multiples of 64 (default D rounded up to 64)",
    )
    p.add_argument(
        "--rerank-oversample",
        type=_int_list("--rerank-oversample", 1, 1000),
        default=d("rerank_oversample", "1,4,10,20,50"),
        help="1bit: candidates per result reranked, one mode each (default 1,4,10,20,50)",
    )
    p.add_argument(
        "--rerank",
        choices=("fp16", "int8", "fp32", "none"),
        default=d("rerank", "fp16"),
        help="1bit: the rerank store (default fp16)",
    )
    p.add_argument(
        "--metric",
        choices=("ip", "cosine", "l2"),
        default=d("metric", None),
        help="default: the HDF5 file's distance, else ip",
    )
    p.add_argument(
        "--fields",
        default=d("fields", None),
        help="comma-separated attribute fields to index (default: all)",
    )
    p.add_argument(
        "--schema",
        default=d("schema", None),
        help='JSON file {"field": "keyword"|"int"|"float"|"bool"}',
    )
    p.add_argument(
        "--tag-field",
        default=d("tag_field", "tags"),
        help="field name for .spmat tags (default tags)",
    )
    p.add_argument(
        "--vector-column",
        default=d("vector_column", None),
        help="Parquet column holding the vectors (default: the list column)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d("device", "auto"))
    p.add_argument(
        "--batch-size",
        type=_positive,
        default=d("batch_size", "100"),
        help="queries per search call; latency is per batch (default 100)",
    )
    p.add_argument(
        "--gt-dtype",
        choices=("float64", "float32"),
        default=d("gt_dtype", "float64"),
        help="precision of the computed ground truth (default float64)",
    )
    p.add_argument(
        "--max-base",
        type=_positive,
        default=d("max_base", None),
        help="use only the first N base vectors",
    )
    p.add_argument(
        "--max-queries",
        type=_positive,
        default=d("max_queries", None),
        help="use only the first N queries",
    )
    p.add_argument(
        "--cache-dir",
        default=d("cache_dir", None),
        help="where computed ground truth is cached (default REPORT/cache)",
    )
    p.add_argument("--no-plots", action="store_true", default=d("no_plots", False))
    p.add_argument("--no-progress", action="store_true", default=d("no_progress", False))
    p.add_argument(
        "--report",
        required=d("report", None) is None,
        default=d("report", None),
        help="output directory",
    )


def _read_schema(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    try:
        schema = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{path}: not valid JSON ({e.msg})") from e
    if not isinstance(schema, dict) or not all(isinstance(v, str) for v in schema.values()):
        raise InvalidInput(f'{path}: expected {{"field": "keyword"|"int"|"float"|"bool"}}')
    return schema


def run(args: argparse.Namespace) -> int:
    from linr.eval.report import write_report
    from linr.eval.runner import EvalConfig, run_eval

    report_dir = Path(args.report)
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    cfg = EvalConfig(
        base=args.base,
        queries=args.queries,
        attributes=args.attributes,
        query_filters=args.query_filters,
        filter=args.filter,
        gt=args.gt,
        ks=args.k,
        quantizations=args.quantization,
        filterings=args.filtering,
        oversampling=args.oversampling,
        bits=args.bits or (),
        rerank_oversample=args.rerank_oversample,
        rerank=args.rerank,
        metric=args.metric,
        fields=fields,
        schema=_read_schema(args.schema),
        tag_field=args.tag_field,
        vector_column=args.vector_column,
        device=args.device,
        batch_size=int(args.batch_size),
        gt_dtype=args.gt_dtype,
        max_base=None if args.max_base is None else int(args.max_base),
        max_queries=None if args.max_queries is None else int(args.max_queries),
        cache_dir=Path(args.cache_dir) if args.cache_dir else report_dir / "cache",
        progress=not args.no_progress,
    )
    report = run_eval(cfg)
    paths = write_report(report, report_dir, plots=not args.no_plots)
    for r in report["results"]:
        print(
            f"{r['result']:<24} recall {r['recall'] if r['recall'] is not None else 'n/a'}"
            f"  violations {r['filter_violations']}"
        )
    print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0
