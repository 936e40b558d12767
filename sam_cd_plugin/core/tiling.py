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

:func:`lattice_tiles` is the grid the detector uses: the windows of a fixed lattice of stride
``size - overlap`` anchored to a *global* pixel origin (:func:`grid_origin`, from the
geotransform) that lie inside the raster, plus one window flush with each border (start 0 and
``length - size``) where the lattice has none; an axis shorter than a tile gets one centred
window (padded by the reader). A pixel farther than ``size`` from every border is covered only
by lattice windows, so a crop of a raster on the same grid gives it exactly the windows (and
blend weights) of the full raster. With :func:`blend_ramp` weights (``overlap <= size // 2``)
lattice windows form a partition of unity; the blender divides by the actual weight sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Tile", "tile_grid", "axis_windows", "blend_weights", "blend_ramp", "grid_origin",
           "lattice_starts", "window_starts", "lattice_tiles", "axis_weight_sum"]


@dataclass(frozen=True)
class Tile:
    """Read window ``(x, y, size, size)`` and its core rectangle: the pixels this tile writes
    (:func:`tile_grid`) or the part of the window inside the raster (:func:`lattice_tiles`)."""

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


def blend_ramp(size: int, overlap: int, minimum: float = 1e-3) -> np.ndarray:
    """float32 ``(size,)`` ramp: 1 in the centre, a raised cosine over ``overlap`` pixels
    (at most ``size // 2``) towards each end, never below ``minimum``. Two ramps shifted by
    ``size - overlap`` sum to one over their overlap (a partition of unity)."""
    if size < 1 or overlap < 0:
        raise ValueError("size must be positive and overlap non-negative")
    ramp = np.ones(size, dtype=np.float64)
    n = min(overlap, size // 2)
    if n > 0:
        t = (np.arange(n) + 0.5) / n
        edge = 0.5 - 0.5 * np.cos(np.pi * t)
        ramp[:n] = edge
        ramp[size - n:] = edge[::-1]
    return np.maximum(ramp, minimum).astype(np.float32)


def blend_weights(size: int, overlap: int, minimum: float = 1e-3) -> np.ndarray:
    """float32 ``(size, size)`` weights: the outer product of :func:`blend_ramp` with itself."""
    ramp = blend_ramp(size, overlap, minimum)
    return np.outer(ramp, ramp).astype(np.float32)


def grid_origin(geotransform: tuple[float, ...] | None) -> tuple[int, int]:
    """Global pixel index (column, row) of a raster's top-left pixel on its map grid.

    North-up grids: ``round(x0 / pixel_width)``, ``round(y0 / pixel_height)``, so two rasters on
    the same grid (same CRS and pixel size, origins a whole number of pixels apart) agree on
    which global pixel each of their pixels is. Rotated grids and rasters without a
    geotransform use ``(0, 0)`` (their own first pixel).
    """
    gt = tuple(geotransform) if geotransform is not None else (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    if gt[2] != 0 or gt[4] != 0 or gt[1] == 0 or gt[5] == 0:
        return 0, 0
    gx, gy = gt[0] / gt[1], gt[3] / gt[5]
    if not (math.isfinite(gx) and math.isfinite(gy)) or max(abs(gx), abs(gy)) > 2 ** 52:
        return 0, 0
    return int(math.floor(gx + 0.5)), int(math.floor(gy + 0.5))


def lattice_starts(length: int, size: int, stride: int, origin: int = 0) -> list[int]:
    """Starts of the lattice windows ``start ≡ -origin (mod stride)`` that meet ``[0, length)``."""
    if length < 1 or size < 1 or not 1 <= stride <= size:
        raise ValueError(f"need length, size >= 1 and 1 <= stride <= size; got {length}, {size}, {stride}")
    phase = (-origin) % stride
    k = (-size - phase) // stride + 1  # smallest k with phase + k * stride > -size
    starts = []
    while phase + k * stride < length:
        starts.append(phase + k * stride)
        k += 1
    return starts


def window_starts(length: int, size: int, stride: int, origin: int = 0) -> list[int]:
    """Window starts along one axis (see module docstring): the lattice starts inside
    ``[0, length - size]`` plus the border-flush starts, ascending; one centred window when
    ``length <= size``."""
    if length <= size:
        return [-((size - length) // 2)]
    inside = [s for s in lattice_starts(length, size, stride, origin) if 0 <= s <= length - size]
    return sorted({0, length - size, *inside})


def lattice_tiles(width: int, height: int, tile_size: int, overlap: int,
                  origin: tuple[int, int] = (0, 0)) -> list[Tile]:
    """Row-major lattice windows of ``tile_size`` with stride ``tile_size - overlap`` anchored at
    the global pixel ``origin`` of the raster's top-left pixel (see module docstring).

    A tile's core is the part of its window inside the raster. ``ValueError`` for non-positive
    sizes or ``overlap`` outside ``[0, tile_size // 2]``.
    """
    if width < 1 or height < 1 or tile_size < 1:
        raise ValueError(f"raster and tile sizes must be positive, got {width}x{height}, {tile_size}")
    if not 0 <= overlap <= tile_size // 2:
        raise ValueError(f"overlap must lie in [0, {tile_size // 2}] for tile size {tile_size}, got {overlap}")
    stride = tile_size - overlap
    xs = window_starts(width, tile_size, stride, origin[0])
    ys = window_starts(height, tile_size, stride, origin[1])
    return [Tile(x, y, tile_size, max(x, 0), max(y, 0), min(x + tile_size, width),
                 min(y + tile_size, height)) for y in ys for x in xs]


def axis_weight_sum(length: int, starts: list[int], ramp: np.ndarray) -> np.ndarray:
    """float32 ``(length,)``: sum of ``ramp`` over the windows at ``starts`` covering each pixel
    (added in window order, so equal for equal windows whatever the raster)."""
    total = np.zeros(length, dtype=np.float32)
    size = ramp.shape[0]
    for s in starts:
        a, b = max(s, 0), min(s + size, length)
        if b > a:
            total[a:b] += ramp[a - s:b - s]
    return total
