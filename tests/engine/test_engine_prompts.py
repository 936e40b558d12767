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
    assert det.prompts == [] and not det.metadata.get("prompts")
    assert "ignored" in caplog.text


def test_empty_prompts_run_a_prompted_checkpoint_without_prior_or_clip(clip_file, pair, tmp_path,
                                                                       caplog):
    """``[]`` = no prior on any SAM-CD checkpoint (warned); ``None`` = the checkpoint's prompts."""
    from sam_cd_plugin.engine.detector import ChangeDetector

    ckpt = _sam_cd_checkpoint(tmp_path, ["building"], clip_file)
    with caplog.at_level(logging.WARNING):
        free = ChangeDetector(ckpt, "cpu", prompts=[])  # no CLIP file needed
    assert free.model.prompts == [] and free.prompts == []
    assert "trained with semantic priors" in caplog.text
    assert "prompt-free" in free.model.prior_description()
    result = free.detect(*pair, tmp_path / "free.tif")
    assert result.metadata["SAMCD_PROMPTS"] == "" and result.valid_pixels == 160 * 140
    stored = ChangeDetector(ckpt, "cpu", clip_weights=clip_file, prompts=None)
    assert stored.prompts == ["building"] and stored.model.uses_prior


def test_prompt_text_distinguishes_not_set_from_no_prior():
    from sam_cd_plugin.core.prompts import format_prompts, parse_prompts

    assert parse_prompts("") is None and parse_prompts("  ") is None and parse_prompts(None) is None
    assert parse_prompts("none") == [] and parse_prompts(" - ") == [] and parse_prompts("None") == []
    assert parse_prompts("building, road,") == ["building", "road"]
    for prompts in (None, [], ["building", "road"]):
        assert parse_prompts(format_prompts(prompts)) == prompts


def test_prior_of_a_pixel_is_the_same_in_every_tile(clip_file, pair, tmp_path):
    """The detector's prior comes from map-anchored cells with context, not from the tile."""
    from sam_cd_plugin.core.alignment import AlignedPair
    from sam_cd_plugin.engine.detector import ChangeDetector

    detector = ChangeDetector(_sam_cd_checkpoint(tmp_path, ["building"], clip_file), "cpu",
                              clip_weights=clip_file)
    calls = []
    compute = detector.model.semantic_prior
    detector.model.semantic_prior = lambda images: calls.append(images.shape) or compute(images)
    with AlignedPair(*pair) as aligned:
        field = detector.prior_field(aligned)
        a = field.window(0, 0, 128, 128)
        b = field.window(32, 12, 128, 128)  # overlaps a on x 32..127, y 12..127
        np.testing.assert_array_equal(a[:, 12:, 32:], b[:, :116, :96])
        assert a.max() > 0
        cells = len(calls)
        field.window(40, 20, 100, 100)  # inside cells already computed: no new prior
        assert len(calls) == cells
        assert all(shape[-1] == 2 * 128 for shape in calls)  # each cell seen with its context
        # a prior computed per tile (the old way) differs where the tiles overlap
        tile_a = compute(torch.from_numpy(aligned.read(0, 0, 128, 128)[0][None])).numpy()
        tile_b = compute(torch.from_numpy(aligned.read(32, 12, 128, 128)[0][None])).numpy()
        assert not np.array_equal(tile_a[0, 0, 12:, 32:], tile_b[0, 0, :116, :96])


def test_text_embeddings_are_computed_once_per_model(clip_file, tmp_path):
    from sam_cd_plugin.engine.detector import ChangeDetector

    detector = ChangeDetector(_sam_cd_checkpoint(tmp_path, ["building"], clip_file), "cpu",
                              clip_weights=clip_file)
    clip = detector.model._clip
    calls = []
    encode = clip.encode_text
    clip.encode_text = lambda texts: calls.append(texts) or encode(texts)
    for _ in range(3):
        detector.model.semantic_prior(torch.rand(2, 3, 64, 64))
    assert len(calls) == 1
