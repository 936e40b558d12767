"""Command line: ``python -m sam_cd_plugin <command>``. Thin: parse arguments, call the engine, report.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which registers the
command and sets ``func``) so commands stay independent of each other.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..core.errors import DependencyError, SamCdError

COMMANDS = ("detect", "train", "evaluate", "compare", "bench", "runtime")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(prog="python -m sam_cd_plugin",
                                description="SAM-guided change detection between two rasters.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:  # e.g. no GDAL on a GPU box: the other commands still work
            _unavailable(sub, name, exc)
            continue
        module.add_parser(sub)
    return p


def _unavailable(sub, name: str, exc: ImportError) -> None:
    """Register ``name`` as a command that explains which package it lacks."""
    missing = exc.name or str(exc)

    def run(_args: argparse.Namespace) -> int:
        raise DependencyError(f"The '{name}' command needs the Python package '{missing}', which "
                              f"cannot be imported here ({exc}). Install it (GDAL: python3-gdal).")

    command = sub.add_parser(name, help=f"(unavailable: needs {missing})", add_help=False)
    command.add_argument("rest", nargs=argparse.REMAINDER)
    command.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except SamCdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
