"""Polygonize a synthetic change mask with known areas into a GeoPackage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from sam_cd_plugin.core.errors import InputError, OutputError
from sam_cd_plugin.core.polygonize import LAYER_NAME, polygonize_mask

gdal.UseExceptions()
ogr.UseExceptions()

GT = (300000.0, 2.0, 0.0, 5000000.0, 0.0, -2.0)  # 2 m pixels: 4 m² each


def write(path: Path, arr: np.ndarray, gtype: int, nodata: float | None = None, crs: bool = True) -> Path:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[1], arr.shape[0], 1, gtype)
    ds.SetGeoTransform(GT)
    if crs:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32633)
        ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(arr)
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    ds = None
    return path


@pytest.fixture()
def mask_and_prob(tmp_path: Path):
    m = np.zeros((50, 60), np.uint8)
    m[5:10, 5:15] = 1           # 50 px -> 200 m²
    m[20:22, 30:31] = 1         # 2 px  -> 8 m²
    m[30:40, 40:50] = 1         # 100 px with a 9 px hole -> 364 m²
    m[33:36, 43:46] = 0
    m[0:3, 55:60] = 255         # nodata: never a polygon
    m[45:48, 0:4] = 2           # other values are not change either
    prob = np.random.default_rng(0).random((50, 60)).astype(np.float32)
    prob[5, 5] = -1.0           # nodata in the probability raster is ignored
    mask_path = write(tmp_path / "mask.tif", m, gdal.GDT_Byte, nodata=255)
    prob_path = write(tmp_path / "prob.tif", prob, gdal.GDT_Float32, nodata=-1.0)
    return m, prob, mask_path, prob_path


def read_features(path: Path) -> list[dict]:
    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName(LAYER_NAME)
    assert layer is not None
    rows = []
    for f in layer:
        row = f.items()
        row["geometry_area"] = f.GetGeometryRef().GetArea()
        rows.append(row)
    return rows


def test_areas_probabilities_and_attributes(tmp_path: Path, mask_and_prob):
    m, prob, mask_path, prob_path = mask_and_prob
    out = tmp_path / "changes.gpkg"
    n = polygonize_mask(mask_path, out, prob_path, attributes={"method": "sam-cem-cd", "delta": 0.3,
                                                               "tile": 512, "bands": None})
    assert n == 3
    rows = sorted(read_features(out), key=lambda r: r["area"])
    assert [r["area"] for r in rows] == [8.0, 200.0, 364.0]
    assert all(r["area"] == pytest.approx(r["geometry_area"]) for r in rows)
    small, rect, ring = rows
    assert small["mean_probability"] == pytest.approx(prob[20:22, 30].mean(), rel=1e-6)
    rect_px = prob[5:10, 5:15].ravel()[1:]  # first pixel is probability nodata
    assert rect["mean_probability"] == pytest.approx(rect_px.mean(), rel=1e-6)
    ring_sel = m[30:40, 40:50] == 1
    assert ring["mean_probability"] == pytest.approx(prob[30:40, 40:50][ring_sel].mean(), rel=1e-6)
    assert all(r["method"] == "sam-cem-cd" and r["delta"] == 0.3 and r["tile"] == 512 for r in rows)
    assert all(r["bands"] is None for r in rows)
    ds = ogr.Open(str(out))
    layer = ds.GetLayerByName(LAYER_NAME)
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32633"
    # Clone: a geometry reference dies with its feature (GDAL < 3.8 bindings).
    ring_geom = [f.GetGeometryRef().Clone() for f in layer if f.GetField("area") == 364.0][0]
    assert ring_geom.GetGeometryCount() == 2  # outer ring and the hole
    minx, maxx, miny, maxy = ring_geom.GetEnvelope()
    assert (minx, maxx, miny, maxy) == (300080.0, 300100.0, 4999920.0, 4999940.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["changes.gpkg", "mask.tif", "prob.tif"]


def test_min_area_and_no_probability(tmp_path: Path, mask_and_prob):
    _, _, mask_path, _ = mask_and_prob
    out = tmp_path / "big.gpkg"
    assert polygonize_mask(mask_path, out, min_area=10.0) == 2
    rows = read_features(out)
    assert sorted(r["area"] for r in rows) == [200.0, 364.0]
    assert all(r["mean_probability"] is None for r in rows)
    assert polygonize_mask(mask_path, out, min_area=364.0) == 1  # replaces the file; ties are kept
    assert len(read_features(out)) == 1


def test_empty_mask_gives_empty_layer(tmp_path: Path):
    mask = write(tmp_path / "empty.tif", np.zeros((20, 20), np.uint8), gdal.GDT_Byte, crs=False)
    out = tmp_path / "none.gpkg"
    assert polygonize_mask(mask, out) == 0
    assert read_features(out) == []


def test_failures_leave_nothing(tmp_path: Path, mask_and_prob):
    _, _, mask_path, _ = mask_and_prob
    wrong = write(tmp_path / "wrong.tif", np.zeros((10, 10), np.float32), gdal.GDT_Float32)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError, match="does not match"):
        polygonize_mask(mask_path, tmp_path / "x.gpkg", wrong)
    folder = tmp_path / "already_a_folder.gpkg"
    folder.mkdir()
    with pytest.raises(OutputError):
        polygonize_mask(mask_path, folder)
    folder.rmdir()
    with pytest.raises(OutputError, match="does not exist"):
        polygonize_mask(mask_path, tmp_path / "missing" / "x.gpkg")
    with pytest.raises(OutputError, match="also an input"):
        polygonize_mask(mask_path, mask_path)
    with pytest.raises(ValueError, match="reserved"):
        polygonize_mask(mask_path, tmp_path / "x.gpkg", attributes={"area": 1})
    with pytest.raises(InputError, match="nope.tif"):
        polygonize_mask(tmp_path / "nope.tif", tmp_path / "x.gpkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
