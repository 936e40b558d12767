"""Category prompts at detection time: SAM-CD uses them (with the CLIP file), others ignore them."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from samcd_engine_helpers import levir_pair, read
from sam_cd_plugin.core.errors import InputError, WeightsError
from sam_cd_plugin.models.checkpoint import save_checkpoint
from sam_cd_plugin.models.registry import build_model


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A random ViT-S-32 CLIP in open_clip's file format (stands in for the user's file)."""
    pytest.importorskip("open_clip")
    from sam_cd_plugin.models.semantic_prior import ClipScorer

    scorer = ClipScorer.random("ViT-S-32", seed=1)
    path = tmp_path_factory.mktemp("clip") / "open_clip_pytorch_model.bin"
    torch.save({k: v.half() for k, v in scorer.model.state_dict().items()}, path)
    return path


def _sam_cd_checkpoint(folder, prompts, clip_file=None):
    torch.manual_seed(0)
    meta = {"method": "sam-cd", "encoder": "fastsam-s", "delta": 0.3, "input_size": 128,
            "prompts": prompts, "clip_model": "ViT-S-32", "mask_generator": "grid",
            "training": {"data": [], "note": "random initialisation, for tests"}, "metrics": {}}
    model = build_model(meta, clip_weights=clip_file).eval()
    return save_checkpoint(folder / f"sam_cd_{len(prompts)}.pt", model, meta)


@pytest.fixture(scope="module")
def pair(shared_data, tmp_path_factory):
    return levir_pair(shared_data, tmp_path_factory.mktemp("pair"), srcwin=(256, 256, 160, 140))


def test_prompted_checkpoint_runs_with_clip_file_and_prompts_can_be_replaced(clip_file, pair, tmp_path):
    from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

    ckpt = _sam_cd_checkpoint(tmp_path, ["building"], clip_file)
    with pytest.raises(WeightsError, match="CLIP"):
        ChangeDetector(ckpt, "cpu")  # the CLIP file is not in the checkpoint
    stored = ChangeDetector(ckpt, "cpu", clip_weights=clip_file)
    assert stored.model.prompts == ["building"]
    replaced = ChangeDetector(ckpt, "cpu", clip_weights=clip_file, prompts=[" road ", "", "water"])
    assert replaced.model.prompts == ["road", "water"]
    assert "'road'" in replaced.model.prior_description()

    options = DetectionOptions(threshold=0.5, polygons_path=tmp_path / "changes.gpkg")
    a = stored.detect(*pair, tmp_path / "stored.tif", options)
    b = replaced.detect(*pair, tmp_path / "replaced.tif",
                        DetectionOptions(probability_path=tmp_path / "p.tif"))
    assert a.valid_pixels == b.valid_pixels == 160 * 140
    mask, _ = read(a.out_path)
    assert set(np.unique(mask)) <= {0, 1}
    assert a.metadata["SAMCD_PROMPTS"] == "building" and b.metadata["SAMCD_PROMPTS"] == "road, water"
    import sqlite3

    with sqlite3.connect(a.polygons_path) as db:
        prompts = {row[0] for row in db.execute("SELECT prompts FROM changes")}
    assert prompts <= {"building"}


def test_prompts_for_sam_cd_trained_without_prompts_are_refused(tmp_path):
    from sam_cd_plugin.engine.detector import ChangeDetector

    ckpt = _sam_cd_checkpoint(tmp_path, [])
    with pytest.raises(InputError, match="trained without category prompts"):
        ChangeDetector(ckpt, "cpu", prompts=["building"])
    assert ChangeDetector(ckpt, "cpu", prompts=[]).model.prompts == []


def test_other_methods_ignore_prompts_with_a_warning(tiny_checkpoint, caplog):
    from sam_cd_plugin.engine.detector import ChangeDetector

    with caplog.at_level(logging.WARNING):
        det = ChangeDetector(tiny_checkpoint, "cpu", prompts=["building"])
    assert det.metadata["prompts"] == []
    assert "ignored" in caplog.text
