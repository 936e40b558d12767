"""Atomic GeoTIFF writer and output-path checks."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from sam_cd_plugin.core.errors import OutputError
from sam_cd_plugin.core.writers import AtomicRasterWriter, check_output_path, partial_path

gdal.UseExceptions()

GT = (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0)


def utm_wkt() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def test_writes_windows_grid_nodata_and_metadata(tmp_path: Path):
    out = tmp_path / "mask.tif"
    data = (np.arange(300 * 200).reshape(200, 300) % 3).astype(np.uint8)
    with AtomicRasterWriter(out, 300, 200, GT, utm_wkt(), metadata={"SAMCD_METHOD": "x", "SAMCD_NONE": None,
                                                                   "SAMCD_DELTA": 0.3}) as w:
        assert partial_path(out).exists() and not out.exists()
        w.write(data[:100], 0, 0)
        w.write(data[100:, :150], 0, 100)
        w.write(data[100:, 150:], 150, 100)
    assert out.exists() and not partial_path(out).exists()
    ds = gdal.Open(str(out))
    np.testing.assert_array_equal(ds.ReadAsArray(), data)
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() == 255
    assert ds.GetGeoTransform() == GT
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    assert srs.GetAuthorityCode(None) == "32633"
    md = ds.GetMetadata()
    assert md["SAMCD_METHOD"] == "x" and md["SAMCD_DELTA"] == "0.3" and "SAMCD_NONE" not in md
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert band.GetBlockSize() == [256, 256]


def test_float_multiband_and_no_georeferencing(tmp_path: Path):
    out = tmp_path / "prob.tif"
    arr = np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)
    with AtomicRasterWriter(out, 50, 40, (0.0, 1.0, 0.0, 0.0, 0.0, 1.0), "", dtype="float32",
                            nodata=-1.0, band_count=2) as w:
        w.write(arr[:, :20], 0, 0)
        w.write(arr[:, 20:], 0, 20)
    ds = gdal.Open(str(out))
    np.testing.assert_array_equal(ds.ReadAsArray(), arr)
    assert ds.GetRasterBand(2).GetNoDataValue() == -1.0
    assert ds.GetGeoTransform(can_return_null=True) is None
    assert ds.GetProjection() == ""


def test_exception_inside_block_leaves_nothing(tmp_path: Path):
    out = tmp_path / "mask.tif"
    with pytest.raises(KeyError):
        with AtomicRasterWriter(out, 10, 10, GT, utm_wkt()) as w:
            w.write(np.ones((10, 10), np.uint8), 0, 0)
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_previous_file(tmp_path: Path):
    out = tmp_path / "mask.tif"
    with AtomicRasterWriter(out, 10, 10, GT, utm_wkt()) as w:
        w.write(np.ones((10, 10), np.uint8), 0, 0)
    with pytest.raises(RuntimeError):
        with AtomicRasterWriter(out, 10, 10, GT, utm_wkt()) as w:
            w.write(np.zeros((10, 10), np.uint8), 0, 0)
            raise RuntimeError("cancelled")
    assert gdal.Open(str(out)).ReadAsArray().min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


def test_success_replaces_existing_file_and_stale_aux(tmp_path: Path):
    out = tmp_path / "mask.tif"
    out.write_bytes(b"old")
    aux = tmp_path / "mask.tif.aux.xml"
    aux.write_text("<PAMDataset/>")
    with AtomicRasterWriter(out, 4, 4, GT, utm_wkt()) as w:
        w.write(np.full((4, 4), 1, np.uint8), 0, 0)
    assert gdal.Open(str(out)).ReadAsArray().sum() == 16
    assert not aux.exists()


def test_write_outside_output_raises(tmp_path: Path):
    with pytest.raises(ValueError):
        with AtomicRasterWriter(tmp_path / "m.tif", 10, 10, GT, "") as w:
            w.write(np.zeros((5, 5), np.uint8), 8, 0)
    assert list(tmp_path.iterdir()) == []
    w = AtomicRasterWriter(tmp_path / "m.tif", 10, 10, GT, "")
    with pytest.raises(RuntimeError):
        w.write(np.zeros((5, 5), np.uint8), 0, 0)


def test_missing_or_unwritable_folder(tmp_path: Path):
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.tif")
    with pytest.raises(OutputError, match="does not exist"):
        with AtomicRasterWriter(tmp_path / "missing" / "out.tif", 4, 4, GT, ""):
            pass
    # /proc refuses new files even for root
    with pytest.raises(OutputError, match="Cannot write"):
        check_output_path("/proc/sam_cd_out.tif")
    with pytest.raises(OutputError):
        with AtomicRasterWriter("/proc/sam_cd_out.tif", 4, 4, GT, ""):
            pass


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="Cannot write"):
            check_output_path(folder / "out.tif")
    finally:
        folder.chmod(0o755)


def test_output_equal_to_input_or_folder(tmp_path: Path):
    inp = tmp_path / "before.tif"
    inp.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    with pytest.raises(OutputError, match="also an input"):
        check_output_path(tmp_path / "sub" / ".." / "before.tif", inputs=[tmp_path / "after.tif", inp])
    link = tmp_path / "sub" / "link.tif"
    link.symlink_to(inp)
    with pytest.raises(OutputError, match="also an input"):
        check_output_path(link, inputs=[str(inp)])
    with pytest.raises(OutputError, match="is a folder"):
        check_output_path(tmp_path)
    ok = check_output_path(Path(os.path.relpath(tmp_path / "out.tif")), inputs=[inp])
    assert ok.is_absolute() and ok == (tmp_path / "out.tif").absolute()
    assert not any(p.name.startswith(".samcd-probe") for p in tmp_path.iterdir())


def test_write_rows_in_uneven_bands_equals_one_write_and_drops_finished_blocks(tmp_path: Path):
    data = np.random.default_rng(0).random((700, 530)).astype(np.float32)
    out = tmp_path / "rows.tif"
    with AtomicRasterWriter(out, 530, 700, GT, utm_wkt(), dtype="float32", nodata=-1) as w:
        y = 0
        for h in (100, 192, 192, 17, 199):
            w.write_rows(data[y:y + h], y)
            y += h
            assert w._rows_written == y and w._buffered == (y % 256 if y < 700 else 0)
        with pytest.raises(ValueError, match="expects row"):
            w.write_rows(data[:1], 3)
    ds = gdal.Open(str(out))
    np.testing.assert_array_equal(ds.ReadAsArray(), data)


def test_cog_scale_and_scratch(tmp_path: Path):
    data = (np.arange(600 * 400).reshape(400, 600) % 101).astype(np.uint8)
    out = tmp_path / "pct.tif"
    with AtomicRasterWriter(out, 600, 400, GT, utm_wkt(), nodata=255, scale=0.01, cog=True) as w:
        w.write(data, 0, 0)
        finished = w.finish()
        assert finished == partial_path(out) and finished.exists() and not out.exists()
    ds = gdal.Open(str(out))
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    band = ds.GetRasterBand(1)
    assert band.GetScale() == pytest.approx(0.01) and band.GetOverviewCount() >= 1
    np.testing.assert_array_equal(band.ReadAsArray(), data)
    del band, ds
    scratch = tmp_path / "scratch.tif"
    with AtomicRasterWriter(scratch, 60, 40, GT, scratch=True) as w:
        w.write(data[:40, :60], 0, 0)
        assert gdal.Open(str(w.finish())).RasterXSize == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pct.tif"]
