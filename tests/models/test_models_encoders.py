"""Encoders: offline builds, 4-level pyramids, official weight-file round trips, freezing.

Each official weights file is written here from a freshly built architecture (another seed, all
tensors perturbed) in the file format of the official release, then loaded with
``build_encoder(name, weights=path)``. Every encoder is built once per module (SAM2-b+ is big).
"""
from __future__ import annotations

import os
import re
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sam_cd_plugin.core.errors import CheckpointError, WeightsError
from sam_cd_plugin.models.encoders import ENCODER_NAMES, build_encoder
from sam_cd_plugin.models.encoders.base import encoder_names
from sam_cd_plugin.models.encoders.fastsam import load_fastsam_weights
from sam_cd_plugin.models.encoders.mobilesam import load_mobilesam_weights
from sam_cd_plugin.models.encoders.sam2 import load_sam2_weights
from sam_cd_plugin.models.encoders.weights import load_ultralytics_state_dict

CHANNELS = {
    "fastsam-s": [64, 128, 256, 512],
    "fastsam-x": [160, 320, 640, 640],
    "sam2-t": [96, 192, 384, 768],
    "sam2-s": [96, 192, 384, 768],
    "sam2-b+": [112, 224, 448, 896],
    "mobilesam": [64, 128, 160, 320],
}
SAM2_BUILDERS = {"sam2-t": "build_sam2_t", "sam2-s": "build_sam2_s", "sam2-b+": "build_sam2_b"}
OFFICIAL_NAMES = {"fastsam-s": "FastSAM-s.pt", "fastsam-x": "FastSAM-x.pt", "sam2-t": "sam2_t.pt",
                  "sam2-s": "sam2_s.pt", "sam2-b+": "sam2_b.pt", "mobilesam": "mobile_sam.pt"}


@torch.no_grad()
def _perturb(model: nn.Module) -> nn.Module:
    """Shift every float tensor in place so none equals a fresh build's (constant inits included)."""
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.mul_(1.01).add_(1e-3)
    return model


