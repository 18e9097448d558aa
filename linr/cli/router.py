"""`linr router`: one HTTP front for shards of `linr serve` replicas (docs/scaling.md).

    linr router --shard http://a0:8080,http://a1:8080 --shard http://b0:8080,http://b1:8080 \
        --kafka-bootstrap kafka:9092 --topic linr-items --port 8080

Each `--shard` lists the replicas of one shard (the `linr serve --partitions ...` processes
that read the same partitions). Every flag may also come from LINR_<FLAG>; LINR_SHARDS holds
all shards, separated by ';'.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from linr.errors import InvalidInput

# flag -> RouterSettings field, for the flags that take a value.
_FLAGS = {
    "--host": "host",
    "--port": "port",
    "--api-key": "api_key",
    "--kafka-bootstrap": "kafka_bootstrap",
    "--topic": "topic",
    "--timeout-ms": "timeout_ms",
    "--probe-every-s": "probe_every_s",
    "--probe-timeout-s": "probe_timeout_s",
    "--max-body-bytes": "max_body_bytes",
    "--max-items-per-request": "max_items_per_request",
    "--max-connections": "max_connections",
    "--coalesce": "coalesce",
    "--log-level": "log_level",
}


def add_parser(subparsers: Any) -> None:
    from service.router.settings import RouterSettings

    p: argparse.ArgumentParser = subparsers.add_parser(
        "router",
        help="one HTTP front for sharded, replicated linr services",
        description="Fan searches out to one replica of every shard and merge their top-k "
        "exactly; produce writes to Kafka; see docs/scaling.md.",
    )
    p.add_argument(
        "--shard",
        dest="shards",
        action="append",
        metavar="URL[,URL...]",
        help="the replicas of one shard; repeat for each shard (env LINR_SHARDS: ';' between "
        "shards)",
    )
    fields = RouterSettings.model_fields
    for flag, name in _FLAGS.items():
        info = fields[name]
        default = info.get_default(call_default_factory=True)
        shown = "" if default is None or name == "api_key" else f"; default {default}"
        desc = f"{info.description} " if info.description else ""
        help_text = f"{desc}(env LINR_{name.upper()}{shown})"
        p.add_argument(flag, dest=name, default=None, help=help_text)


def settings_from_args(args: argparse.Namespace) -> Any:
    from service.router.settings import RouterSettings

    given = {n: getattr(args, n) for n in ("shards", *_FLAGS.values()) if getattr(args, n, None)}
    try:
        return RouterSettings(**given)
    except ValidationError as e:
        err = e.errors()[0]
        loc = str(err["loc"][0]) if err.get("loc") else ""
        flag = "--shard" if loc == "shards" else "--" + loc.replace("_", "-")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "give at least one --shard URL[,URL...] (or LINR_SHARDS)"
        raise InvalidInput(f"{flag} (env LINR_{loc.upper()}): {msg}") from None


def run(args: argparse.Namespace) -> int:
    from linr.cli.serve import run_app
    from service.router import create_router_app

    settings = settings_from_args(args)
    return run_app(create_router_app(settings), settings)
