"""FastSAM encoders: the YOLOv8-seg backbone built by ultralytics (FastSAM-s, FastSAM-x).

Features are taken by walking ``model.model`` layers 0–9 (no patching of ultralytics) and
tapping layers 2, 4, 6 and 9 (strides 4, 8, 16, 32).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import Encoder, register

_TAPS = (2, 4, 6, 9)
_CONFIGS = {"fastsam-s": "yolov8s-seg.yaml", "fastsam-x": "yolov8x-seg.yaml"}


def _segmentation_model(config: str) -> nn.Module:
    from ultralytics.nn.tasks import SegmentationModel, yaml_model_load

    cfg = yaml_model_load(config)
    cfg["nc"] = 1  # set here so ultralytics prints no "Overriding nc" line (breaks --json output)
    return SegmentationModel(cfg, nc=1, verbose=False)


class FastSamEncoder(Encoder):
    """YOLOv8-seg backbone (the FastSAM image encoder); input RGB in [0, 1]."""

    def __init__(self, config: str) -> None:
        super().__init__()
        full = _segmentation_model(config)
        self.layers = nn.ModuleList(list(full.model[: _TAPS[-1] + 1]))
        self.strides = [4, 8, 16, 32]
        with torch.no_grad():
            feats = self._features(torch.zeros(1, 3, 64, 64))
        self.channels = [f.shape[1] for f in feats]

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._features(x)

    def last_stage(self) -> nn.Module:
        return nn.ModuleList(list(self.layers[_TAPS[-2] + 1:]))


def load_fastsam_weights(encoder: FastSamEncoder, path: Path) -> None:
    """Load an official FastSAM-s.pt / FastSAM-x.pt (ultralytics checkpoint) into ``encoder``."""
    from .weights import load_ultralytics_state_dict, copy_matching

    state = load_ultralytics_state_dict(path)
    backbone = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "model" and len(parts) > 2 and parts[1].isdigit() \
                and int(parts[1]) <= _TAPS[-1]:
            backbone[key[len("model."):]] = value
    copy_matching(encoder.layers, backbone, path, encoder.name, full=state)


for _name, _config in _CONFIGS.items():
    register(_name, (lambda c=_config: FastSamEncoder(c)), load_fastsam_weights)
