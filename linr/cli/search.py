"""`linr search`: top-k results for a file of queries, optionally filtered.

    linr search idx/ --queries q.fbin --k 100 --filter 'lang == "en"' --output res.jsonl

Queries that share a filter are searched together, --batch-size at a time; results are
written in query order. Nothing is written unless every query succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from linr.cli import onebit_args
from linr.cli.main import UsageError, env_default, positive_int
from linr.errors import FilterError, InvalidInput
from linr.filters import MAX_DEPTH
from linr.limits import MAX_K

# Queries per Index.search call: the scan's memory is bounded by the index, not by B, and
# 1024 keeps per-call overhead negligible.
_BATCH_QUERIES = 1024
_OUTPUT_SUFFIXES = (".jsonl", ".ibin")
_INT32_MAX = 2**31 - 1
_NOT_JSON = ("inf", "-inf", "nan")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search",
        help="search an index with a file of queries",
        description="Search an index directory with queries from a vector file and write "
        "the top-k ids and scores of each query (JSON Lines, or .ibin ids).",
    )
    p.add_argument("index", metavar="INDEX_DIR", help="index directory written by 'linr build'")
    queries_default = env_default("queries", None)
    p.add_argument(
        "--queries",
        metavar="QUERIES",
        default=queries_default,
        required=queries_default is None,
        help="query vectors: .fbin, .fvecs or .npy",
    )
    p.add_argument(
        "--k", type=_k, default=env_default("k", 10), help="results per query, 1..1000 (10)"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--filter",
        metavar="F",
        default=env_default("filter", None),
        help='one filter for every query, string form (lang == "en") or JSON',
    )
    group.add_argument(
        "--filters",
        metavar="FILTERS",
        default=env_default("filters", None),
        help="JSON Lines, line i = filter of query i (null or {} for none)",
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=env_default("device", "auto")
    )
    onebit_args.add_search_args(p)
    p.add_argument(
        "--output",
        metavar="OUT",
        default=env_default("output", None),
        help='.jsonl ({"ids": [...], "scores": [...]} per query) or .ibin '
        "(int32 ids padded with -1); default: JSON Lines on stdout",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=env_default("batch_size", _BATCH_QUERIES),
        help=f"queries per search call (default {_BATCH_QUERIES})",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        default=env_default("quiet", False),
        help="no progress bar",
    )


def run(args: argparse.Namespace) -> int:
    import linr
    from linr.io import read_filters_jsonl, read_vectors

    if args.filter is not None and args.filters is not None:
        raise UsageError("--filter and --filters are mutually exclusive")
    out_kind = _output_kind(args.output)
    manifest = linr.read_manifest(args.index)
    queries = np.ascontiguousarray(read_vectors(args.queries), dtype=np.float32)
    nq, d = queries.shape
    if d != manifest["dim"]:
        raise InvalidInput(
            f"{args.queries}: queries have dimension {d}, the index {args.index} has "
            f"dimension {manifest['dim']}"
        )
    bad = np.flatnonzero(~np.isfinite(queries).all(axis=1))
    if bad.size:
        raise InvalidInput(f"{args.queries}: query {int(bad[0])} has NaN or infinite values")
    if out_kind == "ibin" and manifest.get("id_kind") == "str":
        raise InvalidInput(
            f"--output {args.output}: .ibin holds integer ids and this index has string ids; "
            "use a .jsonl output"
        )
    filters = _query_filters(args, nq, read_filters_jsonl)

    # A one-shot reader: map the codes instead of reading them (linr.io.mapped).
    index = _call(
        "",
        linr.Index.load,
        args.index,
        device=args.device,
        rerank_device=args.rerank_device,
        mmap=True,
    )
    ids: list[list[Any]] = [[] for _ in range(nq)]
    scores = np.full((nq, args.k), -np.inf, dtype=np.float32)
    with _progress(nq, args.quiet) as bar:
        for where, f, rows in _batches(filters, args.batch_size, args.filters):
            res = _call(
                where, index.search, queries[rows], k=args.k, filter=f, oversample=args.oversample
            )
            scores[rows] = res.scores
            for i, r in zip(rows.tolist(), res.ids, strict=True):
                ids[i] = r
            bar.update(len(rows))

    if out_kind == "ibin":
        _write_ibin_results(args.output, ids, args.k)
    elif args.output is None:
        _write_jsonl(sys.stdout, ids, scores)
        sys.stdout.flush()
    else:
        with _atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8") as f:
            _write_jsonl(f, ids, scores)
    return 0


def _query_filters(args: argparse.Namespace, nq: int, read_filters: Any) -> list[Any]:
    """One filter (or None) per query, as given: a dict (JSON form) or a string."""
    if args.filters is not None:
        filters = read_filters(args.filters)
        extra = filters[nq:]
        if len(filters) < nq or any(f is not None for f in extra):
            raise InvalidInput(
                f"{args.filters} has {len(filters)} lines but {args.queries} has {nq} queries "
                "(one filter line per query)"
            )
        return filters[:nq]
    f = _cli_filter(args.filter) if args.filter is not None else None
    return [f] * nq


def _cli_filter(text: str) -> Any:
    """--filter: JSON form when it looks like a JSON object, else the string form."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise FilterError(f"--filter: invalid JSON: {e}") from None
        except RecursionError:  # json.loads recurses once per level of nesting
            raise FilterError(f"--filter: nested deeper than {MAX_DEPTH} levels") from None
        return value or None
    return text if text.strip() else None


