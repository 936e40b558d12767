"""The bundled checkpoint on the three LEVIR-CD test tiles it was never trained on (CPU, no QGIS):
scored the way ``evaluate`` scores, it beats a plain ``mean |before − after| > t`` threshold at
that threshold's best ``t`` — chosen on these very tiles, so the baseline is an oracle."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam_cd_plugin.core.metrics import ConfusionMatrix
from sam_cd_plugin.core.raster import read_image, read_label
from sam_cd_plugin.engine.datasets import find_pairs
from sam_cd_plugin.engine.detector import ChangeDetector
from sam_cd_plugin.engine.evaluation import evaluate_pairs
from sam_cd_plugin.models.checkpoint import read_metadata
from sam_cd_plugin.paths import default_checkpoint

TEST_TILES = ["test_*"]


@pytest.fixture(scope="module")
def test_tiles(shared_data: Path):
    return find_pairs(shared_data / "LEVIR-CD", include=TEST_TILES)


def difference_threshold_f1(pairs, threshold: float) -> float:
    """Pooled F1 of ``mean over RGB of |before − after| > threshold`` (8-bit values)."""
    total = ConfusionMatrix()
    for pair in pairs:
        before, after = (read_image(p)[:3].astype(np.float32) for p in (pair.before, pair.after))
        total = total + ConfusionMatrix().update(np.abs(before - after).mean(axis=0) > threshold,
                                                 read_label(pair.label))
    return total.f1


def test_the_bundled_model_beats_the_best_difference_threshold(test_tiles) -> None:
    names = {p.name for p in test_tiles}
    assert len(names) == 3
    trained_on = set(read_metadata(default_checkpoint())["training"]["pairs"])
    assert not any(name in pair for name in names for pair in trained_on)  # never seen in training
    baseline = max(difference_threshold_f1(test_tiles, t) for t in range(10, 200, 10))
    model = evaluate_pairs(ChangeDetector(default_checkpoint(), "cpu"), test_tiles).total.f1
    # measured: the bundled model 0.580, the threshold 0.543 (t = 100–110); the previous bundled model 0.124
    assert model > baseline, f"bundled model F1 {model:.3f} vs difference threshold {baseline:.3f}"
