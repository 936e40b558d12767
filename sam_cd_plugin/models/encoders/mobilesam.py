"""MobileSAM encoder: the TinyViT image encoder built by ultralytics (``mobilesam``).

Architecture: ``ultralytics.models.sam.build.build_mobile_sam(None)`` (offline, random
initialisation), of which only ``.image_encoder`` (TinyViT) is kept; its classifier head and
SAM neck are replaced by ``nn.Identity`` because no feature we expose goes through them.

Features (walking ``patch_embed`` and each ``layers[i].blocks`` before that layer's patch
merging): 64 ch at stride 4, 128 at 8, 160 at 16, and the last stage (320 ch, which TinyViT
keeps at stride 16) average-pooled 2x2 to make the stride-32 level. Channels 64/128/160/320.

Input: RGB in [0, 1]; SAM's normalisation (ImageNet mean/std) is applied inside. TinyViT's
attention blocks keep the feature-map size they were built for (1024 px); the encoder calls
TinyViT's own ``set_imgsz`` lazily whenever the input size changes, so any H, W multiple of 32
works (the detector's fixed input size costs one call; a size change costs one more).

Weights: the official ``mobile_sam.pt`` (a plain state dict of the whole SAM model, keys
``image_encoder.…``); the ``image_encoder.patch_embed.`` and ``image_encoder.layers.`` tensors
are loaded, all of them, with matching shapes.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import Encoder, register
from .sam2 import IMAGENET_MEAN, IMAGENET_STD

_FILE_PREFIX = "image_encoder."
_USED = ("patch_embed.", "layers.")


class MobileSamEncoder(Encoder):
    """TinyViT (MobileSAM) giving 4 levels at strides 4/8/16/32; input RGB in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        from ultralytics.models.sam.build import build_mobile_sam
        from ultralytics.models.sam.modules.tiny_encoder import Attention

        tinyvit = build_mobile_sam(None).image_encoder
        for unused in ("neck", "norm_head", "head"):
            setattr(tinyvit, unused, nn.Identity())
        self.trunk: nn.Module = tinyvit
        self._attention = [m for m in tinyvit.modules() if isinstance(m, Attention)]
        self._size: tuple[int, int] | None = None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.channels = [int(layer.dim) for layer in tinyvit.layers]
        self.strides = [4, 8, 16, 32]

    def _adapt(self, height: int, width: int) -> None:
        if (height, width) != self._size:
            self.trunk.set_imgsz([height, width])
            self._size = (height, width)
        if not self.training:
            # TinyViT caches its attention biases when switched to eval; refresh them so weights
            # loaded (or fine-tuned) after .eval() are used, on the current device and mode.
            for attn in self._attention:
                attn.train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(
                f"MobileSAM encoder input must be a multiple of 32 px, got {(height, width)}")
        self._adapt(int(height), int(width))
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        x = self.trunk.patch_embed(x)
        feats = []
        for layer in self.trunk.layers:
            for block in layer.blocks:
                x = block(x)
            if x.ndim == 3:  # tokens (B, h*w, C) → map (B, C, h, w)
                h, w = layer.input_resolution
                feats.append(x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w))
            else:
                feats.append(x)
            if layer.downsample is not None:
                x = layer.downsample(x)
        if len(feats) != 4:  # pragma: no cover - guards an ultralytics change
            raise RuntimeError(f"TinyViT gave {len(feats)} stages instead of 4")
        return [feats[0], feats[1], feats[2], F.avg_pool2d(feats[3], 2)]

    def last_stage(self) -> nn.Module:
        """The last TinyViT stage (320 ch) with the patch merging that feeds it."""
        return nn.ModuleList([self.trunk.layers[-2].downsample, self.trunk.layers[-1]])


def load_mobilesam_weights(encoder: MobileSamEncoder, path: Path) -> None:
    """Load the official mobile_sam.pt (plain state dict of the SAM model) into ``encoder``."""
    from .weights import copy_matching, load_ultralytics_state_dict

    state = load_ultralytics_state_dict(path)
    used = {k[len(_FILE_PREFIX):]: v for k, v in state.items()
            if k.startswith(_FILE_PREFIX) and k[len(_FILE_PREFIX):].startswith(_USED)}
    copy_matching(encoder.trunk, used, path, encoder.name, full=state, strict_extra=True)


register("mobilesam", MobileSamEncoder, load_mobilesam_weights)
