"""Build a change model from checkpoint metadata (method + encoder names)."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..core.errors import CheckpointError
from .encoders import build_encoder

METHODS = ("sam-cem-cd",)


def build_model(meta: dict[str, Any], encoder_weights=None) -> nn.Module:
    """An untrained model of ``meta['method']`` on ``meta['encoder']`` (random init unless weights)."""
    method = str(meta.get("method", "")).lower()
    if method == "sam-cem-cd":
        from .sam_cem_cd import SamCemCd

        encoder = build_encoder(meta["encoder"], weights=encoder_weights,
                                freeze=bool(meta.get("freeze_encoder", False)))
        return SamCemCd(encoder)
    raise CheckpointError(f"Unknown method '{meta.get('method')}'. Known: {', '.join(METHODS)}.")
