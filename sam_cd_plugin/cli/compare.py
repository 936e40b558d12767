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
    from ..engine.datasets import find_pairs
    from ..engine.detector import DetectionOptions
    from ..engine.evaluation import compare_checkpoints, format_table

    pairs = find_pairs(args.data, args.include, args.split)
    results = compare_checkpoints(_expand(args.checkpoints), pairs, args.device,
                                  DetectionOptions(threshold=args.threshold))
    if args.json:
        print(json.dumps({"data": str(args.data), "split": args.split, "pairs": len(pairs),
                          "checkpoints": [{"checkpoint": str(path), "method": meta.get("method"),
                                           "encoder": meta.get("encoder"), "delta": meta.get("delta"),
                                           **ev.total.as_dict()}
                                          for path, (meta, ev) in results.items()]}, indent=2))
        return 0
    names = [p.name for p in results]
    if len(set(names)) < len(names):
        names = [str(p) for p in results]
    metas = [meta for meta, _ in results.values()]
    extra = {"method": [str(m.get("method", "?")) for m in metas],
             "encoder": [str(m.get("encoder", "?")) for m in metas],
             "δ": [f"{m['delta']:g}" if isinstance(m.get("delta"), (int, float)) else "-" for m in metas]}
    print(f"{len(pairs)} pairs of {args.data}" + (f" ({args.split})" if args.split else ""))
    print(format_table({n: ev.total for n, (_, ev) in zip(names, results.values())}, extra))
    return 0
