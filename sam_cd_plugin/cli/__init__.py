"""Command line: ``python -m sam_cd_plugin <command>``. Thin: parse arguments, call the engine, report.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which registers the
command and sets ``func``) so commands stay independent of each other.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..core.errors import SamCdError

COMMANDS = ("detect", "train", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(prog="python -m sam_cd_plugin",
                                description="SAM-guided change detection between two rasters.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return p


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
