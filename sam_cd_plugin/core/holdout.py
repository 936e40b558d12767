"""Spatially disjoint hold-out for training on one scene: whole square blocks, never random pixels.

Contract of :func:`holdout_blocks`: the scene is cut into ``block``×``block`` cells on its pixel grid;
a deterministic (``seed``) selection of cells that hold reviewed pixels (label ≠ ``ignore``) becomes
the validation set, aiming at ``fraction`` of the reviewed pixels and at least one cell with change
when any cell but the last has change. The returned boolean mask is True on validation pixels;
training uses the rest, so no pixel (and no tile-neighbourhood within a block) is in both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["holdout_blocks"]


def holdout_blocks(labels: np.ndarray, block: int, fraction: float = 0.2, *, seed: int = 0,
                   ignore: int = 255) -> np.ndarray:
    """Boolean mask (labels' shape) of the validation blocks (see the module contract)."""
    if block < 1 or not 0.0 < fraction < 1.0:
        raise ValueError("block must be ≥ 1 and fraction in (0, 1)")
    height, width = labels.shape
    cells = []
    for y in range(0, height, block):
        for x in range(0, width, block):
            cell = labels[y:y + block, x:x + block]
            reviewed = int((cell != ignore).sum())
            if reviewed:
                cells.append((y, x, reviewed, bool((cell == 1).any())))
    mask = np.zeros(labels.shape, dtype=bool)
    if len(cells) < 2:
        return mask
    order = np.random.default_rng(seed).permutation(len(cells))
    with_change = [i for i in order if cells[i][3]]
    if len(with_change) > 1:  # start from a change cell so validation F1 is defined
        order = [with_change[0]] + [i for i in order if i != with_change[0]]
    target = fraction * sum(c[2] for c in cells)
    taken = 0
    for n, i in enumerate(order):
        if taken >= target or n == len(cells) - 1:
            break
        y, x, reviewed, _ = cells[i]
        mask[y:y + block, x:x + block] = True
        taken += reviewed
    return mask
