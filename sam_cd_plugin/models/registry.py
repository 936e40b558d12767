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

import logging
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ..core.errors import CheckpointError
from .encoders import build_encoder

log = logging.getLogger(__name__)
METHODS = ("sam-cem-cd", "sam2-cd", "sam-cd")


def build_model(meta: dict[str, Any], encoder_weights: Path | str | None = None,
                clip_weights: Path | str | None = None,
                mask_generator_weights: Path | str | None = None,
                prompts: Sequence[str] | None = None) -> nn.Module:
    """An untrained model of ``meta['method']`` on ``meta['encoder']`` (random init unless weights).

    ``prompts`` (SAM-CD only) are the prompts to run with: ``None`` = the metadata's, ``[]`` = no
    prior. The architecture always follows the metadata (a model trained with prompts keeps its
    mask generator, so its checkpoint loads either way); CLIP is loaded only when prompts run.
    """
    method = str(meta.get("method", "")).lower()
    if method == "sam-cd":
        return _build_sam_cd(meta, encoder_weights, clip_weights, mask_generator_weights, prompts)
    if method == "sam-cem-cd":
        from .sam_cem_cd import SamCemCd

        encoder = build_encoder(meta["encoder"], weights=encoder_weights,
                                freeze=bool(meta.get("freeze_encoder", False)))
        return SamCemCd(encoder)
    if method == "sam2-cd":
        from .sam2_cd import Sam2Cd

        encoder = build_encoder(meta["encoder"], weights=encoder_weights,
                                freeze=bool(meta.get("freeze_encoder", False)))
        model = Sam2Cd(encoder)
        if encoder_weights is not None and str(meta["encoder"]).lower().startswith("sam2-"):
            from .encoders.sam2 import load_sam2_neck_weights

            load_sam2_neck_weights(model.neck.fpn, Path(encoder_weights), str(meta["encoder"]))
        return model
    raise CheckpointError(f"Unknown method '{meta.get('method')}'. Known: {', '.join(METHODS)}.")


def clean_prompts(prompts: Sequence[Any] | None) -> list[str]:
    """Non-empty, stripped prompt texts."""
    return [str(p).strip() for p in (prompts or []) if str(p).strip()]


def _build_sam_cd(meta: dict[str, Any], encoder_weights, clip_weights,
                  mask_generator_weights, run_prompts: Sequence[str] | None) -> nn.Module:
    from .sam_cd import SamCd
    from .semantic_prior import DEFAULT_CLIP_MODEL, ClipScorer, build_mask_generator

    trained = clean_prompts(meta.get("prompts"))
    prompts = trained if run_prompts is None else clean_prompts(run_prompts)
    if prompts and not trained:
        raise CheckpointError(
            "This SAM-CD model was trained without category prompts, so it has no mask generator "
            "and cannot use prompts; leave the prompts unset or pick a model trained with prompts.")
    if trained and not prompts:
        log.warning("This SAM-CD model was trained with semantic priors from the prompts %s; "
                    "running it without a prior (all ones), so changes of any kind count and "
                    "its accuracy may drop.", ", ".join(trained))
    clip_model = str(meta.get("clip_model") or DEFAULT_CLIP_MODEL)
    clip = ClipScorer.load(clip_weights, clip_model) if prompts else None  # fail fast, before building
    generator = None
    if trained:
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
