"""Evaluation: run a checkpoint over dataset pairs with the detector and accumulate one confusion
matrix over all pixels (the papers' protocol); nodata pixels are not counted."""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

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


def format_table(rows: dict[str, ConfusionMatrix]) -> str:
    """Plain-text table of change-class metrics (and the papers' two-class means)."""
    keys = ("precision", "recall", "f1", "iou", "oa", "kappa", "mf1", "miou")
    width = max([len(k) for k in rows] + [8])
    lines = [f"{'':{width}}  " + "  ".join(f"{k:>9}" for k in keys)]
    for name, cm in rows.items():
        lines.append(f"{name:{width}}  " + "  ".join(f"{getattr(cm, k):9.4f}" for k in keys))
    return "\n".join(lines)
