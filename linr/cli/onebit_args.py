"""Flags of quantization 1bit shared by `linr build` and `linr search` (docs/onebit.md)."""

from __future__ import annotations

import argparse
from typing import Any

from linr.cli.main import env_default, positive_int


def add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bits",
        type=positive_int,
        default=env_default("bits", None),
        help="1bit: sign bits per item, a multiple of 64 (default D rounded up to 64)",
    )
    p.add_argument(
        "--rerank",
        choices=("fp16", "int8", "fp32", "none"),
        default=env_default("rerank", None),
        help="1bit: vectors kept for the exact rerank (default fp16; none: estimate only)",
    )
    add_rerank_device(p)


def add_rerank_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rerank-device",
        choices=("auto", "cpu", "cuda"),
        default=env_default("rerank_device", None),
        help="1bit: where the rerank store lives, e.g. cpu to keep only codes on the GPU",
    )


def add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--oversample",
        type=positive_int,
        default=env_default("oversample", None),
        help="1bit: candidates per result for the exact rerank, 1..1000 (default 10)",
    )
    add_rerank_device(p)


def build_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Index() arguments of the 1bit flags given (the index refuses them for others)."""
    names = ("bits", "rerank", "rerank_device")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}
