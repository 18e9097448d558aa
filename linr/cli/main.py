"""The `linr` command: argparse with one subcommand per module, imported lazily.

Each subcommand lives in `linr/cli/<name>.py`, which exposes
`add_parser(subparsers) -> None` and `run(args) -> int`. Only the module of the command
being run is imported, so `linr build` never loads the service stack and a missing optional
extra only breaks the command that needs it.

Exit status (docs/cli.md): 0 success; 2 bad usage or bad input, with one line on stderr;
1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn, TypeVar

from linr.errors import InvalidInput

# name -> one-line help, in the order `linr --help` lists them.
COMMANDS = {
    "build": "build an index from a vector file (+ attributes, ids)",
    "search": "search an index with a file of queries",
    "serve": "serve an index over HTTP, optionally live-updated from Kafka",
    "router": "one HTTP front for sharded, replicated linr services",
    "produce": "stream a vector file into a Kafka topic",
    "eval": "offline recall and latency evaluation",
    "demo": "the quick-start demo",
}

# Errors that mean "the user gave something wrong": exit status 2.
_USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

T = TypeVar("T")


class UsageError(InvalidInput):
    """A command line that argparse rejected."""


class CommandUnavailable(RuntimeError):
    """A subcommand whose module (or one of its dependencies) is not installed: exit 1."""


class ArgumentParser(argparse.ArgumentParser):
    """Raises UsageError instead of printing usage and exiting, so that main() reports every
    bad-input case the same way: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def env_var(name: str) -> str:
    """The environment variable of a flag: 'kafka-bootstrap' -> 'LINR_KAFKA_BOOTSTRAP'."""
    return "LINR_" + name.lstrip("-").upper().replace("-", "_")


def env_default(name: str, default: T) -> T:
    """A flag's default, overridden by `LINR_<NAME>` when that is set.

    The value is returned as text (argparse applies the flag's `type` to a string default)
    except when `default` is a bool, for on/off switches: 1/true/yes/on or 0/false/no/off.
    """
    value = os.environ.get(env_var(name))
    if value is None:
        return default
    if isinstance(default, bool):
        low = value.strip().lower()
        if low not in _TRUE + _FALSE:
            raise UsageError(f"{env_var(name)}={value!r} is not a boolean (use 1/0, true/false)")
        return low in _TRUE  # type: ignore[return-value]
    return value  # type: ignore[return-value]


def positive_int(text: str) -> int:
    """argparse type for counts and sizes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def load_command(name: str) -> ModuleType:
    """Import `linr.cli.<name>`; a missing module or missing dependency is a one-line error."""
    module = f"linr.cli.{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise CommandUnavailable(
                f"command '{name}' is not available in this installation"
            ) from None
        raise CommandUnavailable(
            f"command '{name}' needs the Python package '{e.name}', which is not installed "
            "(see the optional extras in README.md)"
        ) from None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported (the others are listed by name)."""
    parser = ArgumentParser(
        prog="linr",
        description="Exact, attribute-filtered vector retrieval on GPU or CPU.",
        epilog="Every flag can also be set as an environment variable LINR_<FLAG>, "
        "e.g. LINR_DEVICE=cpu. Run 'linr COMMAND --help' for a command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        if name == command:
            load_command(name).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("linr")
    except PackageNotFoundError:
        return "(not installed)"


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv: its first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _check_choices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse does not check defaults against `choices`; defaults may come from LINR_*."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            _check_choices(action.choices[args.command], args)
        elif action.choices is not None and action.option_strings:
            value = getattr(args, action.dest, None)
            values = value if isinstance(value, list) else [value]
            bad = [v for v in values if v is not None and v not in action.choices]
            if bad:
                value = bad[0]
                options = ", ".join(map(str, action.choices))
                raise UsageError(
                    f"argument {action.option_strings[0]}: invalid choice {value!r} "
                    f"(from {env_var(action.dest)}; choose from {options})"
                )


def _run(argv: Sequence[str]) -> int:
    command = _command_of(argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    _check_choices(parser, args)
    rc = load_command(args.command).run(args)
    return int(rc or 0)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `linr` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except SystemExit as e:  # --help and --version exit 0 from inside argparse
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    except InvalidInput as e:
        _report(_one_line(e))
        return 2
    except _USER_OS_ERRORS as e:
        _report(_one_line(f"{e.strerror or e}: {e.filename}" if e.filename else e))
        return 2
    except CommandUnavailable as e:
        _report(str(e))
        return 1
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly. Point stdout at
        # devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as e:
        if os.environ.get("LINR_DEBUG"):
            traceback.print_exc()
        _report(_one_line(f"{type(e).__name__}: {e} (set LINR_DEBUG=1 for a traceback)"))
        return 1


def _report(message: str) -> None:
    print(f"linr: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
