"""SAM-CD's semantic prior over a whole raster pair, independent of where tiles fall.

The prior of a pixel comes from the *prior cell* holding it: cells of ``cell`` px on a lattice
anchored to the map grid (the same origin as the detector's tiles), each computed once from a
context window of the cell plus ``margin`` px on every side (2 × the tile by default), and only
its centre cell kept. So a building cut by a tile border gets one prior, the same in every tile
that covers it, and the same on a crop of the raster (away from the crop's border). Finished
cells are kept (fp16) in a bounded cache sized for two rows of cells, so each is computed once
when tiles are visited row by row.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.alignment import AlignedPair
from ..core.tiling import Tile


class PriorField:
    """``tile_priors(tiles) -> (prior_before, prior_after)``, each ``(N, 1, T, T)`` float32.

    ``compute(images (B, 3, h, w) float32 in [0, 1]) -> (B, 1, h, w)`` is the model's prior
    (``SamCd.semantic_prior``); windows are read with ``pair.read`` (normalised as the tiles)."""

    def __init__(self, pair: AlignedPair, compute: Callable[[torch.Tensor], torch.Tensor],
                 origin: tuple[int, int], cell: int, margin: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.pair, self.compute, self.cell = pair, compute, int(cell)
        self.margin = self.cell // 2 if margin is None else int(margin)
        self.origin, self.device = origin, torch.device(device)
        per_row = pair.width // self.cell + 3
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._capacity = 3 * per_row

    def _cell(self, row: int, col: int) -> np.ndarray:
        """``(2, cell, cell)`` fp16 priors (before, after) of cell (row, col)."""
        key = (row, col)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        # cell (row, col) starts at raster pixel (x, y): the lattice is anchored to the map grid
        x = col * self.cell - self.origin[0] % self.cell
        y = row * self.cell - self.origin[1] % self.cell
        m, size = self.margin, self.cell + 2 * self.margin
        before, after, _ = self.pair.read(x - m, y - m, size, size)
        images = torch.from_numpy(np.stack([before, after])).to(self.device)
        with torch.inference_mode():
            prior = self.compute(images)[:, 0, m:m + self.cell, m:m + self.cell]
        value = prior.float().cpu().numpy().astype(np.float16)
        self._cache[key] = value
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return value

    def window(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """``(2, h, w)`` float32 priors (before, after) of raster window (x, y, w, h)."""
        out = np.zeros((2, h, w), dtype=np.float32)
        shift_x, shift_y = self.origin[0] % self.cell, self.origin[1] % self.cell
        c = self.cell
        for row in range((y + shift_y) // c, (y + h - 1 + shift_y) // c + 1):
            for col in range((x + shift_x) // c, (x + w - 1 + shift_x) // c + 1):
                cx, cy = col * c - shift_x, row * c - shift_y
                x0, y0 = max(x, cx), max(y, cy)
                x1, y1 = min(x + w, cx + c), min(y + h, cy + c)
                out[:, y0 - y:y1 - y, x0 - x:x1 - x] = self._cell(row, col)[:, y0 - cy:y1 - cy,
                                                                            x0 - cx:x1 - cx]
        return out

    def tile_priors(self, tiles: Sequence[Tile]) -> tuple[np.ndarray, np.ndarray]:
        priors = np.stack([self.window(t.x, t.y, t.size, t.size) for t in tiles])
        return priors[:, :1], priors[:, 1:]
