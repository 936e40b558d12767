"""``train``: a checkpoint from change-detection dataset folders."""
from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import DEVICES


def add_parser(sub) -> None:
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
    t.add_argument("--device", default="auto", choices=DEVICES)
    t.add_argument("--eval-include", action="append", default=None,
                   help="after training, score these pairs (globs) and store the metrics")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluation import evaluate_pairs, format_table
    from ..engine.training import TrainConfig, collect_pairs, train
    from ..models.checkpoint import load_checkpoint, save_checkpoint

    config = TrainConfig(data=args.data, out=args.out, include=args.include, method=args.method,
                         encoder=args.encoder, encoder_weights=args.encoder_weights,
                         freeze_encoder=args.freeze_encoder, delta=args.delta,
                         input_size=args.input_size, epochs=args.epochs,
                         samples_per_pair=args.samples_per_pair, batch_size=args.batch_size,
                         optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                         poly_power=args.poly_power, seed=args.seed, device=args.device)
    out = train(config, progress=lambda e, n, loss: print(f"epoch {e}/{n}  loss {loss:.4f}", flush=True))
    print(f"checkpoint: {out}")
    from ..engine.detector import ChangeDetector

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
