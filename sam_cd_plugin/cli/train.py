"""``train``: a checkpoint (or one per δ with ``--delta-sweep``) from change-detection datasets, or,
with ``--before/--after/--changes``, a checkpoint fine-tuned on one area digitised by the user."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import InputError
from ..engine.recipes import AUGMENTS, LOSSES, SCHEDULES
from ..engine.requests import jsonable
from .arguments import DEVICES, bands


def deltas(text: str) -> list[float]:
    try:
        return [float(d) for d in text.replace(" ", "").split(",") if d]
    except ValueError:
        raise argparse.ArgumentTypeError(f"δ list must look like 0.2,0.3,0.4 (got {text!r})") from None


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a checkpoint on dataset folders, or on one area of two rasters",
                       description="Dataset folders (--data): DATA/{A,B,label}; DATA/{train,val,test}/{A,B,label}; "
                                   "DATA/{A,B,label} + DATA/list/{train,val,test}.txt. One area (--before, "
                                   "--after, --changes [--reviewed]): fine-tunes a checkpoint (default: the "
                                   "bundled one) on polygons of change, scored on held-out blocks.")
    t.add_argument("--data", type=Path, action="append", default=None, help="dataset folder (repeatable)")
    area = t.add_argument_group("one area (instead of --data)")
    area.add_argument("--before", type=Path, help="before raster")
    area.add_argument("--after", type=Path, help="after raster")
    area.add_argument("--changes", type=Path, help="polygons of change (any OGR format and CRS)")
    area.add_argument("--where", default=None, help="OGR attribute filter on the change polygons, e.g. \"class = 'built'\"")
    area.add_argument("--reviewed", type=Path, default=None,
                      help="polygons of the reviewed areas (default: bounding box of the changes + margin)")
    area.add_argument("--name", default="", help="area name stored in the checkpoint (default: the changes file's name)")
    t.add_argument("--checkpoint", default=None,
                   help="checkpoint to fine-tune (one area: default the bundled one; datasets: default "
                        "none, a new model); ignored in one area with --encoder-weights")
    area.add_argument("--bands-before", type=bands, default=None, help="e.g. 3,2,1 (1-based), as for detect")
    area.add_argument("--bands-after", type=bands, default=None)
    area.add_argument("--holdout", type=float, default=0.2, help="held-out share of the reviewed pixels")
    t.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="training split (default: train for split/list layouts, all pairs of a flat folder)")
    t.add_argument("--include", action="append", default=[], help="only pairs whose name matches this glob")
    t.add_argument("--val-split", choices=("train", "val", "test"), default=None,
                   help="validation split, scored every epoch (default: val when the dataset has one)")
    t.add_argument("--val-include", action="append", default=[],
                   help="validation pairs by name glob (repeatable); best-on-validation is kept")
    t.add_argument("--out", type=Path, default=None,
                   help="checkpoint; with --delta-sweep, <stem>_delta<δ>.pt beside it "
                        "(one area: default <changes>_model.pt beside the change polygons)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run (<out>.resume)")
    t.add_argument("--method", default=None, choices=("sam-cem-cd", "sam2-cd", "sam-cd"),
                   help="default: sam-cem-cd (one area: the start checkpoint's)")
    t.add_argument("--encoder", default=None,
                   help="default: the method's (sam-cem-cd: fastsam-s, sam2-cd: sam2-s, sam-cd: sam2-t)")
    t.add_argument("--encoder-weights", type=Path, default=None, help="official weights, e.g. FastSAM-s.pt")
    t.add_argument("--freeze-encoder", action="store_true")
    t.add_argument("--prompts", default="", help="sam-cd: category prompts, e.g. building,road")
    t.add_argument("--clip-weights", type=Path, default=None, help="sam-cd prompts: CLIP file (ViT-B-32.pt)")
    t.add_argument("--clip-model", default="ViT-B-32")
    t.add_argument("--mask-generator", default="fastsam-s", choices=("fastsam-s", "fastsam-x", "grid"))
    t.add_argument("--mask-generator-weights", type=Path, default=None, help="e.g. FastSAM-s.pt")
    t.add_argument("--delta", type=float, default=0.3, help="CEM drop ratio δ")
    t.add_argument("--delta-sweep", type=deltas, default=None, metavar="D1,D2,...",
                   help="train one checkpoint per δ, e.g. 0.2,0.3,0.4,0.5,0.6")
    t.add_argument("--input-size", type=int, default=None, help="crop size (default: 256; one area: 64)")
    t.add_argument("--epochs", type=int, default=None, help="default: 20 (one area: 10)")
    t.add_argument("--samples-per-pair", type=int, default=4)
    t.add_argument("--identical-share", type=float, default=None,
                   help="share of training samples that are one date twice, labelled no change (default 0.1)")
    t.add_argument("--batch-size", type=int, default=None, help="default: 4 (one area: 8)")
    recipe = "default: the method's recipe (sam-cem-cd/sam-cd: {}, sam2-cd: {})"
    t.add_argument("--optimizer", default=None, choices=("sgd", "adamw"),
                   help=recipe.format("sgd", "adamw"))
    t.add_argument("--lr", type=float, default=None, help=recipe.format("0.01", "2e-5 peak"))
    t.add_argument("--weight-decay", type=float, default=None, help=recipe.format("5e-4", "0.005"))
    t.add_argument("--schedule", default=None, choices=SCHEDULES,
                   help=recipe.format("poly", "one-cycle cosine"))
    t.add_argument("--poly-power", type=float, default=2.0)
    t.add_argument("--loss", default=None, choices=LOSSES,
                   help=recipe.format("cem", "bce-dice on each of its three masks"))
    t.add_argument("--augment", default=None, choices=AUGMENTS,
                   help=recipe.format("base: flips, 90° turns, date swap, colour jitter per date",
                                      "paper: base + ±30° rotation"))
    t.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision on CUDA (ignored on the CPU)")
    t.add_argument("--workers", type=int, default=None,
                   help="data-loading processes (default: up to 4 on CUDA, 0 on the CPU)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", choices=DEVICES)
    t.add_argument("--eval-include", action="append", default=None,
                   help="after training, score these pairs (globs) with the detector and store the metrics")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    area = (args.before, args.after, args.changes)
    if args.data and any(area):
        raise InputError("Give either --data (dataset folders) or --before/--after/--changes (one area), not both.")
    if any(area):
        if not all(area):
            raise InputError("Training on one area needs --before, --after and --changes.")
        return run_area(args)
    if not args.data:
        raise InputError("Give --data DATASET_FOLDER, or --before/--after/--changes for one area.")
    if args.out is None:
        raise InputError("Training on dataset folders needs --out CHECKPOINT.pt.")
    return run_datasets(args)


def run_area(args: argparse.Namespace) -> int:
    """Train on one area through the engine; print the hold-out scores beside the threshold baseline."""
    from ..engine.service import AreaTrainRequest, get_engine
    from .progress import engine_log, progress_bar

    out = args.out or args.changes.with_name(f"{args.changes.stem}_model.pt")
    config = {"before": args.before, "after": args.after, "changes": args.changes, "out": out,
              "where": args.where, "reviewed": args.reviewed, "name": args.name, "checkpoint": args.checkpoint or "bundled",
              "encoder_weights": args.encoder_weights, "method": args.method, "encoder": args.encoder,
              "delta": args.delta, "lr": args.lr, "holdout": args.holdout,
              "freeze_encoder": args.freeze_encoder, "seed": args.seed, "device": args.device,
              "bands_before": args.bands_before, "bands_after": args.bands_after}
    for key in ("epochs", "input_size", "batch_size"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    engine = get_engine()
    with progress_bar("training") as progress:
        result = engine.train_area(AreaTrainRequest(jsonable(config)), progress=progress,
                                   log=engine_log(engine.transport))
    metrics = result["metadata"]["metrics"]
    val, base = metrics["val"], metrics["val_threshold_baseline"]
    print(f"checkpoint: {result['path']}")
    print(f"hold-out F1 {val['f1']:.4f} IoU {val['iou']:.4f}; |before − after| threshold baseline "
          f"F1 {base['f1']:.4f} (threshold {base['threshold']:g})")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..engine.service import TrainRequest, get_engine
    from ..engine.training import TrainConfig, sweep_configs
    from ..engine.evaluation import format_table
    from .evaluate import confusion_matrix

    config = TrainConfig(
        data=args.data, out=args.out, include=args.include, split=args.split,
        val_split=args.val_split, val_include=args.val_include,
        method=args.method or "sam-cem-cd",
        encoder=args.encoder, encoder_weights=args.encoder_weights,
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        freeze_encoder=args.freeze_encoder,
        prompts=[p.strip() for p in args.prompts.split(",") if p.strip()],
        clip_weights=args.clip_weights, clip_model=args.clip_model,
        mask_generator=args.mask_generator, mask_generator_weights=args.mask_generator_weights,
        delta=args.delta, input_size=args.input_size or 256, epochs=args.epochs or 20,
        samples_per_pair=args.samples_per_pair, batch_size=args.batch_size or 4,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        poly_power=args.poly_power, schedule=args.schedule, loss=args.loss,
        augment=args.augment, amp=args.amp, workers=args.workers, seed=args.seed,
        device=args.device, resume=args.resume,
        **({} if args.identical_share is None else {"identical_share": args.identical_share}))
    configs = sweep_configs(config, args.delta_sweep) if args.delta_sweep else [config]
    engine = get_engine()

    def show(_level: str, line: str) -> None:
        print(line, flush=True)

    results = {}
    for cfg in configs:
        if len(configs) > 1:
            print(f"== δ = {cfg.delta:g} → {cfg.out}", flush=True)
        result = engine.train(TrainRequest(jsonable(asdict(cfg)), args.eval_include), log=show)
        print(f"checkpoint: {result['path']}")
        meta = result["metadata"]
        if args.eval_include is not None:
            for label in ("train", "eval"):
                print(format_table({label: confusion_matrix(meta["metrics"][label])}))
        results[Path(result["path"])] = meta
    if len(configs) > 1:
        _print_sweep(results)
    return 0


def _print_sweep(results: dict) -> None:
    print(f"{'checkpoint':40}  {'δ':>5}  {'val F1':>7}  {'val IoU':>7}")
    for out, meta in results.items():
        val = meta.get("metrics", {}).get("val") or {}
        f1, iou = (f"{val[k]:.4f}" if k in val else "-" for k in ("f1", "iou"))
        print(f"{Path(out).name:40}  {meta['delta']:>5g}  {f1:>7}  {iou:>7}")
