"""Rasterise digitised change polygons onto the before raster's grid (training labels for an area).

Contract of :func:`rasterise_changes`: the result is a uint8 array on the before raster's grid with
``1`` = change (inside a change polygon), ``0`` = reviewed no-change (inside a reviewed area, not
covered by a change polygon) and ``IGNORE`` (255) = not reviewed. Polygon layers in any CRS are
reprojected to the raster's CRS. When no reviewed-area layer is given, the reviewed area is the
bounding box of the change polygons grown by ``DEFAULT_MARGIN_FRACTION`` of its larger side (at least
``DEFAULT_MARGIN_PIXELS`` pixels), clipped to the raster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr

from .errors import InputError
from .raster import RasterInfo
from .writers import AtomicRasterWriter

__all__ = ["IGNORE", "DEFAULT_MARGIN_FRACTION", "DEFAULT_MARGIN_PIXELS", "AreaLabels", "rasterise_changes", "write_area_labels"]

log = logging.getLogger(__name__)

#: Label value of pixels outside every reviewed area (not used for training or validation).
IGNORE = 255
#: Default reviewed area: the change polygons' bounding box grown by this fraction of its larger side…
DEFAULT_MARGIN_FRACTION = 0.25
#: …and by at least this many pixels of the before raster.
DEFAULT_MARGIN_PIXELS = 32

_POLYGON_TYPES = {ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon, ogr.wkbMultiSurface}


@dataclass(frozen=True)
class AreaLabels:
    """A label array on the before grid and the reviewed extent (xmin, ymin, xmax, ymax, raster CRS)."""

    labels: np.ndarray
    extent: tuple[float, float, float, float]
    change_count: int


def _open_polygons(path: Path | str, what: str, where: str | None) -> tuple[gdal.Dataset, ogr.Layer]:
    ds = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    if ds is None or ds.GetLayerCount() == 0:
        raise InputError(f"{what}: cannot open {path} as a vector layer.")
    layer = ds.GetLayer(0)
    if ogr.GT_Flatten(layer.GetGeomType()) not in _POLYGON_TYPES and layer.GetGeomType() != ogr.wkbUnknown:
        raise InputError(
            f"{what}: {path} holds {ogr.GeometryTypeToName(layer.GetGeomType())} features; "
            "draw polygons around the areas instead."
        )
    if where:
        if layer.SetAttributeFilter(where) != 0:
            raise InputError(f"{what}: invalid attribute filter {where!r}.")
    return ds, layer


def _to_raster_crs(layer: ogr.Layer, info: RasterInfo, what: str) -> list[ogr.Geometry]:
    """Polygons of ``layer`` (after its filter) in the raster's CRS; non-polygons are refused."""
    target = osr.SpatialReference()
    transform = None
    source = layer.GetSpatialRef()
    if info.crs_wkt and source is not None:
        target.ImportFromWkt(info.crs_wkt)
        for srs in (target, source):
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if not source.IsSame(target):
            transform = osr.CoordinateTransformation(source, target)
    geoms = []
    layer.ResetReading()
    for feature in layer:
        geom = feature.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            continue
        if ogr.GT_Flatten(geom.GetGeometryType()) not in _POLYGON_TYPES:
            raise InputError(f"{what}: feature {feature.GetFID()} is a {geom.GetGeometryName()}, not a polygon.")
        geom = geom.Clone()
        if transform is not None:
            geom.Transform(transform)
        geoms.append(geom)
    return geoms


def _memory_layer(geoms: list[ogr.Geometry], info: RasterInfo) -> tuple[gdal.Dataset, ogr.Layer]:
    ds = gdal.GetDriverByName("Memory").Create("", 0, 0, 0, gdal.GDT_Unknown)
    srs = osr.SpatialReference()
    if info.crs_wkt:
        srs.ImportFromWkt(info.crs_wkt)
    layer = ds.CreateLayer("polygons", srs=srs if info.crs_wkt else None, geom_type=ogr.wkbMultiPolygon)
    for geom in geoms:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(geom)
        layer.CreateFeature(feature)
    return ds, layer


