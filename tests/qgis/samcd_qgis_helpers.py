"""Helpers shared by the QGIS-tier tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from osgeo import gdal
from qgis.core import QgsMapLayer, QgsRasterLayer

gdal.UseExceptions()

REPO = Path(__file__).resolve().parents[2]
ALGORITHM_ID = "sam_cd:detectchanges"
QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's /usr/bin/qgis_process wrapper adds a bad flag


@dataclass(frozen=True)
class RasterSummary:
    """What the tests compare about a raster, read without keeping any QGIS/GDAL object alive."""

    valid: bool
    provider: str
    crs_authid: str
    crs_wkt: str
    width: int
    height: int
    band_count: int
    geotransform: tuple[float, ...]
    renderer: str


def summarize_raster(path_or_layer: str | Path | QgsMapLayer) -> RasterSummary:
    """Open ``path_or_layer`` (or take a layer), read its properties, release it."""
    layer = path_or_layer if isinstance(path_or_layer, QgsMapLayer) else QgsRasterLayer(str(path_or_layer), "summary")
    try:
        source = layer.source()
        ds = gdal.Open(source)
        geotransform = tuple(ds.GetGeoTransform())
        ds = None
        renderer = layer.renderer().type() if layer.renderer() is not None else ""
        return RasterSummary(
            valid=layer.isValid(),
            provider=layer.providerType(),
            crs_authid=layer.crs().authid(),
            crs_wkt=layer.crs().toWkt(),
            width=layer.width(),
            height=layer.height(),
            band_count=layer.bandCount(),
            geotransform=geotransform,
            renderer=renderer,
        )
    finally:
        del layer


def gdal_array(path: str | Path, band: int = 1):
    """Band ``band`` of ``path`` as a numpy array, plus its no-data value."""
    ds = gdal.Open(str(path))
    try:
        b = ds.GetRasterBand(band)
        return b.ReadAsArray(), b.GetNoDataValue(), gdal.GetDataTypeName(b.DataType)
    finally:
        ds = None


def venv_site_packages() -> str:
    """site-packages of the interpreter running the tests (holds torch/ultralytics)."""
    return sysconfig.get_paths()["purelib"]


def qgis_process_env(plugin_dir: Path, profile_dir: Path) -> dict[str, str]:
    """Environment for a headless ``qgis_process.bin`` that sees the plugin and torch."""
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=str(plugin_dir),
        QGIS_CUSTOM_CONFIG_PATH=str(profile_dir),
        PYTHONPATH=os.pathsep.join(p for p in (venv_site_packages(), env.get("PYTHONPATH", "")) if p),
        YOLO_OFFLINE="1",
        YOLO_AUTOINSTALL="false",
        YOLO_CONFIG_DIR=env.get("YOLO_CONFIG_DIR", str(REPO / ".ultralytics")),
    )
    env.pop("QGIS_OPTIONS_PATH", None)  # set by pytest-qgis for the in-process app
    return env


# -- additions for the dock, evaluate, train and model tests ---------------------------------------


def qgis_process_runner(plugin_dir: Path, profile_dir: Path):
    """A function running ``qgis_process.bin ARGS`` headless with the plugin enabled in ``profile_dir``."""
    import shutil
    import subprocess

    executable = QGIS_PROCESS if Path(QGIS_PROCESS).is_file() else shutil.which("qgis_process")
    assert executable, "qgis_process not found"
    env = qgis_process_env(plugin_dir, profile_dir)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([executable, *args], env=env, capture_output=True, text=True, timeout=timeout)

    enabled = run("plugins", "enable", "sam_cd_plugin")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return run


def write_raster(path: Path, array, epsg: int = 32633, geotransform=(500000.0, 10.0, 0.0, 4700000.0, 0.0, -10.0),
                 nodata: float | None = None) -> Path:
    """Write a single-band GeoTIFF (uint8 unless the array says otherwise) with a CRS."""
    from osgeo import gdal_array, osr

    rows, cols = array.shape
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), cols, rows, 1, gdal_array.NumericTypeCodeToGDALTypeCode(array.dtype))
    ds.SetGeoTransform(geotransform)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    band.WriteArray(array)
    ds = None
    return path


def upscaled_copy(source: Path, target: Path, factor: int) -> Path:
    """``source`` resampled to ``factor`` times as many pixels per side (same extent, same CRS)."""
    ds = gdal.Open(str(source))
    gdal.Translate(str(target), ds, width=ds.RasterXSize * factor, height=ds.RasterYSize * factor,
                   resampleAlg="bilinear")
    ds = None
    return target


def checkpoint_with_meta(source: Path, target: Path, **changes) -> Path:
    """A copy of checkpoint ``source`` whose metadata is updated with ``changes`` (same weights)."""
    import json

    import torch

    payload = torch.load(source, map_location="cpu", weights_only=True)
    meta = json.loads(payload["meta"])
    meta.update(changes)
    payload["meta"] = json.dumps(meta, sort_keys=True)
    torch.save(payload, target)
    return target


DOCK_TIMEOUT_MS = 180_000


def settle(dock) -> None:  # type: ignore[no-untyped-def]
    """Wait until the dock's background checks (table, weights rows, device line) have answered."""
    from pytest_qgis.utils import process_events, wait_until

    assert wait_until(lambda: not dock.checking(), timeout_milliseconds=DOCK_TIMEOUT_MS)
    process_events()


# -- additions for training on an area ---------------------------------------------------------------


def polygonise_label(label: Path, out: Path, epsg: int | None = None) -> Path:
    """What a user digitises: the change pixels (> 0) of ``label`` as polygons in a GeoPackage
    (in the label's CRS, or reprojected to ``epsg``)."""
    import numpy as np
    from osgeo import ogr, osr

    src = gdal.Open(str(label))
    mask = gdal.GetDriverByName("MEM").Create("", src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    mask.SetGeoTransform(src.GetGeoTransform())
    mask.SetProjection(src.GetProjection())
    mask.GetRasterBand(1).WriteArray((src.GetRasterBand(1).ReadAsArray() > 0).astype(np.uint8))
    native = out.with_name(out.stem + "_native.gpkg") if epsg else out
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(native))
    layer = vds.CreateLayer("changes", srs=osr.SpatialReference(wkt=src.GetProjection()), geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    band = mask.GetRasterBand(1)
    gdal.Polygonize(band, band, layer, 0)
    band = layer = vds = src = mask = None  # GDAL objects must not outlive their dataset
    if epsg:
        gdal.VectorTranslate(str(out), str(native), dstSRS=f"EPSG:{epsg}", format="GPKG")
    return out


def vector_file(out: Path, crs_wkt: str, wkts: list[str], geom_type: int | None = None) -> Path:
    """A GeoPackage layer holding the geometries ``wkts`` (polygons unless ``geom_type``)."""
    from osgeo import ogr, osr

    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(out))
    layer = vds.CreateLayer("layer", srs=osr.SpatialReference(wkt=crs_wkt),
                            geom_type=ogr.wkbPolygon if geom_type is None else geom_type)
    for wkt in wkts:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    feature = layer = vds = None
    return out


def rectangle(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
