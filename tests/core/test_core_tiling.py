"""Tile grid: cores partition the raster, stay away from window edges, windows have the tile size."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sam_cd_plugin.core.tiling import Tile, blend_weights, tile_grid


def check_grid(width: int, height: int, size: int, overlap: int) -> list[Tile]:
    tiles = tile_grid(width, height, size, overlap)
    diff = np.zeros((height + 1, width + 1), dtype=np.int32)  # 2-D difference array of core counts
    margin = overlap // 2
    for t in tiles:
        assert t.size == size
        assert 0 <= t.core_x0 < t.core_x1 <= width and 0 <= t.core_y0 < t.core_y1 <= height
        # the core lies inside the read window
        assert t.x <= t.core_x0 and t.core_x1 <= t.x + size
        assert t.y <= t.core_y0 and t.core_y1 <= t.y + size
        # ... at least overlap//2 from window edges, except at raster borders
        if t.core_x0 > 0:
            assert t.core_x0 - t.x >= margin
        if t.core_x1 < width:
            assert t.x + size - t.core_x1 >= margin
        if t.core_y0 > 0:
            assert t.core_y0 - t.y >= margin
        if t.core_y1 < height:
            assert t.y + size - t.core_y1 >= margin
        # windows stay inside the raster along axes at least one tile long
        if width >= size:
            assert 0 <= t.x and t.x + size <= width
        if height >= size:
            assert 0 <= t.y and t.y + size <= height
        diff[t.core_y0, t.core_x0] += 1
        diff[t.core_y0, t.core_x1] -= 1
        diff[t.core_y1, t.core_x0] -= 1
        diff[t.core_y1, t.core_x1] += 1
        rows, cols = t.core_slices
        assert (rows.stop - rows.start, cols.stop - cols.start) == (t.core_height, t.core_width)
    cover = diff.cumsum(axis=0).cumsum(axis=1)[:height, :width]
    assert cover.min() == 1 and cover.max() == 1, "cores must cover every pixel exactly once"
    return tiles


@pytest.mark.parametrize("width,height", [
    (1001, 777), (1, 1), (5, 3), (100, 60), (256, 256), (512, 512), (768, 1024), (257, 255),
    (513, 511), (1024, 1), (2000, 300),
])
@pytest.mark.parametrize("size,overlap", [(256, 64), (256, 0), (128, 96), (512, 32), (64, 32), (7, 3)])
def test_partition_many_sizes(width, height, size, overlap):
    check_grid(width, height, size, overlap)


@pytest.mark.parametrize("size,overlap", [(64, 63), (16, 15), (5, 4)])
def test_partition_with_stride_one(size, overlap):
    tiles = check_grid(90, 70, size, overlap)
    assert len(tiles) == (90 - size + 1) * (70 - size + 1)


@settings(max_examples=200, deadline=None, database=None)
@given(width=st.integers(1, 1200), height=st.integers(1, 1200), size=st.integers(1, 300),
       data=st.data())
def test_partition_property(width, height, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    stride = size - overlap
    assume((width / stride + 1) * (height / stride + 1) < 20000)  # keep each example fast
    check_grid(width, height, size, overlap)


def test_smaller_than_one_tile_is_one_centred_tile():
    (t,) = tile_grid(100, 60, 256, 64)
    assert (t.core_x0, t.core_y0, t.core_x1, t.core_y1) == (0, 0, 100, 60)
    assert t.x == -78 and t.y == -98  # centred: (256 - 100) // 2, (256 - 60) // 2


def test_exact_multiples_without_overlap_are_a_plain_grid():
    tiles = tile_grid(768, 512, 256, 0)
    assert [(t.x, t.y) for t in tiles] == [(x, y) for y in (0, 256) for x in (0, 256, 512)]
    assert all(t.core_width == 256 and t.core_height == 256 for t in tiles)


def test_exact_fit_single_tile():
    (t,) = tile_grid(256, 256, 256, 64)
    assert (t.x, t.y, t.core_x1, t.core_y1) == (0, 0, 256, 256)


def test_overlapping_windows_overlap_by_at_least_overlap():
    tiles = tile_grid(1001, 777, 256, 64)
    xs = sorted({t.x for t in tiles})
    assert xs[0] == 0 and xs[-1] == 1001 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(xs, xs[1:]))
    assert len(xs) == 5  # ceil((1001 - 256) / 192) + 1


@pytest.mark.parametrize("args", [(0, 10, 8, 0), (10, 0, 8, 0), (10, 10, 0, 0), (10, 10, 8, 8),
                                  (10, 10, 8, 9), (10, 10, 8, -1), (10, 10, 8.5, 0)])
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        tile_grid(*args)


def test_blend_weights():
    w = blend_weights(64, 16)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert w[32, 32] == 1.0
    assert 0 < w.min() < 0.05
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert np.all(np.diff(w[32, :16]) > 0)
    assert np.all(blend_weights(8, 0) == 1.0)
