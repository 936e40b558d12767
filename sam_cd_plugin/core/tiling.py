"""Overlapping tile grid whose *cores* partition the raster exactly.

Each :class:`Tile` has a square read window ``(x, y, size, size)`` that may extend beyond the
raster (the reader pads it) and a core rectangle ``[core_x0, core_x1) × [core_y0, core_y1)`` in
raster coordinates, clipped to the raster. Only the core of a tile is written, so every pixel
is written by exactly one tile and always from the central part of a window: a core edge that
is not on the raster border lies at least ``overlap // 2`` pixels inside its window.

Along each axis of length ``L``:

* ``L <= size``: one window, centred on the raster (it extends past both borders);
* otherwise ``n = ceil((L - size) / (size - overlap)) + 1`` windows spread evenly from 0 to
  ``L - size`` (so every window lies inside the raster and neighbours overlap by at least
  ``overlap``); the core boundary between two neighbours is the middle of their overlap.

:func:`blend_weights` gives a smooth per-pixel weight for blending overlapping probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Tile", "tile_grid", "axis_windows", "blend_weights"]


@dataclass(frozen=True)
class Tile:
    """Read window ``(x, y, size, size)`` and the core rectangle this tile writes."""

    x: int
    y: int
    size: int
    core_x0: int
    core_y0: int
    core_x1: int
    core_y1: int

    @property
    def core_width(self) -> int:
        return self.core_x1 - self.core_x0

    @property
    def core_height(self) -> int:
        return self.core_y1 - self.core_y0

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices selecting the core inside a ``(size, size)`` tile array."""
        return (slice(self.core_y0 - self.y, self.core_y1 - self.y),
                slice(self.core_x0 - self.x, self.core_x1 - self.x))


def axis_windows(length: int, size: int, overlap: int) -> list[tuple[int, int, int]]:
    """Windows along one axis as ``(start, core_start, core_end)`` (see module docstring)."""
    if length <= size:
        return [(-((size - length) // 2), 0, length)]
    stride = size - overlap
    n = math.ceil((length - size) / stride) + 1
    span = length - size
    starts = [round(i * span / (n - 1)) for i in range(n)]
    bounds = [0]
    for a, b in zip(starts, starts[1:]):
        # middle of the overlap [b, a + size) of two neighbouring windows
        bounds.append((b + a + size) // 2)
    bounds.append(length)
    return [(s, c0, c1) for s, c0, c1 in zip(starts, bounds, bounds[1:])]


def tile_grid(width: int, height: int, tile_size: int, overlap: int) -> list[Tile]:
    """Tiles of ``tile_size`` overlapping by at least ``overlap`` covering a width×height raster.

    Tiles are ordered row by row. ``ValueError`` for non-positive sizes, negative overlap or
    ``overlap >= tile_size``.
    """
    for name, value in (("width", width), ("height", height), ("tile_size", tile_size),
                        ("overlap", overlap)):
        if int(value) != value:
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if width < 1 or height < 1:
        raise ValueError(f"raster size must be positive, got {width}x{height}")
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    if overlap < 0:
        raise ValueError(f"overlap must not be negative, got {overlap}")
    if overlap >= tile_size:
        raise ValueError(f"overlap ({overlap}) must be smaller than tile_size ({tile_size})")
    xs = axis_windows(int(width), int(tile_size), int(overlap))
    ys = axis_windows(int(height), int(tile_size), int(overlap))
    return [Tile(x, y, int(tile_size), cx0, cy0, cx1, cy1)
            for y, cy0, cy1 in ys for x, cx0, cx1 in xs]


def blend_weights(size: int, overlap: int, minimum: float = 1e-3) -> np.ndarray:
    """float32 ``(size, size)`` weights: 1 in the centre, a raised-cosine ramp over ``overlap``
    pixels towards each edge (never below ``minimum``, so border tiles still count)."""
    if size < 1 or overlap < 0:
        raise ValueError("size must be positive and overlap non-negative")
    ramp = np.ones(size, dtype=np.float64)
    n = min(overlap, size // 2)
    if n > 0:
        t = (np.arange(n) + 0.5) / n
        edge = 0.5 - 0.5 * np.cos(np.pi * t)
        ramp[:n] = edge
        ramp[size - n:] = edge[::-1]
    ramp = np.maximum(ramp, minimum)
    return np.outer(ramp, ramp).astype(np.float32)
