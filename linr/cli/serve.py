"""`linr serve`: the HTTP retrieval service (needs the `service` extra).

Every flag is generated from `service.settings.Settings`, so a flag, its `LINR_<FLAG>`
variable and the docs cannot drift apart. A flag left out falls back to its variable (read
by pydantic-settings), then to the default.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal, get_args, get_origin

import uvicorn
from pydantic import ValidationError

from linr.errors import InvalidInput
from service.settings import Settings

# Settings fields whose flag differs from `--field-name`.
_FLAGS = {"schema_file": "--schema"}


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve an index over HTTP, optionally live-updated from Kafka",
        description="Serve INDEX_DIR (or the newest snapshot in --snapshot-dir, or an empty "
        "index of --dim) over HTTP; see docs/service.md. Every flag may also come from "
        "LINR_<FLAG>, e.g. LINR_KAFKA_BOOTSTRAP; a flag wins over its variable.",
    )
    p.add_argument(
        "index_dir",
        nargs="?",
        default=None,
        metavar="INDEX_DIR",
        help="an index written by `linr build` (env LINR_INDEX_DIR)",
    )
    for name, info in Settings.model_fields.items():
        if name == "index_dir":
            continue
        default = info.get_default(call_default_factory=True)
        shown = "" if default is None or name == "api_key" else f"; default {default}"
        desc = f"{info.description} " if info.description else ""
        choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else ()
        if choices:
            metavar = "{" + ",".join(map(str, choices)) + "}"
        elif isinstance(default, bool):
            metavar = "{true,false}"
        else:
            metavar = name.rsplit("_", 1)[-1].upper()
        # Taken as text: Settings parses and checks flags exactly as it does variables.
        p.add_argument(
            _flag(name),
            dest=name,
            default=None,
            metavar=metavar,
            help=f"{desc}(env LINR_{name.upper()}{shown})",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        settings = Settings(**given)
    except ValidationError as e:
        err = e.errors()[0]
        loc = str(err["loc"][0]) if err.get("loc") else ""
        where = f"{_flag(loc)} (env LINR_{loc.upper()}): " if loc in Settings.model_fields else ""
        raise InvalidInput(where + str(err["msg"]).removeprefix("Value error, ")) from None
    for what, path in (("INDEX_DIR", settings.index_dir), ("--schema", settings.schema_file)):
        if path is not None and not path.exists():
            raise InvalidInput(f"{what} {path} does not exist")
    d = settings.snapshot_dir
    if d is not None:  # fail now, not at the first snapshot
        if d.exists() and not d.is_dir():
            raise InvalidInput(f"--snapshot-dir {d} exists and is not a directory")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InvalidInput(f"--snapshot-dir {d} cannot be made a directory: {e}") from None
    if settings.index_dir is not None:
        from linr.index import read_manifest

        read_manifest(settings.index_dir)  # fail now, not once the server is up
    return settings


def run_app(app: Any, settings: Any) -> int:
    """Serve `app` with uvicorn on the settings' host and port, logging as they say (the
    service and the router)."""
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from service.app import create_app

    settings = settings_from_args(args)
    return run_app(create_app(settings), settings)
