"""``compare``: several checkpoints on one test set, side by side."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .evaluate import add_dataset_arguments


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="score several checkpoints on one dataset, side by side")
    c.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints (.pt) or folders of them")
    add_dataset_arguments(c)
    c.set_defaults(func=run)


def _expand(paths: list[Path]) -> list[Path]:
    from ..core.errors import InputError

    out: list[Path] = []
    for p in paths:
        found = sorted(p.glob("*.pt")) if p.is_dir() else [p]
        if not found:
            raise InputError(f"{p} holds no .pt checkpoints.")
        out += found
    return out


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluation import format_table
    from ..engine.service import EvaluateRequest, get_engine
    from .evaluate import confusion_matrix
    from .progress import engine_log

    engine = get_engine()
    results = {path: engine.evaluate(EvaluateRequest(str(args.data), str(path), args.include, args.split,
                                                     args.threshold, args.device),
                                     log=engine_log(engine.transport))
               for path in _expand(args.checkpoints)}
    pairs = next(iter(results.values()))["pairs"]
    if args.json:
        print(json.dumps({"data": str(args.data), "split": args.split, "pairs": pairs,
                          "checkpoints": [{"checkpoint": str(path), "method": r["metadata"].get("method"),
                                           "encoder": r["metadata"].get("encoder"),
                                           "delta": r["metadata"].get("delta"), **r["total"]}
                                          for path, r in results.items()]}, indent=2))
        return 0
    names = [p.name for p in results]
    if len(set(names)) < len(names):
        names = [str(p) for p in results]
    metas = [r["metadata"] for r in results.values()]
    extra = {"method": [str(m.get("method", "?")) for m in metas],
             "encoder": [str(m.get("encoder", "?")) for m in metas],
             "δ": [f"{m['delta']:g}" if isinstance(m.get("delta"), (int, float)) else "-" for m in metas]}
    print(f"{pairs} pairs of {args.data}" + (f" ({args.split})" if args.split else ""))
    print(format_table({n: confusion_matrix(r["total"]) for n, r in zip(names, results.values())}, extra))
    return 0
