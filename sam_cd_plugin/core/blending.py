"""Weighted blending of overlapping tile probabilities in a rolling strip buffer.

:class:`StripBlender` receives the probability tiles of a :func:`~.tiling.lattice_tiles` grid in
row-major order and emits finished raster rows as soon as no later tile can touch them. It
holds one strip of ``tile_size`` rows (a float32 sum and a validity mask), so memory grows with
the raster *width* only, never with its height or pixel count.

The blended value of a pixel is ``sum(w_k * p_k) / sum(w_k)`` over the windows ``k`` covering it
(the windows of :func:`~.tiling.lattice_tiles`),
with ``w = blend_weights(tile_size, overlap)``. The weights are separable, so ``sum(w_k)`` is the
product of two 1-D sums computed once per raster (:func:`~.tiling.axis_weight_sum`). Windows with
no valid pixel are never predicted (``prob=None``): every pixel they cover is invalid anyway.
Additions happen in tile order, so a pixel covered by the same windows gets bit-identical values
in a crop and in the full raster.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .tiling import Tile, axis_weight_sum, blend_ramp, blend_weights, window_starts

__all__ = ["StripBlender", "RowSink"]

#: ``sink(y, probability, valid)``: rows ``y .. y + len(probability)`` of the raster, complete
#: (fresh arrays the sink may modify).
RowSink = Callable[[int, np.ndarray, np.ndarray], None]


#: most rows handed to the sink per call (bands of a wide raster are large; the sink may queue them)
SINK_ROWS = 64


class StripBlender:
    """Accumulate lattice tiles in row-major order; call ``sink`` with each finished row band
    (top to bottom, at most :data:`SINK_ROWS` rows a call)."""

    def __init__(self, width: int, height: int, tile_size: int, overlap: int,
                 origin: tuple[int, int], sink: RowSink) -> None:
        self.width, self.height, self.size = int(width), int(height), int(tile_size)
        stride = self.size - overlap
        ramp = blend_ramp(self.size, overlap)
        self.weights = blend_weights(self.size, overlap)
        xs = window_starts(self.width, self.size, stride, origin[0])
        ys = window_starts(self.height, self.size, stride, origin[1])
        self._col_sum = axis_weight_sum(self.width, xs, ramp)
        self._row_sum = axis_weight_sum(self.height, ys, ramp)
        self._acc = np.zeros((self.size, self.width), dtype=np.float32)
        self._valid = np.zeros((self.size, self.width), dtype=bool)
        self._top = ys[0]
        self._sink = sink

    def add(self, tile: Tile, prob: np.ndarray | None, valid: np.ndarray) -> None:
        """Add a ``(size, size)`` probability tile (``None``: nothing valid) with its validity."""
        if tile.y < self._top:
            raise ValueError(f"tiles must arrive in row-major order (tile row {tile.y} < {self._top})")
        if tile.y > self._top:
            self._advance(tile.y)
        x0, x1 = max(tile.x, 0), min(tile.x + self.size, self.width)
        if x1 <= x0:
            return
        cols = slice(x0 - tile.x, x1 - tile.x)
        self._valid[:, x0:x1] |= valid[:, cols]
        if prob is not None:
            self._acc[:, x0:x1] += self.weights[:, cols] * prob[:, cols]

    def finish(self) -> None:
        """Emit every remaining row."""
        self._advance(self._top + self.size)

    def _advance(self, new_top: int) -> None:
        shift = new_top - self._top
        y0, y1 = max(self._top, 0), min(new_top, self._top + self.size, self.height)
        for c0 in range(y0, y1, SINK_ROWS):  # short bands: less in flight to the writer
            c1 = min(c0 + SINK_ROWS, y1)
            rows = slice(c0 - self._top, c1 - self._top)
            prob = self._acc[rows] / self._col_sum[None, :]  # no full (h, width) weight array
            prob /= self._row_sum[c0:c1, None]
            np.clip(prob, 0.0, 1.0, out=prob)
            self._sink(c0, prob, self._valid[rows].copy())
        if shift >= self.size:
            self._acc[:] = 0.0
            self._valid[:] = False
        else:
            self._acc[:-shift] = self._acc[shift:]
            self._acc[-shift:] = 0.0
            self._valid[:-shift] = self._valid[shift:]
            self._valid[-shift:] = False
        self._top = new_top