def _write_official(name: str, folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """Write ``name``'s official-format file; return it and the file's state dict (as stored)."""
    torch.manual_seed(1234)
    path = folder / OFFICIAL_NAMES[name]
    if name.startswith("fastsam"):
        # ultralytics checkpoint: pickle of the whole fp16 SegmentationModel plus metadata
        from ultralytics.nn.tasks import SegmentationModel

        cfg = "yolov8s-seg.yaml" if name == "fastsam-s" else "yolov8x-seg.yaml"
        model = _perturb(SegmentationModel(cfg, nc=1, verbose=False)).half()
        model.args = {"imgsz": 1024, "task": "segment"}
        torch.save({"date": "2023-06-21", "version": "8.0.120", "epoch": -1, "best_fitness": np.float64(0.7),
                    "model": model, "ema": None, "updates": None, "optimizer": None,
                    "train_args": {"data": "sa.yaml", "imgsz": 1024}, "train_metrics": {"fitness": 0.5},
                    "detect_forward": nn.Conv2d.forward},  # pickled as getattr(Conv2d, 'forward')
                   path)
        return path, {k: v.float() for k, v in model.state_dict().items()}
    from ultralytics.models.sam import build

    if name == "mobilesam":  # plain state dict of the whole SAM model
        state = _perturb(build.build_mobile_sam(None)).state_dict()
        torch.save(state, path)
    else:  # Meta's {'model': state dict of the whole SAM2 model}
        state = _perturb(getattr(build, SAM2_BUILDERS[name])(None)).state_dict()
        torch.save({"model": state}, path)
    return path, state


def _file_key(name: str, key: str) -> str:
    """Key in the official file of encoder state key ``key``."""
    if name.startswith("fastsam"):  # layers.N.… -> model.N.…
        return "model." + key[len("layers."):]
    if name == "mobilesam":  # trunk.… (TinyViT) -> image_encoder.…
        return "image_encoder." + key[len("trunk."):]
    return "image_encoder." + key  # trunk.… (Hiera) -> image_encoder.trunk.…


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("official_weights")


@pytest.fixture(scope="module")
def official(weights_dir):
    """name -> (path, state) of official-format files, written on first use."""
    cache: dict[str, tuple[Path, dict]] = {}

    def get(name: str) -> tuple[Path, dict]:
        if name not in cache:
            cache[name] = _write_official(name, weights_dir)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def loaded(official):
    """name -> encoder built with ``weights=`` its official-format file (built once)."""
    cache: dict[str, nn.Module] = {}

    def get(name: str):
        if name not in cache:
            torch.manual_seed(99)
            cache[name] = build_encoder(name, weights=official(name)[0]).eval()
        return cache[name]

    return get


def test_registry_lists_all_encoders():
    assert encoder_names() == list(ENCODER_NAMES)
    with pytest.raises(CheckpointError, match="Unknown encoder 'sam3'"):
        build_encoder("sam3")


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_official_weights_round_trip_and_pyramid(name, official, loaded):
    path, file_state = official(name)
    enc = loaded(name)
    own = enc.state_dict()
    assert own, name
    for key, value in own.items():
        assert torch.equal(value, file_state[_file_key(name, key)].to(value.dtype)), key
    if name in ("mobilesam", "sam2-t"):  # every tensor of a fresh build differs: all came from the file
        fresh = build_encoder(name).state_dict()
        assert all(not torch.equal(fresh[k], v) for k, v in own.items() if v.is_floating_point())

    assert enc.channels == CHANNELS[name] and enc.strides == [4, 8, 16, 32]
    # 128 px only where the code path differs (s/b+ share sam2-t's, fastsam-x fastsam-s's)
    for size in (256, 128) if name in ("fastsam-s", "sam2-t", "mobilesam") else (256,):
        with torch.no_grad():
            feats = enc(torch.rand(1, 3, size, size))
        assert len(feats) == 4
        assert [f.shape[1] for f in feats] == enc.channels
        assert [(size // f.shape[-2], size // f.shape[-1]) for f in feats] == [(s, s) for s in enc.strides]
        assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize("name", ["sam2-t", "mobilesam"])
def test_other_input_sizes_and_size_changes(name, loaded):
    enc = loaded(name)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        first = enc(x)
        big = enc(torch.rand(1, 3, 512, 512))
        wide = enc(torch.rand(1, 3, 128, 192))
        again = enc(x)
    assert [f.shape[-1] for f in big] == [128, 64, 32, 16]
    assert [tuple(f.shape[-2:]) for f in wide] == [(32, 48), (16, 24), (8, 12), (4, 6)]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)
    # the batch is encoded independently (no cross-sample leakage)
    with torch.no_grad():
        single = enc(x[1:])
    torch.testing.assert_close(single[3], first[3][1:], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of 32"):
        enc(torch.rand(1, 3, 100, 100))


def test_input_is_normalised_inside_sam_encoders(loaded):
    """SAM2 / MobileSAM take [0, 1] RGB and apply ImageNet mean/std themselves."""
    enc = loaded("sam2-t")
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        ours = enc(x)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        direct = enc.trunk((x - mean) / std)
    for a, b in zip(ours, direct):
        torch.testing.assert_close(a, b)
    assert not any(k in enc.state_dict() for k in ("mean", "std"))  # not part of checkpoints


def test_mobilesam_uses_weights_loaded_after_eval(official, loaded):
    """TinyViT caches attention biases on .eval(); weights loaded later must still be used."""
    path, _ = official("mobilesam")
    torch.manual_seed(5)
    enc = build_encoder("mobilesam").eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        before = enc(x)
        load_mobilesam_weights(enc, path)
        after = enc(x)
        expected = loaded("mobilesam")(x)
    assert not torch.allclose(before[2], after[2])
    for a, b in zip(after, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("source, target, loader, says", [
    ("sam2-t", "mobilesam", load_mobilesam_weights, r"not a mobilesam weights file.*SAM2 weights \(sam2-t\)"),
    ("mobilesam", "sam2-t", load_sam2_weights, r"not a sam2-t weights file.*MobileSAM"),
    ("sam2-t", "sam2-s", load_sam2_weights, r"not a sam2-s weights file.*\(sam2-t\)"),
    ("sam2-s", "sam2-t", load_sam2_weights, r"not a sam2-t weights file.*\(sam2-s\)"),
    ("sam2-t", "sam2-b+", load_sam2_weights, r"not a sam2-b\+ weights file"),
    ("fastsam-s", "fastsam-x", load_fastsam_weights, r"not a fastsam-x weights file.*fastsam-s"),
    ("fastsam-x", "fastsam-s", load_fastsam_weights, r"not a fastsam-s weights file.*fastsam-x"),
    ("mobilesam", "fastsam-s", load_fastsam_weights, r"not a fastsam-s weights file.*MobileSAM"),
])
def test_file_of_another_model_is_refused_clearly(source, target, loader, says, official, loaded):
    path, _ = official(source)
    enc = loaded(target)
    kept = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(WeightsError, match=says):
        loader(enc, path)
    assert all(torch.equal(kept[k], v) for k, v in enc.state_dict().items())  # left untouched


def test_build_encoder_with_wrong_file_raises(official):
    with pytest.raises(WeightsError, match="Pick the official file made for mobilesam"):
        build_encoder("mobilesam", weights=official("sam2-t")[0])


def test_unreadable_files_raise_weights_error(official, tmp_path):
    good = official("mobilesam")[0].read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "nothing.pt")
    for bad in ("truncated.pt", "empty.pt", "garbage.pt"):
        with pytest.raises(WeightsError, match="truncated/corrupt"):
            build_encoder("mobilesam", weights=tmp_path / bad)
    with pytest.raises(WeightsError, match="does not hold model weights"):
        build_encoder("mobilesam", weights=tmp_path / "nothing.pt")
    with pytest.raises(WeightsError, match="not found"):
        build_encoder("mobilesam", weights=tmp_path / "missing.pt")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


class _PeeksAtModules:
    def __reduce__(self):
        return getattr, (nn.Conv2d, "__subclasses__")


class _CallsModelClass:
    """Calls an allowed class with a config whose 'activation' string ultralytics would eval()."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        from ultralytics.nn.tasks import SegmentationModel

        act = f"__import__('pathlib').Path({str(self.marker)!r}).touch() or __import__('torch').nn.SiLU()"
        cfg = {"nc": 1, "activation": act, "backbone": [[-1, 1, "Conv", [16, 3, 2]]],
               "head": [[-1, 1, "Segment", [1, 32, 64]]]}
        return SegmentationModel, (cfg,)


def test_pickled_code_is_refused_not_executed(tmp_path):
    marker = tmp_path / "was_executed"
    state = {"layer.weight": torch.zeros(2)}
    torch.save({"model": state, "payload": _RunsCode(marker)}, tmp_path / "evil.pt")
    torch.save({"model": state, "payload": _PeeksAtModules()}, tmp_path / "peek.pt")
    torch.save({"model": _CallsModelClass(marker)}, tmp_path / "FastSAM-s.pt")
    for name, what in (("evil.pt", "posix.mkdir|nt.mkdir"), ("peek.pt", "__subclasses__"),
                       ("FastSAM-s.pt", "SegmentationModel")):
        with pytest.raises(WeightsError, match="refused instead of executed") as info:
            load_ultralytics_state_dict(tmp_path / name)
        assert re.search(what, str(info.value))
    assert not marker.exists()


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_freeze_and_trainable_last_stage(name, loaded):
    enc = deepcopy(loaded(name))
    assert all(p.requires_grad for p in enc.parameters())  # build_encoder's default: trainable
    enc.freeze()
    assert not any(p.requires_grad for p in enc.parameters())
    enc.freeze(trainable_last_stage=True)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert 0 < len(trainable) < len(list(enc.parameters()))
    # the trainable part is the deepest level: it changes the stride-32 output only
    enc.train()
    x = torch.rand(1, 3, 64, 64)
    feats = enc(x)
    feats[3].sum().backward()
    grads = [n for n, p in enc.named_parameters() if p.grad is not None]
    assert grads and set(grads) <= trainable
    assert not feats[2].requires_grad


def test_frozen_batch_norm_keeps_running_statistics(loaded):
    enc = deepcopy(loaded("mobilesam"))
    enc.freeze()
    enc.train()
    stats = {k: v.clone() for k, v in enc.state_dict().items() if "running" in k}
    enc(torch.rand(2, 3, 64, 64) * 3)
    assert all(torch.equal(stats[k], enc.state_dict()[k]) for k in stats)
    enc = build_encoder("mobilesam", freeze=True, trainable_last_stage=True).train()
    bns = [m for m in enc.last_stage().modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.training for m in bns)
