"""Raster description and small-image reading on real samples and synthetic files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from sam_cd_plugin.core.errors import InputError, SamCdError
from sam_cd_plugin.core.raster import DEFAULT_GEOTRANSFORM, raster_info, read_image, read_label

gdal.UseExceptions()


def test_info_of_georeferenced_uint16(shared_data: Path):
    path = shared_data / "geotiff" / "oscd_rio" / "before.tif"
    info = raster_info(path)
    assert (info.width, info.height, info.band_count) == (426, 353, 4)
    assert info.dtype == "uint16"
    assert info.has_crs and "WGS 84" in info.crs_wkt
    assert info.nodata == (None, None, None, None)
    assert info.geotransform[1] > 0 > info.geotransform[5]
    xmin, ymin, xmax, ymax = info.extent
    assert xmin == pytest.approx(info.geotransform[0])
    assert xmax == pytest.approx(info.geotransform[0] + 426 * info.geotransform[1])
    assert ymin < ymax
    assert info.path == path


def test_info_of_png_without_georeferencing(shared_data: Path):
    info = raster_info(shared_data / "LEVIR-CD" / "A" / "test_102_0512_0000.png")
    assert (info.width, info.height, info.band_count, info.dtype) == (256, 256, 3, "uint8")
    assert info.crs_wkt == "" and not info.has_crs
    assert info.geotransform == DEFAULT_GEOTRANSFORM


def test_missing_file_names_the_file(tmp_path: Path):
    missing = tmp_path / "nope.tif"
    with pytest.raises(InputError, match="nope.tif"):
        raster_info(missing)


def test_not_a_raster(tmp_path: Path):
    text = tmp_path / "notes.tif"
    text.write_text("hello, not an image")
    with pytest.raises(InputError, match="notes.tif"):
        raster_info(text)
    with pytest.raises(SamCdError):
        read_image(text)


def test_vector_file_is_not_a_raster(tmp_path: Path):
    path = tmp_path / "vector.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds.CreateLayer("points", srs=srs, geom_type=ogr.wkbPoint)
    ds = None
    with pytest.raises(InputError, match="vector.gpkg"):
        raster_info(path)


def test_read_image_and_label(shared_data: Path):
    img = read_image(shared_data / "LEVIR-CD" / "A" / "test_102_0512_0000.png")
    assert img.shape == (3, 256, 256) and img.dtype == np.uint8
    label_path = shared_data / "LEVIR-CD" / "label" / "test_102_0512_0000.png"
    raw = read_image(label_path)
    assert raw.shape == (1, 256, 256)
    label = read_label(label_path)
    assert label.dtype == bool and label.shape == (256, 256)
    np.testing.assert_array_equal(label, raw[0] != 0)
    assert set(np.unique(raw)) <= {0, 255}
    assert label.any()


def test_read_label_accepts_zero_one_and_palette(tmp_path: Path):
    arr = np.zeros((8, 9), np.uint8)
    arr[2:4, 3:7] = 1
    path = tmp_path / "label01.png"
    mem = gdal.GetDriverByName("MEM").Create("", 9, 8, 1, gdal.GDT_Byte)
    mem.GetRasterBand(1).WriteArray(arr)
    table = gdal.ColorTable()
    table.SetColorEntry(0, (0, 0, 0, 255))
    table.SetColorEntry(1, (255, 0, 0, 255))
    mem.GetRasterBand(1).SetColorTable(table)
    gdal.GetDriverByName("PNG").CreateCopy(str(path), mem)
    mem = None
    np.testing.assert_array_equal(read_label(path), arr == 1)
    rgb = read_image(path)  # paletted image is expanded to RGB
    assert rgb.shape == (3, 8, 9)
    assert tuple(rgb[:, 2, 3]) == (255, 0, 0) and tuple(rgb[:, 0, 0]) == (0, 0, 0)
