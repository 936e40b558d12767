"""Change polygons from a change mask, written atomically to a GeoPackage.

:func:`polygonize_mask` turns the pixels equal to 1 in a change mask (0 = no change,
1 = change, anything else such as nodata 255 = ignored) into 4-connected polygons in the layer
``changes`` of a new GeoPackage, with fields

* ``area``: polygon area in map units (square CRS units; pixels for rasters without a CRS),
* ``mean_probability``: mean of the probability raster over the polygon's pixels (nodata and
  NaN ignored; the band's scale/offset applied, e.g. a uint8 percent raster), or null when no
  probability raster is given,
* one field per entry of ``attributes`` (constant for every feature).

Polygons smaller than ``min_area`` are dropped. Work is streamed: the mask is binarised block
by block into a scratch GeoTIFF, GDAL polygonizes it into a scratch GeoPackage, and per-polygon
probability means come from a rasterised polygon-id grid read block by block. Everything is
written under temporary names in the output folder and renamed at the end; on failure no
output (and no scratch file) is left. An existing output file is replaced.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, ogr, osr

from .errors import InputError, OutputError
from .raster import DEFAULT_GEOTRANSFORM, open_raster
from .writers import check_output_path

gdal.UseExceptions()
ogr.UseExceptions()

log = logging.getLogger(__name__)

__all__ = ["polygonize_mask", "LAYER_NAME"]

LAYER_NAME = "changes"
_RESERVED = {"fid", "geom", "area", "mean_probability"}
_ROWS_PER_CHUNK = 256
_SCRATCH_LAYER = "polygons"
# Polygon id as an ordinary attribute (a bare "fid" would become the result's FID).
_ZID_SQL = 'SELECT (fid + 0) AS zid, geom FROM "polygons"'
_MAX_FID_SQL = 'SELECT MAX(fid) AS max_fid FROM "polygons"'


def _row_chunks(width: int, height: int, rows: int = _ROWS_PER_CHUNK) -> Iterator[tuple[int, int, int, int]]:
    for y in range(0, height, rows):
        yield 0, y, width, min(rows, height - y)


def _field_for(name: str, value: Any) -> ogr.FieldDefn:
    if isinstance(value, bool):
        fd = ogr.FieldDefn(name, ogr.OFTInteger)
        fd.SetSubType(ogr.OFSTBoolean)
    elif isinstance(value, (int, np.integer)):
        fd = ogr.FieldDefn(name, ogr.OFTInteger64)
    elif isinstance(value, (float, np.floating)):
        fd = ogr.FieldDefn(name, ogr.OFTReal)
    else:
        fd = ogr.FieldDefn(name, ogr.OFTString)
    return fd


def _set_value(feature: ogr.Feature, name: str, value: Any) -> None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        feature.SetFieldNull(name)
    elif isinstance(value, bool):
        feature.SetField(name, int(value))
    elif isinstance(value, (int, np.integer)):
        feature.SetField(name, int(value))
    elif isinstance(value, (float, np.floating)):
        feature.SetField(name, float(value))
    else:
        feature.SetField(name, str(value))


def _check_attributes(attributes: Mapping[str, Any]) -> None:
    for name in attributes:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"attribute names must be non-empty strings, got {name!r}")
        if name.lower() in _RESERVED:
            raise ValueError(f"attribute name {name!r} is reserved ({', '.join(sorted(_RESERVED))})")


def _binarise(mask_ds: gdal.Dataset, path: str) -> gdal.Dataset:
    """Scratch GeoTIFF at ``path``: 1 where the mask band equals 1, else 0 (same grid)."""
    w, h = mask_ds.RasterXSize, mask_ds.RasterYSize
    out = gdal.GetDriverByName("GTiff").Create(
        path, w, h, 1, gdal.GDT_Byte, options=["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"])
    gt = mask_ds.GetGeoTransform(can_return_null=True)
    if gt:
        out.SetGeoTransform(gt)
    if mask_ds.GetProjection():
        out.SetProjection(mask_ds.GetProjection())
    src, dst = mask_ds.GetRasterBand(1), out.GetRasterBand(1)
    for x, y, cw, ch in _row_chunks(w, h):
        dst.WriteArray((src.ReadAsArray(x, y, cw, ch) == 1).astype(np.uint8), x, y)
    out.FlushCache()
    return out


def _polygon_means(layer_ds: gdal.Dataset, prob_ds: gdal.Dataset,
                   scratch_dir: Path, max_fid: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of valid probability pixels per polygon fid (arrays of length max_fid + 1)."""
    w, h = prob_ds.RasterXSize, prob_ds.RasterYSize
    ids = gdal.GetDriverByName("GTiff").Create(
        str(scratch_dir / "ids.tif"), w, h, 1, gdal.GDT_UInt32,
        options=["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"])
    ids.SetGeoTransform(prob_ds.GetGeoTransform())
    if prob_ds.GetProjection():
        ids.SetProjection(prob_ds.GetProjection())
    result = layer_ds.ExecuteSQL(_ZID_SQL)
    try:
        # Polygon edges follow pixel edges, so pixel-centre rasterisation recovers the pixels.
        # The quiet handler hides the harmless "no spatial reference" warning of SQL result
        # layers; failures still raise.
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            gdal.RasterizeLayer(ids, [1], result, options=["ATTRIBUTE=zid"])
        finally:
            gdal.PopErrorHandler()
    finally:
        layer_ds.ReleaseResultSet(result)
    ids.FlushCache()
    sums = np.zeros(max_fid + 1, dtype=np.float64)
    counts = np.zeros(max_fid + 1, dtype=np.int64)
    pband, iband = prob_ds.GetRasterBand(1), ids.GetRasterBand(1)
    nodata = pband.GetNoDataValue()
    scale, offset = pband.GetScale() or 1.0, pband.GetOffset() or 0.0
    for x, y, cw, ch in _row_chunks(w, h):
        zid = iband.ReadAsArray(x, y, cw, ch).astype(np.int64)
        prob = pband.ReadAsArray(x, y, cw, ch).astype(np.float64)
        keep = (zid > 0) & np.isfinite(prob)
        if nodata is not None and not math.isnan(nodata):
            keep &= prob != nodata
        z = zid[keep]
        sums += np.bincount(z, weights=prob[keep] * scale + offset, minlength=max_fid + 1)[: max_fid + 1]
        counts += np.bincount(z, minlength=max_fid + 1)[: max_fid + 1]
    ids = None
    return sums, counts


