"""SAM2-CD's extra training augmentation, on the device: a random rotation within ±30°.

Every method already gets, from :class:`.datasets.ChangeDataset`, the same flips and 90° turns
for both dates and the label, a random date swap, and brightness/contrast/colour jitter drawn
separately for each date (the reference's per-date colour jitter). ``augment="paper"`` adds the
reference's arbitrary rotation: each sample turned by one angle from [−``max_degrees``,
``max_degrees``] (before, after and label alike; reflection padding; the label by nearest
neighbour, so it stays binary).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_rotation(before: torch.Tensor, after: torch.Tensor, label: torch.Tensor,
                    generator: torch.Generator, max_degrees: float = 30.0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(before, after, label)`` ``(B, C, H, W)`` each sample rotated by its own random angle."""
    draw = torch.rand(before.shape[0], generator=generator, device=generator.device)
    theta = ((2 * draw - 1) * max_degrees * math.pi / 180).to(before.device, torch.float32)
    cos, sin, zero = torch.cos(theta), torch.sin(theta), torch.zeros_like(theta)
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(matrix, list(before.shape), align_corners=False)

    def turn(x: torch.Tensor, mode: str) -> torch.Tensor:
        return F.grid_sample(x.float(), grid, mode=mode, padding_mode="reflection",
                             align_corners=False).to(x.dtype)

    return turn(before, "bilinear"), turn(after, "bilinear"), turn(label, "nearest")
