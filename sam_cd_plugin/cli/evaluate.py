"""``evaluate``: the papers' metrics of a checkpoint on a dataset."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import DEVICES


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="Precision, Recall, F1, IoU, OA of the change class")
    e.add_argument("--checkpoint", type=Path, default=None)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--include", action="append", default=[])
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--device", default="auto", choices=DEVICES)
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.datasets import find_pairs
    from ..engine.detector import ChangeDetector, DetectionOptions
    from ..engine.evaluation import evaluate_pairs, format_table

    detector = ChangeDetector(args.checkpoint, args.device)
    result = evaluate_pairs(detector, find_pairs(args.data, args.include),
                            DetectionOptions(threshold=args.threshold))
    if args.json:
        print(json.dumps({"total": result.total.as_dict(),
                          "pairs": {k: v.as_dict() for k, v in result.per_pair.items()}}, indent=2))
    else:
        print(format_table({**result.per_pair, "ALL PIXELS": result.total}))
    return 0
