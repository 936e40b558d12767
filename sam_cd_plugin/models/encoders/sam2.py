"""SAM2 encoders: the Hiera trunk of SAM2 built by ultralytics (sam2-t, sam2-s, sam2-b+).

Architecture: ``ultralytics.models.sam.build.build_sam2_{t,s,b}(checkpoint=None)`` (offline,
random initialisation), of which only ``.image_encoder.trunk`` (Hiera) is kept.

Features: the four Hiera stage outputs at strides 4/8/16/32 (t and s: 96/192/384/768 channels,
b+: 112/224/448/896). ultralytics' ``ImageEncoder`` runs the FPN neck and drops the stride-32
level (``scalp=1``); we call the trunk directly instead and skip the neck: its stride-4/8/32
outputs are 1x1 projections of these same trunk features (the stride-16 one adds the upsampled
stride-32 projection), so the trunk loses nothing a trainable decoder needs and keeps the
narrower, cheaper high-resolution levels.

Input: RGB in [0, 1]; SAM2's own normalisation (ImageNet mean/std, the same as its
``pixel_mean/pixel_std`` on 0-255) is applied inside. Any H, W that are multiples of 32 work
(128, 256, 512, 1024 ...): Hiera interpolates its background position embedding to the
stride-4 grid and tiles the 8x8 window embedding over it, which needs that grid to be a multiple
of 8; windowed attention pads partial windows itself.

Weights: Meta's ``sam2_*.pt`` / ``sam2.1_*.pt`` (``{'model': state_dict}`` of the whole SAM2
model); the ``image_encoder.trunk.`` tensors are loaded, all of them, with matching shapes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import Encoder, register

_BUILDERS = {"sam2-t": "build_sam2_t", "sam2-s": "build_sam2_s", "sam2-b+": "build_sam2_b"}
_FILE_PREFIX = "image_encoder.trunk."
_NECK_PREFIX = "image_encoder.neck."
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Sam2Encoder(Encoder):
    """Hiera trunk of SAM2 giving 4 levels at strides 4/8/16/32; input RGB in [0, 1]."""

    def __init__(self, builder: str) -> None:
        super().__init__()
        from ultralytics.models.sam import build

        sam2 = getattr(build, builder)(checkpoint=None)
        self.trunk: nn.Module = sam2.image_encoder.trunk
        del sam2  # memory attention, decoders etc. are not needed
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.channels = [int(c) for c in self.trunk.channel_list[::-1]]
        self.strides = [4, 8, 16, 32]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(
                f"SAM2 encoder input must be a multiple of 32 px, got {tuple(x.shape[-2:])}")
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        feats = self.trunk(x)
        if len(feats) != 4:  # pragma: no cover - guards an ultralytics change
            raise RuntimeError(f"Hiera returned {len(feats)} levels instead of 4")
        return list(feats)

    def exchange_sites(self) -> list[tuple[nn.Module, int]]:
        """Hiera's global-attention blocks of the stride-16 stage, with their width."""
        first, last = self.trunk.stage_ends[1] + 1, self.trunk.stage_ends[2]
        return [(self.trunk.blocks[i], int(self.trunk.blocks[i].dim_out))
                for i in self.trunk.global_att_blocks if first <= i <= last]

    def last_stage(self) -> nn.Module:
        """The blocks of the last Hiera stage, including its stride-2 query-pooling block."""
        first = self.trunk.stage_ends[-2] + 1
        return nn.ModuleList(list(self.trunk.blocks[first:]))


def load_sam2_weights(encoder: Sam2Encoder, path: Path) -> None:
    """Load Meta's sam2_{t,s,b}.pt (``{'model': state_dict}``) trunk tensors into ``encoder``."""
    from .weights import copy_matching, load_ultralytics_state_dict

    state = load_ultralytics_state_dict(path)
    trunk = {k[len(_FILE_PREFIX):]: v for k, v in state.items() if k.startswith(_FILE_PREFIX)}
    copy_matching(encoder.trunk, trunk, path, encoder.name, full=state, strict_extra=True)


def load_sam2_neck_weights(neck: nn.Module, path: Path, name: str) -> None:
    """Load the ``image_encoder.neck.`` tensors of Meta's sam2 file into an ``FpnNeck``."""
    from .weights import copy_matching, load_ultralytics_state_dict

    state = load_ultralytics_state_dict(path)
    tensors = {k[len(_NECK_PREFIX):]: v for k, v in state.items() if k.startswith(_NECK_PREFIX)
               and ".position_encoding." not in k}
    copy_matching(neck, tensors, path, name, full=state)


for _name, _builder in _BUILDERS.items():
    register(_name, (lambda b=_builder: Sam2Encoder(b)), load_sam2_weights)
