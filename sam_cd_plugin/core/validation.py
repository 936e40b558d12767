"""Input checks shared by the engine and the front ends, with messages that say what to do.

* :func:`explain_unopenable` turns "GDAL cannot open this as a raster" into the reason a user
  can act on: a folder, a vector file, a file without read permission, a damaged image.
* :func:`check_raster_file` validates a raster path without keeping it open (the Processing
  algorithm uses it instead of loading a QGIS layer, which writes ``.aux.xml`` statistics next
  to the user's file).
* :func:`require_valid_pixels` refuses a run in which no pixel could be compared.
"""
from __future__ import annotations

import os
from pathlib import Path

from osgeo import gdal

from .errors import InputError

gdal.UseExceptions()

__all__ = ["explain_unopenable", "check_raster_file", "require_valid_pixels"]

RASTER_HINT = "Choose a raster image (GeoTIFF, JPEG 2000, PNG, ...)."


def _vector_driver(path: Path) -> str | None:
    """Short name of the vector driver that opens ``path`` (``None`` if it is no vector file)."""
    try:
        ds = gdal.OpenEx(str(path), gdal.OF_VECTOR | gdal.OF_READONLY)
    except RuntimeError:
        return None
    try:
        return ds.GetDriver().ShortName if ds is not None and ds.GetLayerCount() > 0 else None
    finally:
        ds = None


def explain_unopenable(path: Path | str, detail: str = "") -> str:
    """Why ``path`` cannot be used as a raster, and what to do instead."""
    p = Path(path)
    detail = f" ({detail.strip()})" if detail.strip() else ""
    if not str(path).startswith("/vsi") and not p.exists():
        return f"Raster file not found: {p}. Check the path and that the file exists."
    if p.is_dir():
        return f"{p} is a folder, not a raster file. {RASTER_HINT[:-1]} file inside it instead."
    if p.is_file() and not os.access(p, os.R_OK):
        return f"Cannot open {p}: permission denied. Check that you may read the file, or copy it."
    driver = _vector_driver(p)
    if driver is not None:
        return (f"{p} is a vector file ({driver}), not a raster. {RASTER_HINT} To compare vector "
                "data, rasterize it first (Raster > Conversion > Rasterize).")
    return (f"Cannot open {p} as a raster{detail}. The file may be damaged or in a format GDAL "
            f"cannot read. {RASTER_HINT}")


def check_raster_file(path: Path | str) -> Path:
    """``path`` if GDAL opens it as a raster with at least one band and pixel; ``InputError``
    with :func:`explain_unopenable`'s reason otherwise."""
    from .raster import open_raster

    ds = open_raster(path)
    ds = None  # noqa: F841 - closed at once: only the check was wanted
    return Path(path)


def require_valid_pixels(valid_pixels: int, before: Path | str, after: Path | str) -> None:
    """``InputError`` when a finished run compared no pixel at all (all nodata / no overlap)."""
    if valid_pixels > 0:
        return
    raise InputError(
        f"No valid pixel to compare: every pixel of {Path(before).name} or {Path(after).name} is "
        "nodata (its nodata value, a mask, NaN/Inf) in the selected bands, or outside the other "
        "raster. Check the rasters' nodata values and the band choice, or choose other rasters."
    )
