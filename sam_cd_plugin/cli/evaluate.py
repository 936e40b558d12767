"""``evaluate``: the papers' metrics of a checkpoint on a dataset."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import DEVICES


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Dataset, threshold, device and output options shared by ``evaluate`` and ``compare``."""
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (any supported layout)")
    parser.add_argument("--split", choices=("train", "val", "test"), default=None,
                        help="split to score (required for train/val/test and list/*.txt layouts)")
    parser.add_argument("--include", action="append", default=[], help="only pairs matching this glob")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="Pre, Rec, F1, IoU, OA, Kappa (change class), mF1, mIoU")
    e.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled one")
    add_dataset_arguments(e)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.datasets import find_pairs
    from ..engine.detector import ChangeDetector, DetectionOptions
    from ..engine.evaluation import evaluate_pairs, format_table

    pairs = find_pairs(args.data, args.include, args.split)
    detector = ChangeDetector(args.checkpoint, args.device)
    result = evaluate_pairs(detector, pairs, DetectionOptions(threshold=args.threshold))
    if args.json:
        print(json.dumps({"checkpoint": str(detector.checkpoint), "data": str(args.data),
                          "split": args.split, "total": result.total.as_dict(),
                          "pairs": {k: v.as_dict() for k, v in result.per_pair.items()}}, indent=2))
    else:
        print(format_table({**result.per_pair, "ALL PIXELS": result.total}))
    return 0
