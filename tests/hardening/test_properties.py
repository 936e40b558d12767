"""Property-based tests (hypothesis) of the tiling / blending / nodata core.

Random raster sizes, tile sizes, overlaps, grid origins and nodata patterns:

* the legacy centre-crop grid (:func:`tile_grid`): cores partition the raster exactly once;
* the detector's windows (:func:`lattice_tiles`): every pixel is covered; each window is on the
  global lattice, flush with a border, or centred on an axis shorter than a tile;
* the strip blender: every row is emitted exactly once, in order; validity is exactly the
  union of the tiles' validity (nodata preserved); a constant probability stays constant;
* crop invariance: a crop of a raster on the same grid gets bit-identical blended values at
  every pixel whose covering windows all lie inside the crop;
* end to end, with the tiny checkpoint: random nodata rectangles in real imagery are exactly the
  255 pixels of the change mask.

Example counts are small (2-core CI); ``deadline=None`` because the machine is shared.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from osgeo import gdal

from sam_cd_plugin.core.blending import StripBlender
from sam_cd_plugin.core.tiling import lattice_tiles, tile_grid
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

gdal.UseExceptions()

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tiling(draw, max_side: int = 400):
    size = draw(st.sampled_from([32, 64, 96, 128]))
    return dict(width=draw(st.integers(1, max_side)), height=draw(st.integers(1, max_side)),
                tile=size, overlap=draw(st.integers(0, size // 2)),
                origin=(draw(st.integers(-10 ** 6, 10 ** 6)), draw(st.integers(-10 ** 6, 10 ** 6))))


@FAST
@given(width=st.integers(1, 700), height=st.integers(1, 700), tile=st.integers(1, 300), data=st.data())
def test_tile_grid_cores_partition_the_raster(width, height, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    count = np.zeros((height, width), np.int32)
    for t in tile_grid(width, height, tile, overlap):
        assert t.x <= t.core_x0 < t.core_x1 <= t.x + t.size
        assert t.y <= t.core_y0 < t.core_y1 <= t.y + t.size
        count[t.core_y0:t.core_y1, t.core_x0:t.core_x1] += 1
    assert (count == 1).all()


def _on_grid(start: int, length: int, size: int, stride: int, origin: int) -> bool:
    """A window start the detector may use: centred on a short axis, flush with a border, or on
    the global lattice (inside the raster)."""
    if length <= size:
        return start == -((size - length) // 2)
    return start in (0, length - size) or (0 <= start <= length - size and (start + origin) % stride == 0)


@FAST
@given(tiling(max_side=700))
def test_lattice_covers_every_pixel_on_the_global_grid(p):
    stride, size = p["tile"] - p["overlap"], p["tile"]
    covered = np.zeros((p["height"], p["width"]), bool)
    for t in lattice_tiles(p["width"], p["height"], size, p["overlap"], p["origin"]):
        assert _on_grid(t.x, p["width"], size, stride, p["origin"][0])
        assert _on_grid(t.y, p["height"], size, stride, p["origin"][1])
        assert t.core_x1 > t.core_x0 and t.core_y1 > t.core_y0  # every window meets the raster
        covered[t.core_y0:t.core_y1, t.core_x0:t.core_x1] = True
    assert covered.all()


def _blend(width, height, tile, overlap, origin, tile_prob, valid_mask):
    """Run the strip blender over the lattice; returns (probability, valid, rows emitted)."""
    prob = np.full((height, width), np.nan, np.float32)
    valid = np.zeros((height, width), bool)
    rows: list[int] = []

    def sink(y, p, v):
        rows.extend(range(y, y + p.shape[0]))
        prob[y:y + p.shape[0]] = p
        valid[y:y + p.shape[0]] = v

    blender = StripBlender(width, height, tile, overlap, origin, sink)
    for t in lattice_tiles(width, height, tile, overlap, origin):
        window_valid = np.zeros((tile, tile), bool)
        ys, xs = slice(t.core_y0, t.core_y1), slice(t.core_x0, t.core_x1)
        window_valid[t.core_y0 - t.y:t.core_y1 - t.y, t.core_x0 - t.x:t.core_x1 - t.x] = valid_mask[ys, xs]
        blender.add(t, tile_prob(t) if window_valid.any() else None, window_valid)
    blender.finish()
    return prob, valid, rows


@FAST
@given(p=tiling(max_side=300), seed=st.integers(0, 2 ** 32 - 1), nodata_share=st.floats(0, 1),
       value=st.floats(0, 1, width=32))
def test_blender_emits_each_row_once_and_preserves_nodata(p, seed, nodata_share, value):
    rng = np.random.default_rng(seed)
    valid_mask = rng.random((p["height"], p["width"])) >= nodata_share
    prob, valid, rows = _blend(p["width"], p["height"], p["tile"], p["overlap"], p["origin"],
                               lambda t: np.full((p["tile"], p["tile"]), value, np.float32), valid_mask)
    assert rows == list(range(p["height"]))
    assert np.array_equal(valid, valid_mask)
    np.testing.assert_allclose(prob[valid], value, atol=1e-5)


def _position_dependent(origin):
    """A stand-in for the network whose output depends on the window's global position, so any
    change of the windows covering a pixel changes the blended value."""
    def tile_prob(t):
        gy, gx = np.mgrid[t.y:t.y + t.size, t.x:t.x + t.size]
        gx, gy = gx + origin[0], gy + origin[1]
        wx, wy = t.x + origin[0], t.y + origin[1]
        return (0.5 + 0.5 * np.sin(0.37 * gx + 0.11 * gy + 0.013 * wx - 0.029 * wy)).astype(np.float32)
    return tile_prob


@FAST
@given(p=tiling(max_side=420), data=st.data())
def test_blending_is_crop_invariant(p, data):
    width, height, tile, overlap, origin = p["width"], p["height"], p["tile"], p["overlap"], p["origin"]
    x0 = data.draw(st.integers(0, width - 1))
    y0 = data.draw(st.integers(0, height - 1))
    cw = data.draw(st.integers(1, width - x0))
    ch = data.draw(st.integers(1, height - y0))
    everywhere = np.ones((height, width), bool)
    full, _, _ = _blend(width, height, tile, overlap, origin, _position_dependent(origin), everywhere)
    crop_origin = (origin[0] + x0, origin[1] + y0)
    crop, _, _ = _blend(cw, ch, tile, overlap, crop_origin, _position_dependent(crop_origin),
                        everywhere[:ch, :cw])
    # pixels whose covering windows lie inside the crop: farther than one tile from its border,
    # unless that border is the full raster's border (windows past it exist in both runs)
    margin = tile
    left = 0 if x0 == 0 else margin
    top = 0 if y0 == 0 else margin
    right = cw if x0 + cw == width else cw - margin
    bottom = ch if y0 + ch == height else ch - margin
    if right <= left or bottom <= top:
        return
    assert np.array_equal(crop[top:bottom, left:right],
                          full[y0 + top:y0 + bottom, x0 + left:x0 + right])


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return ChangeDetector(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def scene(real_crops):
    ds = gdal.Open(str(real_crops["before"]))
    try:
        return ds.ReadAsArray(), ds.GetGeoTransform(), ds.GetProjection()
    finally:
        ds = None


@SLOW
@given(rects=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 89), st.integers(1, 60), st.integers(1, 60)),
                      min_size=1, max_size=4),
       use_nan=st.booleans())
def test_detector_maps_random_nodata_to_255_exactly(detector, scene, tmp_path_factory, rects, use_nan):
    pixels, gt, wkt = scene
    data = pixels.astype(np.float32)
    hole = np.zeros(data.shape[1:], bool)
    for x, y, w, h in rects:
        hole[y:y + h, x:x + w] = True
    data[:, hole] = np.nan if use_nan else 0.0
    folder = tmp_path_factory.mktemp("nodata")
    paths = []
    for name, values in (("before.tif", data), ("after.tif", pixels.astype(np.float32))):
        ds = gdal.GetDriverByName("GTiff").Create(str(folder / name), data.shape[2], data.shape[1],
                                                  data.shape[0], gdal.GDT_Float32)
        ds.SetGeoTransform(gt)
        ds.SetProjection(wkt)
        for i, band in enumerate(values, start=1):
            ds.GetRasterBand(i).WriteArray(band)
            if not use_nan and name == "before.tif":
                ds.GetRasterBand(i).SetNoDataValue(0.0)
        ds = None
        paths.append(folder / name)
    out = folder / "change.tif"
    detector.detect(*paths, out, DetectionOptions(tile_size=64, overlap=16))
    ds = gdal.Open(str(out))
    mask = ds.GetRasterBand(1).ReadAsArray()
    ds = None
    assert np.array_equal(mask == 255, hole)
    assert set(np.unique(mask[~hole])) <= {0, 1}
