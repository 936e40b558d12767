"""Command line: detect, train, evaluate. Thin: parse arguments, call the engine, report."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from .core.errors import SamCdError


def _bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bands must look like 3,2,1 (got {text!r})") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sam_cd_plugin",
                                description="SAM-guided change detection between two rasters.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="change map of a before/after raster pair")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    d.add_argument("output", type=Path, help="change GeoTIFF (1 change, 0 none, 255 nodata)")
    d.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled one")
    d.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    d.add_argument("--threshold", type=float, default=0.5)
    d.add_argument("--tile-size", type=int, default=None)
    d.add_argument("--overlap", type=int, default=64)
    d.add_argument("--bands-before", type=_bands, default=None, help="e.g. 3,2,1 (1-based)")
    d.add_argument("--bands-after", type=_bands, default=None)
    d.add_argument("--probability", type=Path, default=None, help="also write a probability GeoTIFF")
    d.add_argument("--quicklook", type=Path, default=None, help="also write a PNG before|after|change")

    t = sub.add_parser("train", help="train a checkpoint on LEVIR-CD-layout folders (A/, B/, label/)")
    t.add_argument("--data", type=Path, action="append", required=True, help="dataset folder (repeatable)")
    t.add_argument("--include", action="append", default=[], help="only pairs whose name matches this glob")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--method", default="sam-cem-cd")
    t.add_argument("--encoder", default="fastsam-s")
    t.add_argument("--encoder-weights", type=Path, default=None, help="official weights, e.g. FastSAM-s.pt")
    t.add_argument("--freeze-encoder", action="store_true")
    t.add_argument("--delta", type=float, default=0.3, help="CEM drop ratio δ")
    t.add_argument("--input-size", type=int, default=256)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--samples-per-pair", type=int, default=4)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--poly-power", type=float, default=2.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--eval-include", action="append", default=None,
                   help="after training, score these pairs (globs) and store the metrics")

    e = sub.add_parser("evaluate", help="Precision, Recall, F1, IoU, OA of the change class")
    e.add_argument("--checkpoint", type=Path, default=None)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--include", action="append", default=[])
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _detect(args: argparse.Namespace) -> int:
    from .engine.detector import ChangeDetector, DetectionOptions

    detector = ChangeDetector(args.checkpoint, args.device)
    options = DetectionOptions(threshold=args.threshold, tile_size=args.tile_size,
                               overlap=args.overlap, bands_before=args.bands_before,
                               bands_after=args.bands_after, probability_path=args.probability)
    result = detector.detect(args.before, args.after, args.output, options,
                             progress=lambda p: logging.getLogger("sam_cd").debug("%.0f %%", p))
    share = 100.0 * result.changed_pixels / max(1, result.valid_pixels)
    print(f"change map: {result.out_path} ({result.width}×{result.height} px, "
          f"{share:.2f} % changed, {result.seconds:.1f} s on {result.device})")
    if result.probability_path:
        print(f"probability: {result.probability_path}")
    if args.quicklook:
        from .core.quicklook import write_quicklook

        png = write_quicklook(args.before, args.after, args.output, args.quicklook,
                              args.bands_before, args.bands_after)
        print(f"quick-look: {png}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .engine.evaluation import evaluate_pairs, format_table
    from .engine.training import TrainConfig, collect_pairs, train
    from .models.checkpoint import load_checkpoint, save_checkpoint

    config = TrainConfig(data=args.data, out=args.out, include=args.include, method=args.method,
                         encoder=args.encoder, encoder_weights=args.encoder_weights,
                         freeze_encoder=args.freeze_encoder, delta=args.delta,
                         input_size=args.input_size, epochs=args.epochs,
                         samples_per_pair=args.samples_per_pair, batch_size=args.batch_size,
                         optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                         poly_power=args.poly_power, seed=args.seed, device=args.device)
    out = train(config, progress=lambda e, n, loss: print(f"epoch {e}/{n}  loss {loss:.4f}", flush=True))
    print(f"checkpoint: {out}")
    from .engine.detector import ChangeDetector

    detector = ChangeDetector(out, args.device)
    scores = {}
    for label, include in (("train", args.include), ("eval", args.eval_include)):
        if include is None:
            continue
        cm = evaluate_pairs(detector, collect_pairs(args.data, include)).total
        scores[label] = {"pairs_include": include, **cm.as_dict()}
        print(format_table({label: cm}))
    if scores:
        state, meta = load_checkpoint(out)
        meta["metrics"] = scores
        detector.model.cpu()
        save_checkpoint(out, detector.model, meta)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .engine.datasets import find_pairs
    from .engine.detector import ChangeDetector, DetectionOptions
    from .engine.evaluation import evaluate_pairs, format_table

    detector = ChangeDetector(args.checkpoint, args.device)
    result = evaluate_pairs(detector, find_pairs(args.data, args.include),
                            DetectionOptions(threshold=args.threshold))
    if args.json:
        print(json.dumps({"total": result.total.as_dict(),
                          "pairs": {k: v.as_dict() for k, v in result.per_pair.items()}}, indent=2))
    else:
        print(format_table({**result.per_pair, "ALL PIXELS": result.total}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"detect": _detect, "train": _train, "evaluate": _evaluate}[args.command](args)
    except SamCdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
