"""SAM2-CD: Hiera with an in-trunk activation-selection gate → FPN → all-to-all fusion → masks.

After "SAM2-CD: Remote Sensing Image Change Detection With SAM2" (IEEE JSTARS 2025) and the facts
of its authors' reference code listed in ../shared/SPEC.md. Structure, point by point:

- **Encoder** (follows the paper): SAM2's Hiera trunk (sam2-t / sam2-s / sam2-b+; the reference
  uses Hiera-S), both dates in one batch ``[T1; T2]``, fine-tuned (not frozen) by default.
- **ASG, the activation-selection gate** (follows the reference): one :class:`TemporalGate` after
  each *global-attention* block of the trunk (all of them sit in the stride-16 stage), attached
  with forward hooks on ultralytics' blocks (the package is never patched). On the block's
  channels-last tokens of both dates ``m = σ(MLP(concat(x_T1, x_T2)))`` (1×1 layers with GELU
  down to one channel), then ``x_T1 += F(x_T2·m)`` and ``x_T2 += F(x_T1·m)`` with ``F`` a shared
  1×1–GELU–1×1, so the dates exchange gated evidence while they are encoded. *Differs* for
  encoders without global attention (FastSAM, MobileSAM: not the paper's encoder): one gate on
  the encoder's stride-16 output instead.
- **FPN neck** (follows the reference): SAM2's FPN neck (ultralytics' ``FpnNeck``: 1×1 laterals
  to 256 ch, nearest top-down into the two coarsest levels), all four levels kept (ultralytics'
  image encoder drops stride 32); loaded from the SAM2 weights file with the trunk.
- **Multi-scale fusion, MSFFM** (follows the reference): per date, every level sends a 32-ch
  branch (1×1 conv, then average-pooled down or bilinearly upsampled) to each output scale
  (strides 4, 8, 16); the four branches are concatenated and fused to 64 ch (3×3 conv) plus a
  1×1 residual of that scale's own level.
- **Temporal fusion** (follows the reference): ``Conv1×1(|f_T1 − f_T2|)`` per scale.
- **GLCAM's global-context block** (follows the reference's module type): GCNet-style context
  (softmax attention pooling over all positions → 1×1 bottleneck with LayerNorm → added to every
  position) at stride 16, feeding the decoder; the reference uses grouped depthwise convs inside
  it, ours a plain bottleneck (*differs* in detail).
- **Decoder** (follows the reference): stride 16 → 8 → 4, each step upsample + concat the next
  scale + 3×3 conv + channel/spatial attention; a 1×1 mask head at each of strides 16, 8 and 4.
  :meth:`Sam2Cd.forward_train` returns all three masks (each supervised), :meth:`Sam2Cd.forward`
  only the stride-4 one (inference).
- **Loss and recipe**: BCE + Dice on each mask, weight 1 each, AdamW with a one-cycle cosine
  schedule, colour jitter per date and ±30° rotation are this method's training defaults
  (:mod:`..engine.recipes`); CEM is an option. *Differs*: input 256 px by default (the paper:
  1024; any multiple of 32 works), batch 4 (the paper: 1).
"""
from __future__ import annotations

from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Encoder

NECK_CHANNELS = 256  # SAM2's FPN width
BRANCH_CHANNELS = 32
FUSED_CHANNELS = 64
OUTPUT_LEVELS = 3  # strides 4, 8, 16
# True while Sam2Cd runs its encoder on a [T1; T2] batch (per thread: detections may run in parallel)
_PAIRED: ContextVar[bool] = ContextVar("sam2_cd_paired", default=False)


