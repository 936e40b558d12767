"""Lattice tiles + StripBlender: equal to a whole-raster weighted mean, crop-invariant, bounded."""
from __future__ import annotations

import numpy as np
import pytest

from sam_cd_plugin.core.blending import StripBlender
from sam_cd_plugin.core.tiling import (blend_ramp, blend_weights, grid_origin, lattice_starts, lattice_tiles,
                                       window_starts)


def fake_model(image: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    """A deterministic 'model' whose output depends on the whole window (like a real network)."""
    win = np.zeros((size, size), np.float32)
    h, w = image.shape
    ys, xs = slice(max(y, 0), min(y + size, h)), slice(max(x, 0), min(x + size, w))
    win[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x] = image[ys, xs]
    return (0.5 * win + 0.5 * win.mean()).astype(np.float32)


def blend(image: np.ndarray, valid: np.ndarray, size: int, overlap: int, origin=(0, 0)):
    """Run the blender; return the emitted probability and validity as whole arrays."""
    h, w = image.shape
    prob = np.full((h, w), np.nan, np.float32)
    got_valid = np.zeros((h, w), bool)
    emitted = []

    def sink(y0, p, v):
        emitted.append((y0, p.shape[0]))
        prob[y0:y0 + p.shape[0]] = p
        got_valid[y0:y0 + p.shape[0]] = v

    blender = StripBlender(w, h, size, overlap, origin, sink)
    for t in lattice_tiles(w, h, size, overlap, origin):
        win_valid = np.zeros((size, size), bool)
        ys, xs = slice(max(t.y, 0), min(t.y + size, h)), slice(max(t.x, 0), min(t.x + size, w))
        win_valid[ys.start - t.y:ys.stop - t.y, xs.start - t.x:xs.stop - t.x] = valid[ys, xs]
        p = fake_model(image, t.x, t.y, size) if win_valid.any() else None
        blender.add(t, p, win_valid)
    blender.finish()
    # rows come out once each, in order, covering the raster
    assert [e[0] for e in emitted] == sorted(e[0] for e in emitted)
    assert sum(e[1] for e in emitted) == h and emitted[0][0] == 0
    return prob, got_valid


def reference(image: np.ndarray, size: int, overlap: int, origin=(0, 0)) -> np.ndarray:
    h, w = image.shape
    acc = np.zeros((h + 2 * size, w + 2 * size), np.float64)
    wsum = np.zeros_like(acc)
    weights = blend_weights(size, overlap).astype(np.float64)
    for t in lattice_tiles(w, h, size, overlap, origin):
        acc[t.y + size:t.y + 2 * size, t.x + size:t.x + 2 * size] += weights * fake_model(image, t.x, t.y, size)
        wsum[t.y + size:t.y + 2 * size, t.x + size:t.x + 2 * size] += weights
    return acc[size:size + h, size:size + w] / wsum[size:size + h, size:size + w]


@pytest.mark.parametrize("w,h,size,overlap,origin", [
    (301, 207, 64, 16, (0, 0)), (50, 30, 64, 32, (7, 3)), (200, 130, 32, 0, (5, 11)), (97, 300, 48, 24, (-13, 40)),
])
def test_strip_blend_equals_whole_raster_weighted_mean(w, h, size, overlap, origin):
    rng = np.random.default_rng(1)
    image = rng.random((h, w)).astype(np.float32)
    prob, valid = blend(image, np.ones((h, w), bool), size, overlap, origin)
    assert valid.all()
    np.testing.assert_allclose(prob, reference(image, size, overlap, origin), atol=2e-6)


def test_blend_ramps_are_a_partition_of_unity():
    for size, overlap in [(64, 16), (128, 64), (256, 0), (33, 16)]:
        ramp = blend_ramp(size, overlap, minimum=0.0).astype(np.float64)
        starts = lattice_starts(500, size, size - overlap, 17)
        total = np.zeros(500)
        for s in starts:
            a, b = max(s, 0), min(s + size, 500)
            total[a:b] += ramp[a - s:b - s]
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_crop_gives_identical_pixels_away_from_its_border():
    rng = np.random.default_rng(2)
    full = rng.random((400, 500)).astype(np.float32)
    size, overlap = 64, 16
    full_prob, _ = blend(full, np.ones(full.shape, bool), size, overlap, (1000, 2000))
    for ox, oy in [(37, 53), (96, 48), (1, 130)]:
        crop = full[oy:oy + 250, ox:ox + 300]
        prob, _ = blend(crop, np.ones(crop.shape, bool), size, overlap, (1000 + ox, 2000 + oy))
        m = size
        np.testing.assert_array_equal(prob[m:-m, m:-m], full_prob[oy + m:oy + 250 - m, ox + m:ox + 300 - m])
        # without the global anchor the crop's tiles sit elsewhere and the pixels differ
        moved, _ = blend(crop, np.ones(crop.shape, bool), size, overlap, (0, 0))
        if (ox % (size - overlap), oy % (size - overlap)) != (0, 0):
            assert not np.array_equal(moved[m:-m, m:-m], full_prob[oy + m:oy + 250 - m, ox + m:ox + 300 - m])


def test_invalid_windows_are_skipped_and_stay_invalid():
    image = np.random.default_rng(3).random((150, 200)).astype(np.float32)
    valid = np.ones(image.shape, bool)
    valid[:, :90] = False
    prob, got = blend(image, valid, 32, 8)
    np.testing.assert_array_equal(got, valid)
    assert np.isfinite(prob).all()


def test_strip_memory_is_one_tile_high():
    blender = StripBlender(10_000, 50_000, 128, 32, (0, 0), lambda *a: None)
    assert blender._acc.shape == (128, 10_000)


def test_grid_origin_follows_the_map_grid():
    assert grid_origin((500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5)) == (1000000, -10000000)
    assert grid_origin((500010.5, 0.5, 0.0, 5000000.0, 0.0, -0.5)) == (1000021, -10000000)
    assert grid_origin(None) == (0, 0)
    assert grid_origin((0.0, 1.0, 0.2, 0.0, 0.1, -1.0)) == (0, 0)  # rotated: own first pixel


def test_window_starts_are_the_inner_lattice_plus_border_windows():
    assert window_starts(1001, 128, 96, 7) == [0] + list(range(89, 874, 96)) + [873]
    assert all((s + 7) % 96 == 0 for s in window_starts(1001, 128, 96, 7)[1:-1])
    assert window_starts(2000, 256, 192, 1_000_000)[:2] == [0, 128]  # 1_000_128 % 192 == 0
    assert window_starts(256, 256, 192, 5) == [0]  # one exact tile: one window
    tiles = lattice_tiles(100, 60, 128, 32, (5, 0))  # smaller than a tile: one centred window
    assert [(t.x, t.y, t.core_x1, t.core_y1) for t in tiles] == [(-14, -34, 100, 60)]
    with pytest.raises(ValueError):
        lattice_tiles(100, 60, 128, 65)
