"""SAM2-CD change head: Siamese encoder → ASG → GLCAM → MSFFM → change logit.

See ../shared/SPEC.md. Written for SAM2's Hiera encoder but works on any :class:`Encoder`
(FastSAM, MobileSAM, ...): only ``encoder.channels`` and the four feature maps are used, and
every resize goes to the actual size of the finer map, so any stride layout works.

- **ASG** (activation selection gate), per pyramid level, on the two dates ``x1``, ``x2``:
  a spatial gate ``m = σ(MLP(concat(x1, x2)))`` (1×1 convs with GELU, down to one channel)
  drives a mutual exchange ``x1 += F(x2·m)``, ``x2 += F(x1·m)`` (``F`` a shared 1×1–GELU–1×1);
  a channel gate ``g = σ(MLP(GAP(concat(|x1−x2|, x1+x2))))`` then selects the channels that
  carry change, and the gated pair is fused into one change feature
  ``|g·x1 − g·x2| + Conv1×1(concat(g·x1, g·x2))``.
- **GLCAM** (global-local contextual attention), per level: the global branch pools the change
  feature adaptively (1×1 and 2×2 grids) into scene context and turns it into channel weights;
  the local branch is a spatial attention map from channel mean/max (7×7 conv). Both reweight
  the feature; the global context of the deeper level is also passed to the next finer level
  (hierarchical reweighting).
- **MSFFM** (multi-scale feature fusion): top-down fusion (upsample + add + 3×3 conv) to one
  map per level, all brought to stride 4, concatenated and fused; a 1×1 head gives the logit,
  bilinearly upsampled to the input size.

``forward(before, after)`` returns the main logit ``(B, 1, H, W)``. ``forward_train`` also returns
deep-supervision logits from the stride-16 and stride-8 fused maps (the reference supervises masks
at strides 16, 8 and 4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Encoder


def conv_bn_relu(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def level_widths(channels: list[int], low: int = 32, high: int = 128) -> list[int]:
    """Head width per level: half the encoder's, clamped to [low, high]."""
    return [min(high, max(low, c // 2)) for c in channels]


class ActivationSelectionGate(nn.Module):
    """ASG: mutual spatially gated exchange between dates, then channel selection and fusion.

    ``forward(x1, x2) -> (change feature, x1', x2')``, all ``(B, C, h, w)``.
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.spatial = nn.Sequential(nn.Conv2d(2 * channels, hidden, 1), nn.GELU(),
                                     nn.Conv2d(hidden, 1, 1))
        self.exchange = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.GELU(),
                                      nn.Conv2d(channels, channels, 1))
        self.channel = nn.Sequential(nn.Linear(2 * channels, hidden), nn.GELU(),
                                     nn.Linear(hidden, channels))
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = torch.sigmoid(self.spatial(torch.cat([x1, x2], dim=1)))
        x1, x2 = x1 + self.exchange(x2 * m), x2 + self.exchange(x1 * m)
        pooled = torch.cat([(x1 - x2).abs(), x1 + x2], dim=1).mean(dim=(2, 3))
        g = torch.sigmoid(self.channel(pooled))[:, :, None, None]
        g1, g2 = x1 * g, x2 * g
        change = (g1 - g2).abs() + self.fuse(torch.cat([g1, g2], dim=1))
        return change, x1, x2


class GlobalLocalContextAttention(nn.Module):
    """GLCAM: channel weights from pooled scene context × spatial attention, with a residual.

    ``forward(x, context=None) -> (y, context_out)``; ``context`` is the deeper level's global
    context vector (``context_dim``) and is folded into this level's channel weights.
    """

    def __init__(self, channels: int, context_dim: int = 64, deeper_dim: int | None = None,
                 grids: tuple[int, ...] = (1, 2)) -> None:
        super().__init__()
        self.grids = grids
        pooled = channels * sum(g * g for g in grids)
        self.context = nn.Sequential(nn.Linear(pooled, context_dim), nn.GELU())
        self.from_deeper = nn.Linear(deeper_dim, context_dim) if deeper_dim else None
        self.channel = nn.Linear(context_dim, channels)
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)
        self.out = conv_bn_relu(channels, channels)

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat([F.adaptive_avg_pool2d(x, g).flatten(1) for g in self.grids], dim=1)
        context = self.context(pooled)
        if self.from_deeper is not None and deeper is not None:
            context = context + self.from_deeper(deeper)
        channel_w = torch.sigmoid(self.channel(context))[:, :, None, None]
        spatial_w = torch.sigmoid(self.spatial(
            torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)))
        return self.out(x + x * channel_w * spatial_w), context


class MultiScaleFeatureFusion(nn.Module):
    """MSFFM: top-down pyramid fusion; returns the fused stride-4 map and the per-level maps."""

    def __init__(self, widths: list[int], channels: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)
        self.smooth = nn.ModuleList(conv_bn_relu(channels, channels) for _ in widths)
        self.fuse = conv_bn_relu(len(widths) * channels, channels)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        levels: list[torch.Tensor] = [torch.empty(0)] * len(feats)
        x = self.smooth[-1](self.lateral[-1](feats[-1]))
        levels[-1] = x
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])
            x = self.smooth[i](lat + F.interpolate(x, size=lat.shape[-2:], mode="bilinear",
                                                   align_corners=False))
            levels[i] = x
        finest = levels[0].shape[-2:]
        up = [levels[0]] + [F.interpolate(p, size=finest, mode="bilinear", align_corners=False)
                            for p in levels[1:]]
        return self.fuse(torch.cat(up, dim=1)), levels


class Sam2Cd(nn.Module):
    """``forward(before, after) -> logits (B, 1, H, W)``; inputs ``(B, 3, H, W)`` in [0, 1]."""

    method = "sam2-cd"

    def __init__(self, encoder: Encoder, fusion_channels: int = 64, context_dim: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        widths = level_widths(list(encoder.channels))
        self.proj = nn.ModuleList(conv_bn_relu(c, w, k=1) for c, w in zip(encoder.channels, widths))
        self.asg = nn.ModuleList(ActivationSelectionGate(w) for w in widths)
        n = len(widths)
        self.glcam = nn.ModuleList(
            GlobalLocalContextAttention(w, context_dim, deeper_dim=context_dim if i < n - 1 else None)
            for i, w in enumerate(widths))
        self.msffm = MultiScaleFeatureFusion(widths, fusion_channels)
        self.head = nn.Sequential(conv_bn_relu(fusion_channels, fusion_channels),
                                  nn.Conv2d(fusion_channels, 1, 1))
        # deep supervision on the fused maps of the two middle levels (strides 16 and 8)
        self.aux_heads = nn.ModuleList(nn.Conv2d(fusion_channels, 1, 1) for _ in range(2))

    def _decode(self, before: torch.Tensor, after: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        n = before.shape[0]
        feats = self.encoder(torch.cat([before, after], dim=0))
        change = []
        for proj, asg, f in zip(self.proj, self.asg, feats):
            f = proj(f)
            change.append(asg(f[:n], f[n:])[0])
        context = None
        for i in range(len(change) - 1, -1, -1):
            change[i], context = self.glcam[i](change[i], context)
        fused, levels = self.msffm(change)
        return self.head(fused), levels

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        logit, _ = self._decode(before, after)
        return F.interpolate(logit, size=before.shape[-2:], mode="bilinear", align_corners=False)

    def forward_train(self, before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """``[main, aux_stride16, aux_stride8]`` logits, each ``(B, 1, H, W)`` (deep supervision)."""
        size = before.shape[-2:]
        logit, levels = self._decode(before, after)
        outs = [logit, self.aux_heads[0](levels[2]), self.aux_heads[1](levels[1])]
        return [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs]