def conv_bn_relu(c_in: int, c_out: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class TemporalGate(nn.Module):
    """ASG: ``forward(x1, x2) -> (x1', x2')`` on channels-last ``(..., C)`` tokens of each date.

    :meth:`hook` is the forward hook put on a trunk block: it splits the block's output batch
    ``[T1; T2]`` in halves and gates them, only while :class:`Sam2Cd` runs its encoder (so the
    encoder called alone is unchanged)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mask = nn.Sequential(nn.Linear(2 * channels, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.exchange = nn.Sequential(nn.Linear(channels, channels), nn.GELU(),
                                      nn.Linear(channels, channels))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = torch.sigmoid(self.mask(torch.cat([x1, x2], dim=-1)))
        return x1 + self.exchange(x2 * m), x2 + self.exchange(x1 * m)

    def hook(self, block: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not _PAIRED.get():
            return None
        n = output.shape[0] // 2
        return torch.cat(self(output[:n], output[n:]), dim=0)

    def channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """The gate on a ``(2B, C, h, w)`` map (encoders without global-attention blocks)."""
        n = x.shape[0] // 2
        x1, x2 = self(x[:n].permute(0, 2, 3, 1), x[n:].permute(0, 2, 3, 1))
        return torch.cat([x1, x2], dim=0).permute(0, 3, 1, 2)


class Sam2Neck(nn.Module):
    """SAM2's FPN neck (ultralytics' ``FpnNeck`` layers) returning all four levels at 256 ch.

    Only its convolutions are used (SAM2's sine position encodings serve its prompt decoder)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        from ultralytics.models.sam.modules.encoders import FpnNeck

        self.fpn = FpnNeck(d_model=NECK_CHANNELS, backbone_channel_list=list(channels[::-1]),
                           fpn_top_down_levels=[2, 3], fpn_interp_model="nearest")

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        convs, n = self.fpn.convs, len(feats) - 1
        out: list[torch.Tensor] = [torch.empty(0)] * len(feats)
        prev = None
        for i in range(n, -1, -1):
            lateral = convs[n - i](feats[i])
            if i in self.fpn.fpn_top_down_levels and prev is not None:
                lateral = lateral + F.interpolate(prev.to(lateral.dtype), size=lateral.shape[-2:],
                                                  mode="nearest")
            out[i] = prev = lateral
        return out


def resize_to(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Average-pool down or bilinearly upsample ``x`` to ``size``."""
    if x.shape[-2:] == size:
        return x
    if x.shape[-2] > size[0]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class AllToAllFusion(nn.Module):
    """MSFFM: every input level sends a branch to every output scale; ``forward(levels) ->
    [fused at scale s for s < outputs]`` (64 ch each). ``branches[s][l]`` is level l → scale s."""

    def __init__(self, levels: int, outputs: int = OUTPUT_LEVELS, channels: int = NECK_CHANNELS,
                 branch: int = BRANCH_CHANNELS, fused: int = FUSED_CHANNELS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.ModuleList(conv_bn_relu(channels, branch, k=1) for _ in range(levels))
            for _ in range(outputs))
        self.fuse = nn.ModuleList(conv_bn_relu(levels * branch, fused) for _ in range(outputs))
        self.residual = nn.ModuleList(nn.Conv2d(channels, fused, 1) for _ in range(outputs))

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for s, (branches, fuse, residual) in enumerate(zip(self.branches, self.fuse, self.residual)):
            size = levels[s].shape[-2:]
            sent = [resize_to(b(x), size) for b, x in zip(branches, levels)]
            out.append(fuse(torch.cat(sent, dim=1)) + residual(levels[s]))
        return out


class GlobalContextBlock(nn.Module):
    """GLCAM's global context (GCNet): attention-pooled scene context added to every position."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.attend = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LayerNorm([hidden, 1, 1]),
                                       nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.attend(x).flatten(2).softmax(dim=-1)  # (B, 1, HW)
        context = torch.einsum("bcn,bon->bc", x.flatten(2), weights)[:, :, None, None]
        return x + self.transform(context)


class ChannelSpatialAttention(nn.Module):
    """The decoder's attention: channel weights (pooled MLP) then a 7×7 spatial map."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.channel = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.channel(x.mean(dim=(2, 3), keepdim=True)) + \
            self.channel(x.amax(dim=(2, 3), keepdim=True))
        x = x * torch.sigmoid(pooled)
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(maps))


class Sam2Cd(nn.Module):
    """``forward(before, after) -> logits (B, 1, H, W)``; inputs ``(B, 3, H, W)`` in [0, 1]."""

    method = "sam2-cd"

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        sites = encoder.exchange_sites()
        stride16 = encoder.strides.index(16)
        self.gates = nn.ModuleList(TemporalGate(c) for _, c in sites) if sites \
            else nn.ModuleList([TemporalGate(encoder.channels[stride16])])
        self.gate_after_encoder = None if sites else stride16
        for (block, _), gate in zip(sites, self.gates):
            block.register_forward_hook(gate.hook)
        self.neck = Sam2Neck(list(encoder.channels))
        self.fusion = AllToAllFusion(len(encoder.channels))
        c = FUSED_CHANNELS
        self.temporal = nn.ModuleList(conv_bn_relu(c, c, k=1) for _ in range(OUTPUT_LEVELS))
        self.context = GlobalContextBlock(c)
        self.up = nn.ModuleList(conv_bn_relu(2 * c, c) for _ in range(OUTPUT_LEVELS - 1))
        self.attention = nn.ModuleList(ChannelSpatialAttention(c) for _ in range(OUTPUT_LEVELS - 1))
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1) for _ in range(OUTPUT_LEVELS))  # 16, 8, 4

    def encode(self, before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """Both dates' gated encoder features ``(2B, C, h, w)`` per level (T1 first)."""
        token = _PAIRED.set(True)
        try:
            feats = list(self.encoder(torch.cat([before, after], dim=0)))
        finally:
            _PAIRED.reset(token)
        if self.gate_after_encoder is not None:
            i = self.gate_after_encoder
            feats[i] = self.gates[0].channels_first(feats[i])
        return feats

    def _masks(self, before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """Mask logits at strides 16, 8, 4 (not upsampled)."""
        n = before.shape[0]
        fused = self.fusion(self.neck(self.encode(before, after)))
        change = [t((f[:n] - f[n:]).abs()) for t, f in zip(self.temporal, fused)]
        x = self.context(change[-1])
        masks = [self.heads[0](x)]
        for k, skip in enumerate(reversed(change[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.attention[k](self.up[k](torch.cat([x, skip], dim=1)))
            masks.append(self.heads[k + 1](x))
        return masks

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        logit = self._masks(before, after)[-1]
        return F.interpolate(logit, size=before.shape[-2:], mode="bilinear", align_corners=False)

    def forward_train(self, before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """``[stride 4 (main), stride 8, stride 16]`` logits, each upsampled to ``(B, 1, H, W)``;
        each is supervised (deep supervision, weight 1 each as in the reference)."""
        size = before.shape[-2:]
        return [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                for m in reversed(self._masks(before, after))]
