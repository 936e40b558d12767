"""Opening rasters and describing them.

* :func:`open_raster` opens a file read-only as a GDAL raster, raising :class:`InputError`
  (naming the file) instead of GDAL's bare ``RuntimeError``.
* :func:`raster_info` returns a :class:`RasterInfo` snapshot of size, type, grid and nodata.
* :func:`read_image` / :func:`read_label` read a *small* image (dataset PNG/TIF tiles) whole;
  large rasters must be read by windows (see :mod:`sam_cd_plugin.core.alignment`).

``RasterInfo.dtype`` is the numpy name of band 1's type (``'uint8'``, ``'uint16'``,
``'float32'``...). A raster without a geotransform reports GDAL's default
``(0.0, 1.0, 0.0, 0.0, 0.0, 1.0)``; a raster without a CRS reports ``crs_wkt == ''``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array

from .errors import InputError
from .validation import explain_unopenable

gdal.UseExceptions()

log = logging.getLogger(__name__)

__all__ = [
    "RasterInfo",
    "DEFAULT_GEOTRANSFORM",
    "open_raster",
    "raster_info",
    "info_from_dataset",
    "numpy_dtype",
    "read_image",
    "read_label",
]

#: What GDAL reports for a raster that has no georeferencing.
DEFAULT_GEOTRANSFORM: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class RasterInfo:
    """Immutable description of a raster file (one ``nodata`` entry per band, ``None`` if unset)."""

    path: Path
    width: int
    height: int
    band_count: int
    dtype: str
    geotransform: tuple[float, ...]
    crs_wkt: str
    nodata: tuple[float | None, ...]

    @property
    def has_crs(self) -> bool:
        """True when the raster carries a coordinate reference system."""
        return bool(self.crs_wkt)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the raster in its own coordinates (corners of the grid)."""
        gt = self.geotransform
        xs, ys = [], []
        for px, py in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height)):
            xs.append(gt[0] + px * gt[1] + py * gt[2])
            ys.append(gt[3] + px * gt[4] + py * gt[5])
        return min(xs), min(ys), max(xs), max(ys)


def numpy_dtype(gdal_type: int) -> np.dtype:
    """numpy dtype for a GDAL data type code (``InputError`` for types numpy cannot hold)."""
    code = gdal_array.GDALTypeCodeToNumericTypeCode(gdal_type)
    if code is None:
        raise InputError(f"Unsupported GDAL pixel type {gdal.GetDataTypeName(gdal_type)!r}.")
    return np.dtype(code)


def open_raster(path: Path | str) -> gdal.Dataset:
    """Open ``path`` read-only as a raster; ``InputError`` naming the file when that fails.

    The caller must keep the returned dataset referenced while using its bands.
    """
    p = Path(path)
    text = str(path)
    # /vsi paths (in-memory, zip, curl) do not exist on the local file system.
    if not text.startswith("/vsi") and not p.exists():
        raise InputError(explain_unopenable(p))
    try:
        ds = gdal.OpenEx(text, gdal.OF_RASTER | gdal.OF_READONLY)
    except RuntimeError as exc:
        raise InputError(explain_unopenable(text, str(exc))) from exc
    if ds is None:  # pragma: no cover - only without exceptions enabled
        raise InputError(f"Cannot open {p} as a raster. Use an image GDAL can read.")
    if ds.RasterCount < 1:
        raise InputError(f"{p} contains no raster bands. Choose an image file, not a vector layer.")
    if ds.RasterXSize < 1 or ds.RasterYSize < 1:
        raise InputError(f"{p} is empty ({ds.RasterXSize}×{ds.RasterYSize} pixels). Choose another image.")
    return ds


def info_from_dataset(ds: gdal.Dataset, path: Path | str) -> RasterInfo:
    """Build a :class:`RasterInfo` from an already opened dataset."""
    gt = ds.GetGeoTransform(can_return_null=True)
    nodata = tuple(ds.GetRasterBand(i).GetNoDataValue() for i in range(1, ds.RasterCount + 1))
    return RasterInfo(
        path=Path(path),
        width=ds.RasterXSize,
        height=ds.RasterYSize,
        band_count=ds.RasterCount,
        dtype=numpy_dtype(ds.GetRasterBand(1).DataType).name,
        geotransform=tuple(float(v) for v in gt) if gt else DEFAULT_GEOTRANSFORM,
        crs_wkt=ds.GetProjection() or "",
        nodata=nodata,
    )


def raster_info(path: Path | str) -> RasterInfo:
    """Describe the raster at ``path`` (``InputError`` for missing/unreadable/empty files)."""
    ds = open_raster(path)
    return info_from_dataset(ds, path)


def read_image(path: Path | str, dataset: gdal.Dataset | None = None) -> np.ndarray:
    """Read a whole (small) image as a ``(C, H, W)`` array of its native type (from ``dataset``,
    ``path`` opened, when given).

    A single paletted band is expanded to RGB through its colour table. Meant for dataset tiles;
    use windowed reads for large rasters.
    """
    ds = dataset if dataset is not None else open_raster(path)
    band = ds.GetRasterBand(1)
    table = band.GetColorTable() if ds.RasterCount == 1 else None
    try:
        data = ds.ReadAsArray()
    except RuntimeError as exc:
        raise InputError(f"Cannot read pixels of {path} ({exc}). The file may be damaged.") from exc
    if data.ndim == 2:
        data = data[np.newaxis]
    if table is not None and table.GetCount() > 0 and data.dtype == np.uint8:
        lut = np.array(
            [table.GetColorEntry(i)[:3] for i in range(table.GetCount())], dtype=np.uint8
        )
        lut = np.vstack([lut, np.zeros((256 - len(lut), 3), np.uint8)]) if len(lut) < 256 else lut[:256]
        data = np.ascontiguousarray(np.moveaxis(lut[data[0]], -1, 0))
    return data


def read_label(path: Path | str) -> np.ndarray:
    """Read a change label as a boolean ``(H, W)`` array: any nonzero value means change.

    Works for 0/1 and 0/255 labels (and paletted labels by index). For a multi-band label,
    a pixel is change if any non-alpha band is nonzero.
    """
    ds = open_raster(path)
    bands = [
        i for i in range(1, ds.RasterCount + 1)
        if ds.GetRasterBand(i).GetColorInterpretation() != gdal.GCI_AlphaBand
    ] or [1]
    out = np.zeros((ds.RasterYSize, ds.RasterXSize), dtype=bool)
    try:
        for i in bands:
            out |= ds.GetRasterBand(i).ReadAsArray() != 0
    except RuntimeError as exc:
        raise InputError(f"Cannot read pixels of label {path} ({exc}). The file may be damaged.") from exc
    return out