def _batches(
    filters: list[Any], batch: int, source: str | None
) -> Iterator[tuple[str, Any, np.ndarray]]:
    """(context for errors, filter, query rows), grouping queries with the same filter.
    source: the --filters file, to name the line of a bad filter; None for --filter."""
    groups: dict[str, list[int]] = {}
    first: dict[str, Any] = {}
    for i, f in enumerate(filters):
        key = json.dumps(f, sort_keys=True)
        groups.setdefault(key, []).append(i)
        first.setdefault(key, f)
    for key, members in groups.items():
        rows = np.asarray(members, dtype=np.int64)
        where = f"{source} line {members[0] + 1}" if source else "--filter"
        where += f" ({_short(first[key])})"
        for s in range(0, len(rows), batch):
            yield where, first[key], rows[s : s + batch]


def _call(context: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs), its InvalidInput (exit 2) prefixed with context. A plain ValueError
    from the index is a bug, not bad input, and stays one (exit 1)."""
    try:
        return fn(*args, **kwargs)
    except FilterError as e:
        raise FilterError(f"{context}: {e}" if context else str(e)) from e
    except InvalidInput as e:
        raise InvalidInput(f"{context}: {e}" if context else str(e)) from e


def _short(f: Any) -> str:
    text = f if isinstance(f, str) else json.dumps(f)
    return text if len(text) <= 60 else text[:57] + "..."


def _output_kind(output: str | None) -> str:
    if output is None:
        return "jsonl"
    suffix = Path(output).suffix.lower()
    if suffix not in _OUTPUT_SUFFIXES:
        raise UsageError(
            f"--output {output}: unknown output type {suffix or '(no suffix)'!r}; "
            f"expected {' or '.join(_OUTPUT_SUFFIXES)}"
        )
    return suffix[1:]


def _write_jsonl(f: IO[str], ids: list[list[Any]], scores: np.ndarray) -> None:
    # astype(str) gives the shortest text that reads back as the same float32, formatted
    # in C for the whole matrix; -inf only pads past a query's results, which are cut.
    text = scores.astype(str)
    for row_ids, row in zip(ids, text, strict=True):
        vals = row[: len(row_ids)]
        if any(v in _NOT_JSON for v in vals[-1:]) or any(v in _NOT_JSON for v in vals[:1]):
            vals = [json.dumps(float(v)) for v in vals]  # inf: json.dumps's spelling
        f.write(f'{{"ids": {json.dumps(row_ids)}, "scores": [{", ".join(vals)}]}}\n')


def _write_ibin_results(path: str, ids: list[list[Any]], k: int) -> None:
    from linr.io import write_ibin

    labels = np.full((len(ids), k), -1, dtype=np.int64)
    for i, row in enumerate(ids):
        labels[i, : len(row)] = row
    if labels.size and int(labels.max()) > _INT32_MAX:
        raise InvalidInput(
            f"--output {path}: id {int(labels.max())} does not fit in .ibin (int32 ids below "
            "2^31 only); use a .jsonl output"
        )
    with _atomic_path(path) as tmp:
        write_ibin(tmp, labels)


@contextmanager
def _atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside `path`, renamed over it only if the block succeeds, so a
    failed run never leaves a partial output file."""
    head, tail = os.path.split(os.path.abspath(path))
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _progress(total: int, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit=" queries",
        file=sys.stderr,
        disable=quiet or total < 10_000 or not sys.stderr.isatty(),
        desc="search",
    )


def _k(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= k <= MAX_K:
        raise argparse.ArgumentTypeError(f"k must be between 1 and {MAX_K}, got {k}")
    return k
