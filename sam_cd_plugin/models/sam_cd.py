"""SAM-CD with text prompts: global features + masked attention on semantic priors + MLP decoder.

This is the *seed paper's* SAM-CD ("Segment Anything Model Guided Semantic Knowledge Learning for
Remote Sensing Change Detection": transformer features, SAM masks selected by category text
prompts, masked attention), not Ding et al.'s FastSAM-adaptor baseline (TGRS 2024,
DingLei14/SAM-CD) that SAM-CEM-CD compares against. Point by point (../shared/SPEC.md):

- **Encoder** (follows the paper): a transformer; the default is SAM2's Hiera (``sam2-t``),
  MobileSAM's TinyViT (``mobilesam``) also fits; the CNN FastSAM encoders still work (*not* the
  paper's). Siamese (both dates in one batch), fine-tuned unless ``freeze_encoder``. Each of the
  four levels (strides 4/8/16/32) is projected to ``dim`` channels (1×1 conv).
- **Semantic prior** (follows the paper): per date, a SAM-family everything-segmenter (FastSAM,
  weights in the checkpoint) proposes masks, CLIP scores each mask's crop against the category
  prompts, and the prior is the per-pixel best category probability (:mod:`.semantic_prior`).
  The prompts' text embeddings are computed once per model. *Differs*: at detection the prior is
  computed per cell of a map-anchored grid from a window twice the tile (:mod:`..engine.prior_field`),
  so it does not change at tile borders; in training, per training crop.
- **MAM** (follows the paper): masked attention at *every* level — tokens attend only to tokens
  inside the prior mask, tokens outside get no local feature. *Differs*: at strides 4 and 8 the
  attention runs in 16×16-token windows (global attention there costs ``(h·w)²``); global at
  strides 16 and 32. Local and global features are fused (1×1 conv on their concatenation,
  residual).
- **Decoder** (follows the paper's MLP decoder): per level ``concat(f1, f2, |f1 − f2|)`` → 1×1
  conv, 1×1 projections, upsampling to stride 4, concatenation with both priors, 1×1 fusion and
  classifier, upsampled to the input size.
- **Loss and recipe** (*differs*): CEM (SAM-CEM-CD's loss) and SAM-CEM-CD's SGD/poly settings by
  default (:mod:`..engine.recipes`); ``--loss bce-dice`` is available.

Prompts: ``SamCd(prompts=[...])`` needs a CLIP model (:meth:`SamCd.attach_clip`) and a mask
generator (a submodule, saved in the checkpoint). Without prompts the model uses the documented
**prompt-free prior**: an all-ones mask, which turns MAM into plain self-attention; nothing
pretends prompts were applied (:meth:`SamCd.prior_description`). A model trained with prompts can
run without them (``prompts=[]`` at build time: its mask generator stays, CLIP is not needed).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import WeightsError
from .encoders import Encoder
from .semantic_prior import (DEFAULT_CLIP_MODEL, ClipScorer, MaskGenerator, SemanticPrior,
                             clip_weights_hint)


MAM_WINDOW = 16  # tokens per window side of MAM at strides 4 and 8


def conv_bn_relu(c_in: int, c_out: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def prior_at(prior: torch.Tensor, size: Sequence[int], threshold: float = 0.5) -> torch.Tensor:
    """Token-level boolean mask ``(B, 1, h, w)``: a token is inside if any pixel of its cell is."""
    return F.adaptive_max_pool2d(prior.float(), tuple(size)) > threshold


class MaskedAttention(nn.Module):
    """MAM: multi-head self-attention whose keys are restricted to tokens inside ``mask``.

    ``forward(x (B, C, h, w), mask (B, 1, h, w) bool) -> (B, C, h, w)``. The output depends only
    on the features inside the mask, and is zero at tokens outside it (and everywhere when the
    mask is empty). Positional information: a depthwise 3×3 conv applied *after* masking.
    With ``window`` the attention runs inside non-overlapping ``window × window`` token windows
    (the map zero-padded to whole windows), as at the fine levels where attention over all
    tokens would cost ``(h·w)²``.
    """

    def __init__(self, dim: int, heads: int = 4, window: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError("dim must be divisible by heads")
        self.heads = heads
        self.window = window
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(),
                                 nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        keep = mask.to(torch.bool).expand(b, 1, h, w)
        keep_f = keep.to(x.dtype)
        x = x * keep_f
        x = x + self.pos(x) * keep_f
        s = self.window
        if s is None or (h <= s and w <= s):
            return self._attend(x, keep)
        ph, pw = -h % s, -w % s
        x, keep = F.pad(x, (0, pw, 0, ph)), F.pad(keep, (0, pw, 0, ph))
        gh, gw = (h + ph) // s, (w + pw) // s

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B·gh·gw, C, s, s)
            return t.view(b, -1, gh, s, gw, s).permute(0, 2, 4, 1, 3, 5).reshape(-1, t.shape[1], s, s)

        out = self._attend(split(x), split(keep))
        out = out.view(b, gh, gw, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h + ph, w + pw)
        return out[:, :, :h, :w]

    def _attend(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        key_ok = keep.flatten(1)  # (B, N)
        empty = ~key_ok.any(dim=1)
        attn_mask = (key_ok | empty[:, None])[:, None, None, :]  # never a row with no key (NaN)
        q, k, v = self.qkv(self.norm(tokens)).view(b, h * w, 3, self.heads, c // self.heads) \
            .permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        att = self.proj(att.transpose(1, 2).reshape(b, h * w, c))
        out = tokens + att
        out = out + self.mlp(out)
        out = out * key_ok[..., None].to(out.dtype)
        return out.transpose(1, 2).reshape(b, c, h, w)


class SamCd(nn.Module):
    """``forward(before, after) -> logits (B, 1, H, W)``; inputs ``(B, 3, H, W)`` in [0, 1]."""

    method = "sam-cd"

    def __init__(self, encoder: Encoder, prompts: Sequence[str] = (),
                 mask_generator: MaskGenerator | None = None, dim: int = 64, heads: int = 4,
                 mam_levels: Sequence[int] = (0, 1, 2, 3), window: int = MAM_WINDOW,
                 clip_model: str = DEFAULT_CLIP_MODEL) -> None:
        super().__init__()
        self.encoder = encoder
        self.prompts = [p.strip() for p in prompts if p.strip()]
        self.clip_model = clip_model
        if self.prompts and mask_generator is None:
            raise ValueError("prompts need a mask generator")
        self.mask_generator = mask_generator
        self._clip: ClipScorer | None = None  # never a submodule: CLIP weights stay out of checkpoints
        self._prior: SemanticPrior | None = None
        n = len(encoder.channels)
        self.mam_levels = tuple(i for i in mam_levels if i < n)
        self.proj = nn.ModuleList(conv_bn_relu(c, dim) for c in encoder.channels)
        self.mam = nn.ModuleDict({
            str(i): MaskedAttention(dim, heads, window if encoder.strides[i] < 16 else None)
            for i in self.mam_levels})
        self.fuse_local = nn.ModuleDict({str(i): conv_bn_relu(2 * dim, dim) for i in self.mam_levels})
        self.temporal = nn.ModuleList(conv_bn_relu(3 * dim, dim) for _ in range(n))
        self.mlp = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in range(n))
        self.decode = nn.Sequential(conv_bn_relu(n * dim + 2, dim), nn.Conv2d(dim, 1, 1))

    # -- semantic prior -------------------------------------------------------------------------
    def attach_clip(self, clip: ClipScorer) -> None:
        """Use ``clip`` to score the mask generator's masks against the prompts."""
        self._clip = clip
        self._prior = None

    @property
    def uses_prior(self) -> bool:
        """True when :meth:`semantic_prior` computes priors from prompts (not the all-ones one)."""
        return bool(self.prompts)

    def prior_description(self) -> str:
        """One line for users: which prior this model uses."""
        if not self.prompts:
            return "prompt-free prior (all ones): no category prompts, changes of any kind count"
        clip = self._clip.source if self._clip else "missing"
        return (f"semantic prior from prompts {', '.join(repr(p) for p in self.prompts)} "
                f"(masks: {self.mask_generator.name}, CLIP {self.clip_model}: {clip})")

    def semantic_prior(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` in [0, 1]; all ones without prompts; WeightsError without CLIP."""
        if not self.prompts:
            return images.new_ones(images.shape[0], 1, *images.shape[-2:])
        if self._clip is None:
            raise WeightsError(
                f"This SAM-CD model uses the text prompts {self.prompts}; they need "
                f"{clip_weights_hint(self.clip_model)}. Give that file.")
        if self._prior is None:  # one per model: the prompts' text embeddings are computed once
            self._prior = SemanticPrior(self._clip, self.mask_generator, self.prompts)
        self._clip.to(images.device)
        return self._prior(images)

    # -- network ----------------------------------------------------------------------------------
    def forward(self, before: torch.Tensor, after: torch.Tensor,
                prior_before: torch.Tensor | None = None,
                prior_after: torch.Tensor | None = None) -> torch.Tensor:
        """Change logits; priors ``(B, 1, H, W)`` are computed from the prompts when not given."""
        n = before.shape[0]
        if prior_before is None:
            prior_before = self.semantic_prior(before)
        if prior_after is None:
            prior_after = self.semantic_prior(after)
        priors = torch.cat([prior_before, prior_after], dim=0).to(before.dtype)
        feats = self.encoder(torch.cat([before, after], dim=0))
        change = []
        for i, f in enumerate(feats):
            g = self.proj[i](f)
            if str(i) in self.mam:
                local = self.mam[str(i)](g, prior_at(priors, g.shape[-2:]))
                g = g + self.fuse_local[str(i)](torch.cat([g, local], dim=1))
            g1, g2 = g[:n], g[n:]
            change.append(self.temporal[i](torch.cat([g1, g2, (g1 - g2).abs()], dim=1)))
        quarter = change[0].shape[-2:]
        ups = [F.interpolate(m(c), size=quarter, mode="bilinear", align_corners=False)
               for m, c in zip(self.mlp, change)]
        p = F.interpolate(priors, size=quarter, mode="area")
        logit = self.decode(torch.cat([*ups, p[:n], p[n:]], dim=1))
        return F.interpolate(logit, size=before.shape[-2:], mode="bilinear", align_corners=False)
