"""``bench``: pairs/s of each method × encoder at 256 and 512 px, and the head's overhead."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

from .arguments import DEVICES


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _sizes(text: str) -> list[int]:
    try:
        return [int(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must look like 256,512 (got {text!r})") from None


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="model throughput (pairs/s) per encoder and method")
    b.add_argument("--device", default="auto", choices=DEVICES)
    b.add_argument("--encoders", type=_names, default=[], help="comma list (default: all)")
    b.add_argument("--methods", type=_names, default=None,
                   help="comma list of sam-cem-cd, sam2-cd, sam-cd, sam-cd+prompts (default: all)")
    b.add_argument("--sizes", type=_sizes, default=[256, 512], help="tile sizes, e.g. 256,512")
    b.add_argument("--batch-size", type=int, default=1, help="pairs per forward")
    b.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    b.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: process CPU time (CPU device), steadier on a shared machine")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..engine.model_bench import BENCH_METHODS, BenchConfig, format_bench, run_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    config = BenchConfig(encoders=args.encoders, methods=args.methods or list(BENCH_METHODS),
                         sizes=args.sizes, batch_size=args.batch_size, repeats=args.repeats,
                         warmup=args.warmup, device=args.device, clock=args.clock)
    with contextlib.redirect_stdout(sys.stderr):  # keep build chatter out of the table / JSON
        report = run_bench(config)
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_bench(report))
    return 0
