"""BCE + Dice loss, SAM2-CD's loss (applied to each of its three masks, weight 1 each).

``bce_dice_loss = mean BCE + (1 − Dice)``, Dice ``= (2 Σ p·y + 1) / (Σ p + Σ y + 1)`` over the whole
batch with ``p = σ(logits)`` (the +1 keeps it defined on batches without change).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean binary cross-entropy plus the soft Dice loss of the change class."""
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)
    return bce + (1 - dice)