def polygonize_mask(mask_path: Path | str, out_gpkg: Path | str, probability_path: Path | str | None = None,
                    min_area: float = 0.0, attributes: Mapping[str, Any] | None = None) -> int:
    """Polygonize the value-1 pixels of ``mask_path`` into layer ``changes`` of ``out_gpkg``.

    Returns the number of features written. ``InputError`` for unreadable rasters or a
    probability raster of another size; ``OutputError`` when the GeoPackage cannot be written.
    """
    attributes = dict(attributes or {})
    _check_attributes(attributes)
    if min_area < 0 or math.isnan(min_area):
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    mask_ds = open_raster(mask_path)
    prob_ds = open_raster(probability_path) if probability_path is not None else None
    if prob_ds is not None and (prob_ds.RasterXSize, prob_ds.RasterYSize) != (mask_ds.RasterXSize, mask_ds.RasterYSize):
        raise InputError(
            f"Probability raster {probability_path} ({prob_ds.RasterXSize}×{prob_ds.RasterYSize} px) "
            f"does not match the change mask {mask_path} ({mask_ds.RasterXSize}×{mask_ds.RasterYSize} px). "
            "Use the probability raster written by the same detection run."
        )
    out = check_output_path(out_gpkg, inputs=[p for p in (mask_path, probability_path) if p is not None])
    temp_out = out.with_name(f".{out.stem}.partial.gpkg")
    try:
        scratch_dir = Path(tempfile.mkdtemp(prefix=".samcd-polygonize-", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"Cannot write to folder {out.parent} ({exc}). Choose a folder you can write to.") from exc
    srs = None
    if mask_ds.GetProjection():
        srs = osr.SpatialReference()
        srs.ImportFromWkt(mask_ds.GetProjection())
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gt = mask_ds.GetGeoTransform(can_return_null=True) or DEFAULT_GEOTRANSFORM
    pixel_area = abs(gt[1] * gt[5] - gt[2] * gt[4])
    gpkg = ogr.GetDriverByName("GPKG")
    try:
        binary = _binarise(mask_ds, str(scratch_dir / "binary.tif"))
        scratch = gpkg.CreateDataSource(str(scratch_dir / "scratch.gpkg"))
        scratch_layer = scratch.CreateLayer(_SCRATCH_LAYER, srs=srs, geom_type=ogr.wkbPolygon)
        scratch_layer.StartTransaction()
        band = binary.GetRasterBand(1)
        gdal.Polygonize(band, band, scratch_layer, -1, [])
        scratch_layer.CommitTransaction()
        result = scratch.ExecuteSQL(_MAX_FID_SQL)
        try:
            row = result.GetNextFeature()
            max_fid = int(row.GetField(0) or 0) if row is not None else 0
        finally:
            scratch.ReleaseResultSet(result)
        sums = counts = None
        if prob_ds is not None and max_fid > 0:
            sums, counts = _polygon_means(scratch, prob_ds, scratch_dir, max_fid)

        if temp_out.exists():
            temp_out.unlink()
        dst = gpkg.CreateDataSource(str(temp_out))
        layer = dst.CreateLayer(LAYER_NAME, srs=srs, geom_type=ogr.wkbPolygon,
                                options=["FID=fid", "GEOMETRY_NAME=geom"])
        layer.CreateField(ogr.FieldDefn("area", ogr.OFTReal))
        layer.CreateField(ogr.FieldDefn("mean_probability", ogr.OFTReal))
        for name, value in attributes.items():
            layer.CreateField(_field_for(name, value))
        defn = layer.GetLayerDefn()
        written = 0
        layer.StartTransaction()
        for feat in scratch_layer:
            geom = feat.GetGeometryRef()
            area = geom.GetArea()
            if area < min_area:
                continue
            out_feat = ogr.Feature(defn)
            out_feat.SetGeometry(geom)
            out_feat.SetField("area", float(area))
            fid = feat.GetFID()
            if sums is not None and counts is not None and counts[fid] > 0:
                out_feat.SetField("mean_probability", float(sums[fid] / counts[fid]))
            else:
                out_feat.SetFieldNull("mean_probability")
            for name, value in attributes.items():
                _set_value(out_feat, name, value)
            layer.CreateFeature(out_feat)
            written += 1
        layer.CommitTransaction()
        log.info("Polygonized %s: %d polygons (pixel area %.6g, min area %.6g)", mask_path, written,
                 pixel_area, min_area)
        layer = None
        dst = None
        scratch_layer = None
        scratch = None
        band = None
        binary = None
        os.replace(temp_out, out)
        return written
    except (RuntimeError, OSError) as exc:
        raise OutputError(f"Cannot write change polygons to {out} ({exc}). Check that the folder is "
                          "writable, the disk is not full and the file is not open elsewhere.") from exc
    finally:
        # Drop dataset references before deleting their files (required on Windows).
        layer = dst = scratch_layer = scratch = band = binary = None  # noqa: F841
        for leftover in (temp_out, temp_out.with_name(temp_out.name + "-journal"),
                         temp_out.with_name(temp_out.name + "-wal"), temp_out.with_name(temp_out.name + "-shm")):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - best effort
                log.warning("Could not remove %s: %s", leftover, exc)
        shutil.rmtree(scratch_dir, ignore_errors=True)
