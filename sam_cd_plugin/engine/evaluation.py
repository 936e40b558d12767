"""Evaluation: run a checkpoint over dataset pairs with the detector and accumulate one confusion
matrix over all pixels (the papers' protocol); nodata pixels are not counted."""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.metrics import ConfusionMatrix
from ..core.raster import read_image, read_label
from .datasets import PairPaths
from .detector import MASK_NODATA, ChangeDetector, DetectionOptions

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    total: ConfusionMatrix
    per_pair: dict[str, ConfusionMatrix]


def evaluate_pairs(detector: ChangeDetector, pairs: Sequence[PairPaths],
                   options: DetectionOptions | None = None) -> Evaluation:
    """Detect on every pair (through the same path as users) and score against its label."""
    total, per_pair = ConfusionMatrix(), {}
    with tempfile.TemporaryDirectory(prefix="samcd-eval-") as tmp:
        for pair in pairs:
            out = Path(tmp) / f"{pair.name}.tif"
            detector.detect(pair.before, pair.after, out, options)
            mask = read_image(out)[0]
            cm = ConfusionMatrix()
            cm.update(mask == 1, read_label(pair.label), valid=mask != MASK_NODATA)
            per_pair[pair.name] = cm
            total = total + cm
            out.unlink()
            log.info("%s: F1 %.3f IoU %.3f", pair.name, cm.f1, cm.iou)
    return Evaluation(total, per_pair)


METRIC_KEYS = ("precision", "recall", "f1", "iou", "oa", "kappa", "mf1", "miou")
METRIC_TITLES = ("Pre", "Rec", "F1", "IoU", "OA", "Kappa", "mF1", "mIoU")


def format_table(rows: dict[str, ConfusionMatrix],
                 extra: dict[str, Sequence[str]] | None = None) -> str:
    """Plain-text table: change-class Pre/Rec/F1/IoU/OA/Kappa, then the two-class mF1/mIoU.

    ``extra`` maps column titles to one text per row (e.g. method, encoder, δ of checkpoints).
    """
    extra = extra or {}
    names = list(rows)
    width = max([len(k) for k in names] + [8])
    widths = {t: max([len(t)] + [len(v) for v in vals]) for t, vals in extra.items()}
    head = [f"{'':{width}}"] + [f"{t:<{widths[t]}}" for t in extra] + [f"{t:>7}" for t in METRIC_TITLES]
    lines = ["  ".join(head)]
    for i, name in enumerate(names):
        cells = [f"{name:{width}}"] + [f"{extra[t][i]:<{widths[t]}}" for t in extra]
        cells += [f"{getattr(rows[name], k):7.4f}" for k in METRIC_KEYS]
        lines.append("  ".join(cells))
    lines.append("(Pre…Kappa: change class; mF1/mIoU: mean of change and no-change classes; "
                 "one confusion matrix over all pixels)")
    return "\n".join(lines)


def compare_checkpoints(checkpoints: Sequence[Path], pairs: Sequence[PairPaths],
                        device: str = "auto", options: DetectionOptions | None = None
                        ) -> dict[Path, tuple[dict, Evaluation]]:
    """Each checkpoint's metadata and :class:`Evaluation` on the same ``pairs``."""
    results = {}
    for path in checkpoints:
        detector = ChangeDetector(path, device)
        log.info("Evaluating %s on %d pairs", Path(path).name, len(pairs))
        results[Path(path)] = (detector.metadata, evaluate_pairs(detector, pairs, options))
        del detector
    return results
