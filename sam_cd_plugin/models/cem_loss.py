"""CEM loss (change-excluding mask on negatives), from SAM-CEM-CD.

Per-pixel BCE ``L_i``; each unchanged pixel is dropped when its uniform draw ``R_i ≤ δ``;
changed pixels are always kept. Loss ``= Σ L_i M_i / Σ M_i``. Pixels outside ``valid`` are
never counted.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cem_keep_mask(target: torch.Tensor, delta: float, rand: torch.Tensor) -> torch.Tensor:
    """M_i: 1 for changed pixels, and for unchanged pixels whose draw exceeds ``delta``."""
    return (target > 0.5) | (rand > delta)


def cem_loss(logits: torch.Tensor, target: torch.Tensor, delta: float = 0.3,
             valid: torch.Tensor | None = None, rand: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean BCE over the CEM-kept pixels. ``delta=0`` is plain BCE; ``rand`` overrides the draws."""
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"CEM drop ratio δ must be in [0, 1), got {delta}")
    target = target.to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if rand is None:
        rand = torch.rand(logits.shape, generator=generator, device=logits.device)
    keep = cem_keep_mask(target, delta, rand)
    if valid is not None:
        keep = keep & valid.bool()
    keep = keep.to(per_pixel.dtype)
    return (per_pixel * keep).sum() / keep.sum().clamp_min(1.0)
