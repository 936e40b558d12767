"""The hold-out for training on one area is made of whole blocks, disjoint from training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam_cd_plugin.core.holdout import holdout_blocks
from sam_cd_plugin.core.raster import read_label


def test_holdout_is_whole_blocks_of_about_the_fraction(shared_data: Path):
    labels = (read_label(shared_data / "geotiff" / "oscd_rio" / "label.tif") > 0).astype(np.uint8)
    mask = holdout_blocks(labels, 64, 0.25, seed=3)
    share = mask.mean()
    assert 0.1 < share < 0.5
    for y in range(0, labels.shape[0], 64):
        for x in range(0, labels.shape[1], 64):
            cell = mask[y:y + 64, x:x + 64]
            assert cell.all() or not cell.any()
    assert labels[mask].any()  # validation holds change
    assert not mask.all()
    assert np.array_equal(mask, holdout_blocks(labels, 64, 0.25, seed=3))


def test_ignored_cells_are_never_held_out():
    labels = np.full((128, 128), 255, dtype=np.uint8)
    labels[:64, :] = 0
    labels[10:20, 10:20] = 1
    labels[10:20, 80:90] = 1
    mask = holdout_blocks(labels, 32, 0.3, seed=0)
    assert not mask[64:].any()
    assert mask.any() and not mask[:64].all()


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        holdout_blocks(np.zeros((4, 4), np.uint8), 0)
