"""SAM-CEM-CD change head: Siamese encoder → STFE → UNet decoder → MSDF → change logit.

See ../shared/SPEC.md: STFE fuses the two dates per scale with Conv3×3-BN-SiLU on their
concatenation; the UNet decoder goes from the deepest scale up with 2×2 transposed convs and
skip connections; MSDF upsamples every decoder output to 1/4, fuses them and predicts one
logit which is upsampled ×4 to the input size.

Follows the paper block by block (STFE, UNet decoder, MSDF; CEM loss, SGD lr 0.01 with poly
decay: :mod:`..engine.recipes`). *Differs*: FastSAM-s is the default encoder (the paper:
FastSAM-x, ``--encoder fastsam-x``), inputs are 256 px tiles by default, the decoder widths are
half the encoder's (clamped to 32–256; the paper does not state them), and the encoder is
fine-tuned unless ``--freeze-encoder``. Architecture unchanged since checkpoint format 1.

Invariants are learnt, not built in: STFE convolves the *concatenation* of the two dates'
features (the paper's fusion), so identical inputs do not give a constant map by construction and
swapping the dates is not an identity. Training teaches both (random date swap, and identical-pair
samples labelled no change: :class:`..engine.datasets.ChangeDataset`), and
``tests/engine/test_engine_invariants.py`` measures them on real pairs. A symmetric fusion
(e.g. |f1 − f2| with f1 + f2) would guarantee date-swap invariance but not identical → no change
(the decoder still sees f1 + f2), would leave the paper's architecture and would not load today's
checkpoints, so it was not adopted.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Encoder


def conv_bn_silu(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.SiLU(inplace=True))


def decoder_widths(channels: list[int]) -> list[int]:
    """Decoder width per scale: half the encoder's, between 32 and 256."""
    return [min(256, max(32, c // 2)) for c in channels]


class SamCemCd(nn.Module):
    """``forward(before, after) -> logits (B, 1, H, W)``; inputs ``(B, 3, H, W)`` in [0, 1]."""

    method = "sam-cem-cd"

    def __init__(self, encoder: Encoder, fusion_channels: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        widths = decoder_widths(encoder.channels)
        self.stfe = nn.ModuleList(conv_bn_silu(2 * c, w) for c, w in zip(encoder.channels, widths))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in range(len(widths) - 1))
        self.dec = nn.ModuleList(conv_bn_silu(2 * widths[i], widths[i]) for i in range(len(widths) - 1))
        self.msdf_proj = nn.ModuleList(nn.Conv2d(w, fusion_channels, 1) for w in widths)
        self.msdf_fuse = conv_bn_silu(len(widths) * fusion_channels, fusion_channels)
        self.head = nn.Conv2d(fusion_channels, 1, 1)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        size = before.shape[-2:]
        feats = self.encoder(torch.cat([before, after], dim=0))
        n = before.shape[0]
        fused = [stfe(torch.cat([f[:n], f[n:]], dim=1)) for stfe, f in zip(self.stfe, feats)]
        decoded = [fused[-1]]
        x = fused[-1]
        for i in range(len(fused) - 2, -1, -1):
            x = self.dec[i](torch.cat([self.up[i](x), fused[i]], dim=1))
            decoded.insert(0, x)
        quarter = decoded[0].shape[-2:]
        ms = [F.interpolate(p(d), size=quarter, mode="bilinear", align_corners=False) if i else p(d)
              for i, (p, d) in enumerate(zip(self.msdf_proj, decoded))]
        logit = self.head(self.msdf_fuse(torch.cat(ms, dim=1)))
        return F.interpolate(logit, size=size, mode="bilinear", align_corners=False)
