"""A user digitises change polygons over a real UTM pair; they become labels on the before grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from sam_cd_plugin.core.area_labels import IGNORE, rasterise_changes, write_area_labels
from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.core.raster import raster_info, read_label

gdal.UseExceptions()


def _polygonise(label_path: Path, out: Path, epsg: int | None = None) -> Path:
    """Digitised change polygons: the label raster's change pixels as a GeoPackage (optionally reprojected)."""
    src = gdal.Open(str(label_path))
    mask = gdal.GetDriverByName("MEM").Create("", src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    mask.SetGeoTransform(src.GetGeoTransform())
    mask.SetProjection(src.GetProjection())
    mask.GetRasterBand(1).WriteArray((src.GetRasterBand(1).ReadAsArray() > 0).astype(np.uint8))
    srs = osr.SpatialReference(wkt=src.GetProjection())
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(out))
    layer = vds.CreateLayer("changes", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    band = mask.GetRasterBand(1)
    gdal.Polygonize(band, band, layer, 0)
    vds = None
    if epsg is not None:
        reprojected = out.with_name(out.stem + f"_{epsg}.gpkg")
        gdal.VectorTranslate(str(reprojected), str(out), dstSRS=f"EPSG:{epsg}", format="GPKG")
        return reprojected
    return out


def _box_layer(out: Path, wkt_srs: str, boxes, geom_type=ogr.wkbPolygon) -> Path:
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(out))
    layer = vds.CreateLayer("layer", srs=osr.SpatialReference(wkt=wkt_srs), geom_type=geom_type)
    for wkt in boxes:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    vds = None
    return out


def _rect(x0, y0, x1, y1) -> str:
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


@pytest.fixture
def taizhou(shared_data: Path) -> Path:
    return shared_data / "geotiff" / "taizhou"


def test_polygons_from_the_label_raster_reproduce_it(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    changes = _polygonise(taizhou / "label_change.tif", tmp_path / "changes.gpkg")
    area = rasterise_changes(info, changes)
    truth = read_label(taizhou / "label_change.tif") > 0
    assert area.labels.shape == (info.height, info.width)
    assert np.array_equal(area.labels == 1, truth)
    assert set(np.unique(area.labels)) <= {0, 1, IGNORE}
    assert area.change_count == int(truth.sum())


def test_geographic_polygons_over_a_utm_raster_are_reprojected(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    changes = _polygonise(taizhou / "label_change.tif", tmp_path / "changes.gpkg", epsg=4326)
    area = rasterise_changes(info, changes)
    truth = read_label(taizhou / "label_change.tif") > 0
    agreement = (area.labels == 1) == truth
    assert agreement.mean() > 0.99  # edges move by the reprojection of the polygon vertices only


def test_reviewed_area_inside_is_no_change_outside_is_ignored(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    x0, y0, x1, y1 = info.extent
    gt = info.geotransform
    # change: pixels 100..120 (columns) × 100..120 (rows); reviewed: columns/rows 50..200
    cx0, cy1 = gt[0] + 100 * gt[1], gt[3] + 100 * gt[5]
    cx1, cy0 = gt[0] + 120 * gt[1], gt[3] + 120 * gt[5]
    rx0, ry1 = gt[0] + 50 * gt[1], gt[3] + 50 * gt[5]
    rx1, ry0 = gt[0] + 200 * gt[1], gt[3] + 200 * gt[5]
    changes = _box_layer(tmp_path / "c.gpkg", info.crs_wkt, [_rect(cx0, cy0, cx1, cy1)])
    reviewed = _box_layer(tmp_path / "r.gpkg", info.crs_wkt, [_rect(rx0, ry0, rx1, ry1)])
    labels = rasterise_changes(info, changes, reviewed=reviewed).labels
    assert (labels[100:120, 100:120] == 1).all()
    inside = labels[50:200, 50:200].copy()
    inside[50:70, 50:70] = 0
    assert (inside == 0).all()
    assert (labels[:50] == IGNORE).all() and (labels[200:] == IGNORE).all()
    assert (labels[:, :50] == IGNORE).all() and (labels[:, 200:] == IGNORE).all()


def test_default_reviewed_area_is_the_grown_bounding_box(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    gt = info.geotransform
    cx0, cy1 = gt[0] + 100 * gt[1], gt[3] + 100 * gt[5]
    cx1, cy0 = gt[0] + 120 * gt[1], gt[3] + 120 * gt[5]
    changes = _box_layer(tmp_path / "c.gpkg", info.crs_wkt, [_rect(cx0, cy0, cx1, cy1)])
    labels = rasterise_changes(info, changes).labels
    # margin: max(25 % of 20 px, 32 px) = 32 px around the box
    assert (labels[68:152, 68:152] != IGNORE).all()
    assert (labels[:66] == IGNORE).all() and (labels[154:] == IGNORE).all()
    assert int((labels == 1).sum()) == 400


def test_polygons_outside_the_raster_are_refused(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    x0, y0, x1, y1 = info.extent
    far = _rect(x1 + 1000, y1 + 1000, x1 + 2000, y1 + 2000)
    with pytest.raises(InputError, match="overlaps"):
        rasterise_changes(info, _box_layer(tmp_path / "c.gpkg", info.crs_wkt, [far]))


def test_a_point_layer_is_refused(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    x0, y0, x1, y1 = info.extent
    points = _box_layer(tmp_path / "p.gpkg", info.crs_wkt, [f"POINT({(x0 + x1) / 2} {(y0 + y1) / 2})"],
                        geom_type=ogr.wkbPoint)
    with pytest.raises(InputError, match="polygons"):
        rasterise_changes(info, points)


def test_no_polygons_after_the_filter_is_refused(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    changes = _polygonise(taizhou / "label_change.tif", tmp_path / "changes.gpkg")
    with pytest.raises(InputError, match="no polygons"):
        rasterise_changes(info, changes, where="value = 7")
    empty = _box_layer(tmp_path / "e.gpkg", info.crs_wkt, [])
    with pytest.raises(InputError, match="no polygons"):
        rasterise_changes(info, empty)


def test_labels_are_written_on_the_before_grid(taizhou: Path, tmp_path: Path):
    info = raster_info(taizhou / "before.tif")
    area = rasterise_changes(info, _polygonise(taizhou / "label_change.tif", tmp_path / "changes.gpkg"))
    out = write_area_labels(info, area, tmp_path / "labels.tif")
    written = raster_info(out)
    assert written.geotransform == pytest.approx(info.geotransform)
    assert (written.width, written.height) == (info.width, info.height)
    assert written.nodata == (IGNORE,)
    assert np.array_equal(gdal.Open(str(out)).ReadAsArray(), area.labels)
    assert not list(tmp_path.glob("*partial*"))
