"""`linr build`: an index directory from a vector file, attributes and ids.

    linr build base.fbin --attributes attrs.jsonl --fields lang,tags,ts --quantization int8 \
        --out idx/

The files are streamed: vectors come from a memory map and attributes are parsed line by
line, --batch-size rows at a time, each batch one `Index.upsert`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from linr.cli import onebit_args
from linr.cli.main import env_default, positive_int
from linr.errors import InvalidInput

# Rows per upsert. Larger batches amortize per-call overhead; 65536 x 128 float32 is 32 MB.
_BATCH_ROWS = 65536
_ITEM_RE = re.compile(r"item (\d+): ")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "build",
        help="build an index from a vector file (+ attributes, ids)",
        description="Build an index directory from a vector file (.fbin, .fvecs, .npy), "
        "optional attributes (JSON Lines, line i for vector i) and optional ids.",
    )
    p.add_argument("vectors", metavar="VECTORS", help="vectors: .fbin, .fvecs or .npy")
    p.add_argument(
        "--attributes",
        metavar="ATTRS",
        default=env_default("attributes", None),
        help='JSON Lines, line i = attributes of vector i; an "id" key gives the item id',
    )
    p.add_argument(
        "--ids",
        metavar="IDS",
        default=env_default("ids", None),
        help="text file, one id per line (all decimal integers -> integer ids, else strings)",
    )
    p.add_argument(
        "--fields",
        default=env_default("fields", None),
        type=_parse_fields,
        help="comma-separated attribute fields to index (default: all); others are ignored",
    )
    p.add_argument(
        "--schema",
        metavar="SCHEMA",
        default=env_default("schema", None),
        help='JSON file {"field": "keyword"|"int"|"float"|"bool"} fixing field kinds',
    )
    p.add_argument("--metric", choices=("ip", "cosine", "l2"), default=env_default("metric", "ip"))
    p.add_argument(
        "--quantization",
        choices=("fp32", "fp16", "int8", "1bit"),
        default=env_default("quantization", "fp32"),
    )
    onebit_args.add_build_args(p)
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=env_default("device", "auto")
    )
    out_default = env_default("out", None)
    p.add_argument(
        "--out",
        metavar="INDEX_DIR",
        default=out_default,
        required=out_default is None,
        help="index directory to write (created; an existing index there is replaced)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=env_default("batch_size", _BATCH_ROWS),
        help=f"rows per upsert (default {_BATCH_ROWS})",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        default=env_default("quiet", False),
        help="no progress bar or summary",
    )


def run(args: argparse.Namespace) -> int:
    import linr
    from linr.io import iter_item_batches, read_vectors_lazy

    t0 = time.perf_counter()
    n, d = read_vectors_lazy(args.vectors).shape
    schema = _read_schema(args.schema) if args.schema else None
    out = Path(args.out)
    _check_out_dir(out)
    index = _wrap(
        "",
        linr.Index,
        dim=d,
        metric=args.metric,
        quantization=args.quantization,
        device=args.device,
        schema=schema,
        fields=args.fields,
        capacity=max(n, 1),
        **onebit_args.build_kwargs(args),
    )
    replaced = 0
    with _progress(n, args.quiet) as bar:
        for batch in iter_item_batches(args.vectors, args.attributes, args.ids, args.batch_size):
            end = batch.start + len(batch.ids)
            try:
                result = index.upsert(batch.ids, batch.vectors, attributes=batch.attributes)
            except InvalidInput as e:
                raise InvalidInput(_locate(str(e), batch.start, end, args)) from e
            replaced += int((~result.created).sum())
            bar.update(len(batch.ids))
    index.save(out)
    if not args.quiet:
        took = time.perf_counter() - t0
        note = f"; {replaced} repeated ids replaced earlier rows" if replaced else ""
        print(
            f"linr: built {out}: {len(index)} items, dim {d}, {args.metric}, "
            f"{args.quantization}, {index.device} in {took:.1f} s "
            f"({n / max(took, 1e-9):,.0f} vectors/s){note}",
            file=sys.stderr,
        )
    return 0


def _wrap(context: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs), its InvalidInput (exit 2) prefixed with context. A plain ValueError
    from the index is a bug, not bad input, and stays one (exit 1)."""
    try:
        return fn(*args, **kwargs)
    except InvalidInput as e:
        raise InvalidInput(f"{context}: {e}" if context else str(e)) from e


def _locate(message: str, start: int, end: int, args: argparse.Namespace) -> str:
    """Turn the index's "item i: ..." (a position in the batch) into a row and a line."""
    m = _ITEM_RE.match(message)
    if m is None:
        return f"rows {start}..{end - 1}: {message}"
    row = start + int(m.group(1))
    where = f"{args.attributes} line {row + 1}" if args.attributes else f"row {row}"
    return f"{where}: {message[m.end() :]}"


def _progress(total: int, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit=" vectors",
        unit_scale=True,
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        desc="build",
    )


def _parse_fields(text: str) -> list[str]:
    fields = [f.strip() for f in text.split(",")]
    for f in fields:
        if not _FIELD_RE.fullmatch(f):
            raise argparse.ArgumentTypeError(
                f"{f!r} is not a field name ([A-Za-z_][A-Za-z0-9_.]*, at most 64 characters)"
            )
    return fields


def _read_schema(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            schema = json.load(f)
    except ValueError as e:
        raise InvalidInput(f"{path}: invalid JSON: {e}") from None
    if not isinstance(schema, dict) or not all(isinstance(v, str) for v in schema.values()):
        raise InvalidInput(
            f'{path}: a schema is a JSON object {{"field": "keyword" | "int" | "float" | "bool"}}'
        )
    return schema


def _check_out_dir(out: Path) -> None:
    """Refuse to write into a file, or into a non-empty directory that is not an index."""
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise InvalidInput(f"--out {out} is a non-empty directory that is not a linr index")
