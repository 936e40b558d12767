"""Band statistics (fixed 8-bit range, robust percentiles elsewhere) and normalisation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.core.normalisation import SAMPLE_SIZE, BandStats, compute_band_stats, normalise

gdal.UseExceptions()


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None, options: list[str] | None = None) -> Path:
    data = data if data.ndim == 3 else data[np.newaxis]
    gtype = gdal.GetDataTypeByName({"uint8": "Byte", "uint16": "UInt16", "int16": "Int16",
                                    "float32": "Float32", "float64": "Float64"}[data.dtype.name])
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[2], data.shape[1], data.shape[0], gtype,
                                              options=options or [])
    for i, band in enumerate(data, start=1):
        ds.GetRasterBand(i).WriteArray(band)
        if nodata is not None:
            ds.GetRasterBand(i).SetNoDataValue(nodata)
    ds = None
    return path


def test_uint8_uses_fixed_range(tmp_path: Path):
    path = write_tif(tmp_path / "b.tif", np.full((2, 10, 10), 37, np.uint8))
    stats = compute_band_stats(path, [1, 2])
    assert stats == BandStats((0.0, 0.0), (255.0, 255.0))


def test_uint16_percentiles(tmp_path: Path):
    data = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    path = write_tif(tmp_path / "u16.tif", data)
    stats = compute_band_stats(path, [1])
    low, high = np.percentile(data, [2, 98])
    assert stats.low[0] == pytest.approx(low) and stats.high[0] == pytest.approx(high)


def test_real_uint16_imagery(shared_data: Path):
    path = shared_data / "geotiff" / "oscd_rio" / "before.tif"
    stats = compute_band_stats(path, [1, 2, 3])
    ds = gdal.Open(str(path))
    for i, b in enumerate((1, 2, 3)):
        arr = ds.GetRasterBand(b).ReadAsArray()
        assert arr.min() <= stats.low[i] < stats.high[i] <= arr.max()
        assert stats.low[i] == pytest.approx(np.percentile(arr, 2), rel=0.02)
        assert stats.high[i] == pytest.approx(np.percentile(arr, 98), rel=0.02)
    out = normalise(ds.ReadAsArray()[:3], stats)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert 0.2 < out.mean() < 0.8


def test_nodata_nan_and_inf_are_ignored(tmp_path: Path):
    data = np.full((50, 50), 500, np.uint16)
    data[10:40, 10:40] = np.arange(900, dtype=np.uint16).reshape(30, 30) + 1000
    data[:10] = 0  # nodata border
    data[10:, :10] = 0
    path = write_tif(tmp_path / "nd.tif", data, nodata=0)
    stats = compute_band_stats(path, [1])
    valid = data[data != 0]
    assert stats.low[0] == pytest.approx(np.percentile(valid, 2))
    assert stats.high[0] == pytest.approx(np.percentile(valid, 98))

    f = np.linspace(0.0, 1.0, 400, dtype=np.float32).reshape(20, 20)
    f[:5] = np.nan
    f[5, :] = np.inf
    f[6, :] = -np.inf
    path = write_tif(tmp_path / "nan.tif", f)
    stats = compute_band_stats(path, [1])
    finite = f[np.isfinite(f)]
    assert stats.low[0] == pytest.approx(np.percentile(finite, 2))
    assert stats.high[0] == pytest.approx(np.percentile(finite, 98))


def test_alpha_mask_is_ignored(tmp_path: Path):
    rgb = np.full((3, 30, 30), 7, np.uint16)
    rgb[:, :, 15:] = np.arange(30 * 15, dtype=np.uint16).reshape(30, 15) + 100
    alpha = np.zeros((1, 30, 30), np.uint16)
    alpha[:, :, 15:] = 65535
    path = write_tif(tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), options=["PHOTOMETRIC=RGB", "ALPHA=YES"])
    stats = compute_band_stats(path, [1])
    assert stats.low[0] == pytest.approx(np.percentile(rgb[0, :, 15:], 2))


def test_constant_and_empty_bands_do_not_divide_by_zero(tmp_path: Path):
    path = write_tif(tmp_path / "const.tif", np.full((2, 10, 10), 1234, np.uint16))
    stats = compute_band_stats(path, [1])
    assert stats.low[0] == 1234 and stats.high[0] == 1235
    out = normalise(np.full((1, 4, 4), 1234, np.uint16), stats)
    assert np.all(out == 0.0)
    path = write_tif(tmp_path / "allnd.tif", np.full((10, 10), -5, np.int16), nodata=-5)
    stats = compute_band_stats(path, [1])
    assert stats.high[0] > stats.low[0]
    out = normalise(np.zeros((1, 2, 2), np.float32), BandStats((3.0,), (3.0,)))  # degenerate input stats
    assert np.all(np.isfinite(out))


def test_decimated_read_for_large_rasters(tmp_path: Path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, size=(SAMPLE_SIZE * 2 + 100, 150), dtype=np.uint16)
    path = write_tif(tmp_path / "tall.tif", data)
    stats = compute_band_stats(path, [1])
    low, high = np.percentile(data, [2, 98])
    assert stats.low[0] == pytest.approx(low, rel=0.1)
    assert stats.high[0] == pytest.approx(high, rel=0.02)


def test_normalise_scales_clips_and_cleans():
    stats = BandStats((100.0, 0.0), (200.0, 1.0))
    arr = np.array([[[50, 100, 150, 250]], [[0, 0, 1, 2]]], dtype=np.float64)
    arr[1, 0, 3] = np.nan
    out = normalise(arr, stats)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(out[1, 0], [0.0, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError):
        normalise(arr[0], stats)
    with pytest.raises(ValueError):
        normalise(arr[:1], stats)


def test_band_out_of_range(tmp_path: Path):
    path = write_tif(tmp_path / "one.tif", np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match="Band 2 .*one.tif.*1 band"):
        compute_band_stats(path, [2])


# ---------------------------------------------------------------- one stretch for both dates
def _copy_with(src: Path, dst: Path, paint: tuple[slice, slice] | None = None,
               extend_right: int = 0) -> Path:
    """``src`` written to ``dst`` (same CRS/origin), optionally with a saturated block painted in
    and ``extend_right`` extra columns east of the scene, saturated too (a larger after scene)."""
    ds = gdal.Open(str(src))
    data = ds.ReadAsArray()
    top = np.iinfo(data.dtype).max
    if extend_right:
        data = np.concatenate([data, np.full(data.shape[:2] + (extend_right,), top, data.dtype)], axis=2)
    if paint is not None:
        data[(slice(None),) + paint] = top
    write_tif(dst, data)
    out = gdal.Open(str(dst), gdal.GA_Update)
    out.SetGeoTransform(ds.GetGeoTransform())
    out.SetProjection(ds.GetProjection())
    out = None
    return dst


@pytest.fixture()
def rio_before(shared_data: Path, tmp_path: Path) -> Path:
    """The real OSCD Rio before scene (Sentinel-2, uint16: stretched by percentiles)."""
    return _copy_with(shared_data / "geotiff" / "oscd_rio" / "before.tif", tmp_path / "before.tif")


def _read_all(before: Path, after: Path, normalisation: str) -> tuple[np.ndarray, np.ndarray]:
    from sam_cd_plugin.core.alignment import AlignedPair

    with AlignedPair(before, after, normalisation=normalisation) as pair:
        b, a, valid = pair.read(0, 0, pair.width, pair.height)
        assert valid.all()
        assert pair.normalisation == normalisation
        return b, a


@pytest.mark.parametrize("normalisation", ["joint", "per-date"])
def test_joint_stretch_of_an_unchanged_area_ignores_a_big_change_elsewhere(
        rio_before: Path, tmp_path: Path, normalisation: str):
    # the after scene is the before scene with the west 40 % painted saturated (a big change)
    width = gdal.Open(str(rio_before)).RasterXSize
    west = slice(0, int(0.4 * width))
    after = _copy_with(rio_before, tmp_path / "after.tif", paint=(slice(None), west))
    before_n, after_n = _read_all(rio_before, after, normalisation)
    east = (slice(None), slice(None), slice(west.stop, None))
    if normalisation == "joint":  # unchanged pixels: the same values in both dates
        np.testing.assert_array_equal(before_n[east], after_n[east])
    else:  # what per-scene stretches did: the change shifts the after stretch of unchanged pixels
        assert np.abs(before_n[east] - after_n[east]).mean() > 0.02


@pytest.mark.parametrize("normalisation", ["joint", "per-date"])
def test_joint_stretch_ignores_what_the_after_scene_holds_outside_the_before_scene(
        rio_before: Path, tmp_path: Path, normalisation: str):
    same = _copy_with(rio_before, tmp_path / "same.tif")
    wider = _copy_with(rio_before, tmp_path / "wider.tif", extend_right=300)  # bright land east
    plain_before, plain_after = _read_all(rio_before, same, normalisation)
    before_n, after_n = _read_all(rio_before, wider, normalisation)
    if normalisation == "joint":
        np.testing.assert_array_equal(before_n, plain_before)
        np.testing.assert_allclose(after_n, plain_after, atol=1e-6)
        np.testing.assert_allclose(after_n, before_n, atol=1e-6)
    else:
        assert np.abs(after_n - plain_after).mean() > 0.02


def test_joint_stretch_pools_both_dates_over_pixels_valid_in_both():
    from sam_cd_plugin.core.normalisation import joint_band_stats

    before = np.arange(100, dtype=np.float64).reshape(1, 10, 10)
    after = before + 1000
    valid = np.zeros((10, 10), bool)
    valid[:5] = True  # before 0..49 and after 1000..1049 count; the rest does not
    stats = joint_band_stats(before, after, valid, [False])
    pooled = np.concatenate([before[0][valid], after[0][valid]])
    assert stats == BandStats(tuple(np.percentile(pooled, [2])), tuple(np.percentile(pooled, [98])))
    assert joint_band_stats(before, after, valid, [True]) == BandStats((0.0,), (255.0,))
