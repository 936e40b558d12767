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
    from ..engine.evaluation import format_table
    from ..engine.service import EvaluateRequest, get_engine
    from .progress import engine_log

    engine = get_engine()
    result = engine.evaluate(EvaluateRequest(str(args.data), str(args.checkpoint) if args.checkpoint else None,
                                             args.include, args.split, args.threshold, args.device),
                             log=engine_log(engine.transport))
    if args.json:
        print(json.dumps({"checkpoint": result["checkpoint"], "data": str(args.data),
                          "split": args.split, "total": result["total"],
                          "pairs": result["per_pair"]}, indent=2))
    else:
        rows = {**result["per_pair"], "ALL PIXELS": result["total"]}
        print(format_table({name: confusion_matrix(m) for name, m in rows.items()}))
    return 0


def confusion_matrix(metrics: dict) -> "ConfusionMatrix":
    """The matrix of an engine result's metrics dict (its counts)."""
    from ..core.metrics import ConfusionMatrix

    return ConfusionMatrix(tp=metrics["tp"], fp=metrics["fp"], fn=metrics["fn"], tn=metrics["tn"])