def _burn(geoms: list[ogr.Geometry], info: RasterInfo, fill: int, value: int) -> np.ndarray:
    raster = gdal.GetDriverByName("MEM").Create("", info.width, info.height, 1, gdal.GDT_Byte)
    raster.SetGeoTransform(info.geotransform)
    if info.crs_wkt:
        raster.SetProjection(info.crs_wkt)
    raster.GetRasterBand(1).Fill(fill)
    vds, layer = _memory_layer(geoms, info)
    gdal.RasterizeLayer(raster, [1], layer, burn_values=[value])
    del vds
    return raster.GetRasterBand(1).ReadAsArray()


def _intersect_extent(a, b):
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def _default_reviewed(geoms: list[ogr.Geometry], info: RasterInfo) -> ogr.Geometry:
    xs0, xs1, ys0, ys1 = zip(*(g.GetEnvelope() for g in geoms))
    xmin, xmax, ymin, ymax = min(xs0), max(xs1), min(ys0), max(ys1)
    pixel = max(abs(info.geotransform[1]), abs(info.geotransform[5]))
    margin = max(DEFAULT_MARGIN_FRACTION * max(xmax - xmin, ymax - ymin), DEFAULT_MARGIN_PIXELS * pixel)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((xmin - margin, ymin - margin), (xmax + margin, ymin - margin),
                 (xmax + margin, ymax + margin), (xmin - margin, ymax + margin), (xmin - margin, ymin - margin)):
        ring.AddPoint_2D(x, y)
    box = ogr.Geometry(ogr.wkbPolygon)
    box.AddGeometry(ring)
    return box


def rasterise_changes(
    info: RasterInfo,
    changes: Path | str,
    *,
    where: str | None = None,
    reviewed: Path | str | None = None,
) -> AreaLabels:
    """Labels (1 change, 0 reviewed no-change, ``IGNORE`` elsewhere) on ``info``'s grid.

    ``InputError`` when the change layer holds no polygons (after ``where``), holds points or lines,
    or when no change polygon touches the raster.
    """
    ds, layer = _open_polygons(changes, "Change polygons", where)
    geoms = _to_raster_crs(layer, info, "Change polygons")
    del ds
    if not geoms:
        suffix = f" matching {where!r}" if where else ""
        raise InputError(f"Change polygons: {changes} holds no polygons{suffix}; digitise at least one change.")
    change = _burn(geoms, info, 0, 1)
    if not change.any():
        raise InputError(
            f"Change polygons: none of the polygons in {changes} overlaps the before raster "
            f"(extent {tuple(round(v, 3) for v in info.extent)} in its CRS)."
        )
    if reviewed is not None:
        rds, rlayer = _open_polygons(reviewed, "Reviewed areas", None)
        areas = _to_raster_crs(rlayer, info, "Reviewed areas")
        del rds
        if not areas:
            raise InputError(f"Reviewed areas: {reviewed} holds no polygons.")
    else:
        areas = [_default_reviewed(geoms, info)]
    inside = _burn(areas, info, 0, 1).astype(bool) | change.astype(bool)
    labels = np.full((info.height, info.width), IGNORE, dtype=np.uint8)
    labels[inside] = 0
    labels[change.astype(bool)] = 1
    xs0, xs1, ys0, ys1 = zip(*(g.GetEnvelope() for g in areas))
    extent = _intersect_extent((min(xs0), min(ys0), max(xs1), max(ys1)), info.extent)
    log.info("Rasterised %d change polygons: %d change, %d no-change pixels", len(geoms),
             int(change.sum()), int((labels == 0).sum()))
    return AreaLabels(labels=labels, extent=extent, change_count=int(change.sum()))


def write_area_labels(info: RasterInfo, area: AreaLabels, path: Path | str) -> Path:
    """Write ``area``'s labels as a GeoTIFF on ``info``'s grid (nodata = ``IGNORE``), atomically."""
    with AtomicRasterWriter(path, info.width, info.height, info.geotransform, info.crs_wkt,
                            nodata=IGNORE, metadata={"sam_cd_labels": "1 change, 0 no-change, 255 ignored",
                                                      "reviewed_extent": ",".join(f"{v:.6f}" for v in area.extent)}) as out:
        out.write(area.labels, 0, 0)
    return Path(path)
