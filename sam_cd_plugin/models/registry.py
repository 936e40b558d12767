"""Build a change model from checkpoint metadata (method + encoder names).

Methods: ``sam-cem-cd``, ``sam2-cd`` and ``sam-cd``. For ``sam-cd`` the metadata may carry
``prompts`` (list of category texts; empty = documented prompt-free prior), ``clip_model``
(open_clip architecture name, default ``ViT-B-32``) and ``mask_generator`` (``fastsam-s`` by
default, ``fastsam-x`` or the weight-free ``grid``). A trained SAM-CD checkpoint holds everything
except the CLIP weights (a ~340 MB file the user gives as ``clip_weights``): prompts + no CLIP file
→ WeightsError naming the file. The FastSAM mask generator's weights are part of the checkpoint;
when training, they come from ``mask_generator_weights`` or, when the encoder is the same FastSAM
variant, from ``encoder_weights``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..core.errors import CheckpointError
from .encoders import build_encoder

METHODS = ("sam-cem-cd", "sam2-cd", "sam-cd")


def build_model(meta: dict[str, Any], encoder_weights: Path | str | None = None,
                clip_weights: Path | str | None = None,
                mask_generator_weights: Path | str | None = None) -> nn.Module:
    """An untrained model of ``meta['method']`` on ``meta['encoder']`` (random init unless weights)."""
    method = str(meta.get("method", "")).lower()
    if method == "sam-cd":
        return _build_sam_cd(meta, encoder_weights, clip_weights, mask_generator_weights)
    if method == "sam-cem-cd":
        from .sam_cem_cd import SamCemCd

        encoder = build_encoder(meta["encoder"], weights=encoder_weights,
                                freeze=bool(meta.get("freeze_encoder", False)))
        return SamCemCd(encoder)
    if method == "sam2-cd":
        from .sam2_cd import Sam2Cd

        encoder = build_encoder(meta["encoder"], weights=encoder_weights,
                                freeze=bool(meta.get("freeze_encoder", False)))
        return Sam2Cd(encoder)
    raise CheckpointError(f"Unknown method '{meta.get('method')}'. Known: {', '.join(METHODS)}.")


def _build_sam_cd(meta: dict[str, Any], encoder_weights, clip_weights,
                  mask_generator_weights) -> nn.Module:
    from .sam_cd import SamCd
    from .semantic_prior import DEFAULT_CLIP_MODEL, ClipScorer, build_mask_generator

    prompts = [str(p).strip() for p in (meta.get("prompts") or []) if str(p).strip()]
    clip_model = str(meta.get("clip_model") or DEFAULT_CLIP_MODEL)
    clip = ClipScorer.load(clip_weights, clip_model) if prompts else None  # fail fast, before building
    generator = None
    if prompts:
        name = str(meta.get("mask_generator") or "fastsam-s")
        weights = mask_generator_weights
        if weights is None and name == str(meta["encoder"]).lower():
            weights = encoder_weights
        generator = build_mask_generator(name, weights)
    encoder = build_encoder(meta["encoder"], weights=encoder_weights,
                            freeze=bool(meta.get("freeze_encoder", False)))
    model = SamCd(encoder, prompts=prompts, mask_generator=generator, clip_model=clip_model)
    if clip is not None:
        model.attach_clip(clip)
    return model
