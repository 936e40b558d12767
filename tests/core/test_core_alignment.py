"""AlignedPair on real Sentinel-2 / Landsat GeoTIFFs and their reprojected, cropped and masked copies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sam_cd_plugin.core.alignment import AlignedPair
from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.core.normalisation import normalise

gdal.UseExceptions()


@pytest.fixture(scope="module")
def rio(shared_data: Path) -> Path:
    return shared_data / "geotiff" / "oscd_rio"


@pytest.fixture(scope="module", autouse=True)
def no_sidecar_files_in_shared_data(shared_data: Path):
    """Reading must never write .aux.xml (statistics) next to the read-only samples."""
    before = set(shared_data.rglob("*.aux.xml"))
    yield
    assert set(shared_data.rglob("*.aux.xml")) == before


def raw(path: Path, bands=(1, 2, 3)) -> np.ndarray:
    ds = gdal.Open(str(path))
    return np.stack([ds.GetRasterBand(b).ReadAsArray() for b in bands])


def with_nodata(src: Path, dst: Path, nodata: float, rows: int, cols: int, dtype=None) -> Path:
    """Copy of ``src`` whose first ``rows`` rows and ``cols`` columns are ``nodata``."""
    ds = gdal.Translate(str(dst), str(src), outputType=dtype or gdal.GDT_Unknown)
    for i in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(i)
        arr = band.ReadAsArray()
        arr[:rows] = nodata
        arr[:, :cols] = nodata
        band.WriteArray(arr)
        if not np.isnan(nodata):
            band.SetNoDataValue(nodata)
    ds = None
    return dst


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_same_grid_is_read_directly(rio: Path):
    with AlignedPair(rio / "before.tif", rio / "after.tif") as pair:
        assert not pair.warped
        assert (pair.width, pair.height) == (426, 353)
        assert pair.overlap_window == (0, 0, 426, 353)
        assert pair.bands_before == (1, 2, 3) and pair.after.band_count == 4
        assert pair.geotransform == pair.before.geotransform and pair.crs_wkt == pair.before.crs_wkt
        before, after, valid = pair.read(0, 0, 426, 353)
        assert before.shape == after.shape == (3, 353, 426) and before.dtype == np.float32
        assert valid.shape == (353, 426) and valid.all()
        np.testing.assert_array_equal(before, normalise(raw(rio / "before.tif"), pair.stats_before))
        np.testing.assert_array_equal(after, normalise(raw(rio / "after.tif"), pair.stats_after))
        tile_b, tile_a, _ = pair.read(100, 50, 64, 32)
        np.testing.assert_array_equal(tile_b, before[:, 50:82, 100:164])


def test_uint16_is_scaled_by_robust_range_not_255(rio: Path):
    with AlignedPair(rio / "before.tif", rio / "after.tif") as pair:
        assert all(h > 255 for h in pair.stats_before.high)
        before, after, _ = pair.read(0, 0, pair.width, pair.height)
    for img in (before, after):
        assert img.min() == 0.0 and img.max() == 1.0
        assert 0.15 < img.mean() < 0.85
        assert 0.0 < (img == 1.0).mean() < 0.05  # only the top ~2 % saturate


def test_reprojected_after_matches_direct_read(rio: Path, tmp_path: Path):
    merc = tmp_path / "before_3857.tif"
    gdal.Warp(str(merc), str(rio / "before.tif"), dstSRS="EPSG:3857", xRes=13.0, yRes=13.0,
              resampleAlg="bilinear")
    with AlignedPair(rio / "before.tif", merc) as pair:
        assert pair.warped
        assert (pair.width, pair.height) == (426, 353)
        before, after, valid = pair.read(0, 0, pair.width, pair.height)
    assert valid.mean() > 0.97
    inner = valid.copy()
    inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
    for c in range(3):
        assert np.abs(before[c][inner] - after[c][inner]).mean() < 0.04
        assert corr(before[c][inner], after[c][inner]) > 0.95
    # registration is right to the pixel: shifting by two pixels correlates clearly worse
    aligned = corr(before[0, 5:-5, 5:-5], after[0, 5:-5, 5:-5])
    shifted = corr(before[0, 5:-5, 7:-3], after[0, 5:-5, 5:-5])
    assert aligned > shifted + 0.05

    # and the other way round: the Mercator copy defines the grid
    with AlignedPair(merc, rio / "before.tif") as pair:
        assert pair.warped and (pair.width, pair.height) == (gdal.Open(str(merc)).RasterXSize,
                                                             gdal.Open(str(merc)).RasterYSize)
        b2, a2, v2 = pair.read(0, 0, pair.width, pair.height)
    assert corr(b2[1][v2], a2[1][v2]) > 0.95


def test_partial_overlap_is_exact_on_an_integer_offset(rio: Path, tmp_path: Path):
    crop = tmp_path / "crop.tif"
    gdal.Translate(str(crop), str(rio / "after.tif"), srcWin=[100, 50, 300, 200])
    with AlignedPair(rio / "before.tif", crop) as pair:
        assert pair.warped
        assert pair.overlap_window == (100, 50, 400, 250)
        _, after, valid = pair.read(0, 0, pair.width, pair.height)
        expected_valid = np.zeros_like(valid)
        expected_valid[50:250, 100:400] = True
        np.testing.assert_array_equal(valid, expected_valid)
        expected = normalise(raw(rio / "after.tif")[:, 50:250, 100:400], pair.stats_after)
        np.testing.assert_allclose(after[:, 50:250, 100:400], expected, atol=1e-6)
        assert not after[:, ~valid].any()  # outside the footprint both images are zero
        # a tile entirely outside the after raster is entirely invalid
        _, _, v = pair.read(0, 260, 64, 64)
        assert not v.any()
    with AlignedPair(crop, rio / "before.tif") as pair:  # the small raster defines the grid
        assert (pair.width, pair.height) == (300, 200)
        assert pair.overlap_window == (0, 0, 300, 200)
        before, after, valid = pair.read(0, 0, 300, 200)
        assert valid.all()


def test_no_overlap_names_both_rasters(rio: Path, tmp_path: Path):
    far = tmp_path / "far_away.tif"
    gdal.Translate(str(far), str(rio / "after.tif"), outputBounds=[10.0, 50.0, 10.04, 49.97])
    with pytest.raises(InputError) as err:
        AlignedPair(rio / "before.tif", far)
    msg = str(err.value)
    assert "do not overlap" in msg and "before.tif" in msg and "far_away.tif" in msg
    assert "-43.4" in msg and "10" in msg  # both extents are spelt out


def test_pairs_without_crs(shared_data: Path):
    levir = shared_data / "LEVIR-CD"
    name = "test_102_0512_0000.png"
    with AlignedPair(levir / "A" / name, levir / "B" / name) as pair:
        assert not pair.warped and pair.crs_wkt == ""
        before, after, valid = pair.read(-16, -16, 288, 288)
        assert valid[16:272, 16:272].all() and valid.sum() == 256 * 256
        np.testing.assert_allclose(before[:, 16:272, 16:272], raw(levir / "A" / name) / 255.0, atol=1e-6)
    other = shared_data / "LEVIR-CD-1024" / "B"
    with pytest.raises(InputError, match="different sizes"):
        AlignedPair(levir / "A" / name, sorted(other.glob("*.png"))[0])


def test_crs_on_one_side_only(rio: Path, tmp_path: Path):
    plain = tmp_path / "plain.tif"
    src = gdal.Open(str(rio / "after.tif"))
    ds = gdal.GetDriverByName("GTiff").Create(str(plain), src.RasterXSize, src.RasterYSize, 3, gdal.GDT_UInt16)
    ds.SetGeoTransform(src.GetGeoTransform())  # georeferenced grid but no CRS
    ds.WriteRaster(0, 0, src.RasterXSize, src.RasterYSize, src.ReadRaster(band_list=[1, 2, 3]))
    ds = src = None
    assert gdal.Open(str(plain)).GetProjection() == ""
    with pytest.raises(InputError, match="coordinate reference system"):
        AlignedPair(rio / "before.tif", plain)
    with pytest.raises(InputError, match="plain.tif"):
        AlignedPair(plain, rio / "before.tif")


def test_single_band_and_explicit_bands(rio: Path, tmp_path: Path):
    single = tmp_path / "single.tif"
    gdal.Translate(str(single), str(rio / "before.tif"), bandList=[2])
    with AlignedPair(single, single) as pair:
        assert pair.bands_before == (1,)
        before, after, valid = pair.read(0, 0, 64, 64)
        np.testing.assert_array_equal(before[0], before[1])
        np.testing.assert_array_equal(before[0], before[2])
    # per-date: each band's stretch is its own, whatever the other date selects
    with AlignedPair(rio / "before.tif", rio / "after.tif", bands_before=[3, 2, 1], bands_after=[2],
                     normalisation="per-date") as pair:
        rev, after, _ = pair.read(0, 0, 64, 64)
    with AlignedPair(rio / "before.tif", rio / "after.tif", normalisation="per-date") as pair:
        default, default_after, _ = pair.read(0, 0, 64, 64)
    np.testing.assert_array_equal(rev[0], default[2])
    np.testing.assert_array_equal(after[0], after[2])
    np.testing.assert_array_equal(after[0], default_after[1])
    with pytest.raises(InputError, match="Band 5 .*4 band"):
        AlignedPair(rio / "before.tif", rio / "after.tif", bands_before=[1, 2, 5])
    with pytest.raises(InputError, match="one band .* or three"):
        AlignedPair(rio / "before.tif", rio / "after.tif", bands_after=[1, 2])


def test_nodata_borders_in_either_input(rio: Path, tmp_path: Path):
    after_nd = with_nodata(rio / "after.tif", tmp_path / "after_nd.tif", 0, rows=20, cols=30)
    before_nd = with_nodata(rio / "before.tif", tmp_path / "before_nd.tif", 65535, rows=5, cols=60)
    with AlignedPair(before_nd, after_nd) as pair:
        assert not pair.warped
        assert all(lo > 0 for lo in pair.stats_after.low)  # the zero border is not in the stats
        before, after, valid = pair.read(0, 0, pair.width, pair.height)
    expected = np.ones_like(valid)
    expected[:20] = False
    expected[:, :60] = False
    np.testing.assert_array_equal(valid, expected)
    assert not before[:, ~valid].any() and not after[:, ~valid].any()


def test_nodata_border_survives_warping(rio: Path, tmp_path: Path):
    after_nd = with_nodata(rio / "after.tif", tmp_path / "after_nd.tif", 0, rows=20, cols=30)
    merc = tmp_path / "after_nd_3857.tif"
    gdal.Warp(str(merc), str(after_nd), dstSRS="EPSG:3857", xRes=7.0, yRes=7.0, resampleAlg="bilinear")
    with AlignedPair(rio / "before.tif", merc) as pair:
        assert pair.warped
        _, after, valid = pair.read(0, 0, pair.width, pair.height)
    assert not valid[:19].any() and not valid[:, :29].any()
    assert valid[22:-2, 32:-2].all()
    assert not after[:, ~valid].any()


def test_nan_in_float_imagery_is_invalid(rio: Path, tmp_path: Path):
    f = with_nodata(rio / "after.tif", tmp_path / "after_nan.tif", np.nan, rows=10, cols=0,
                    dtype=gdal.GDT_Float32)
    ds = gdal.Open(str(f), gdal.GA_Update)
    arr = ds.GetRasterBand(2).ReadAsArray()
    arr[100:110, 200:220] = np.inf
    ds.GetRasterBand(2).WriteArray(arr)
    ds = None
    with AlignedPair(rio / "before.tif", f) as pair:
        assert pair.after.dtype == "float32" and pair.after.nodata[0] is None
        before, after, valid = pair.read(0, 0, pair.width, pair.height)
        assert np.isfinite(after).all() and after.max() <= 1.0
    expected = np.ones_like(valid)
    expected[:10] = False
    expected[100:110, 200:220] = False
    np.testing.assert_array_equal(valid, expected)
    merc = tmp_path / "after_nan_3857.tif"
    gdal.Warp(str(merc), str(f), dstSRS="EPSG:3857", xRes=10.0, yRes=10.0, resampleAlg="near")
    with AlignedPair(rio / "before.tif", merc) as pair:
        _, after, valid = pair.read(0, 0, pair.width, pair.height)
    assert np.isfinite(after).all()
    assert not valid[:9].any() and not valid[101:109, 201:219].any()
    assert valid[12:-2, 2:-2].mean() > 0.98


def test_windows_beyond_the_border_are_reflected_and_invalid(rio: Path):
    with AlignedPair(rio / "before.tif", rio / "after.tif") as pair:
        before, after, valid = pair.read(-10, -20, 64, 64)
        assert before.shape == (3, 64, 64)
        assert not valid[:20].any() and not valid[:, :10].any() and valid[20:, 10:].all()
        np.testing.assert_array_equal(before[:, 0, 10:], before[:, 40, 10:])  # reflection
        np.testing.assert_array_equal(after[:, 25, 0], after[:, 25, 20])
        _, _, v = pair.read(pair.width - 10, pair.height - 10, 32, 32)
        assert v.sum() == 100
        b, a, v = pair.read(pair.width + 5, 0, 32, 32)
        assert not v.any() and not b.any() and not a.any()
        with pytest.raises(ValueError):
            pair.read(0, 0, 0, 10)
    with pytest.raises(RuntimeError):
        pair.read(0, 0, 8, 8)


def test_thin_raster_smaller_than_a_tile(tmp_path: Path):
    path = tmp_path / "thin.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 5, 1, 1, gdal.GDT_Byte)
    ds.GetRasterBand(1).WriteArray(np.array([[0, 50, 100, 150, 200]], np.uint8))
    ds = None
    with AlignedPair(path, path) as pair:
        before, _, valid = pair.read(-2, -3, 9, 7)
    assert valid.sum() == 5 and valid[3, 2:7].all()
    np.testing.assert_allclose(before[0, 0, 2:7], np.array([0, 50, 100, 150, 200]) / 255.0, atol=1e-6)


def test_missing_input_and_cleanup(rio: Path, tmp_path: Path):
    with pytest.raises(InputError, match="missing_after.tif"):
        AlignedPair(rio / "before.tif", tmp_path / "missing_after.tif")
    merc = tmp_path / "m.tif"
    gdal.Warp(str(merc), str(rio / "after.tif"), dstSRS="EPSG:3857")
    with AlignedPair(rio / "before.tif", merc) as pair:
        assert pair.warped
        assert any("samcd_" in name for name in (gdal.ReadDir("/vsimem") or []))
    assert not any("samcd_" in name for name in (gdal.ReadDir("/vsimem") or []))
