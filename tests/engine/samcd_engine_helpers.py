"""Georeferenced copies of the real samples, and raster reading, for the engine tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

gdal.UseExceptions()

#: UTM 33N, 0.5 m pixels: the LEVIR-CD tiles become a georeferenced 8-bit RGB pair.
UTM_ORIGIN = (500000.0, 5000000.0)
PIXEL = 0.5


def georeference(png: Path, out: Path, srcwin: tuple[int, int, int, int] | None = None,
                 epsg: int = 32633) -> Path:
    """GeoTIFF copy of (a window of) a PNG on the UTM grid above (window offset kept)."""
    ds = gdal.Open(str(png))
    x, y, w, h = srcwin or (0, 0, ds.RasterXSize, ds.RasterYSize)
    ulx, uly = UTM_ORIGIN[0] + x * PIXEL, UTM_ORIGIN[1] - y * PIXEL
    gdal.Translate(str(out), ds, srcWin=[x, y, w, h], outputSRS=f"EPSG:{epsg}",
                   outputBounds=[ulx, uly, ulx + w * PIXEL, uly - h * PIXEL],
                   creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])
    return out


def levir_pair(shared_data: Path, folder: Path, name: str = "test_102",
               srcwin: tuple[int, int, int, int] | None = None) -> tuple[Path, Path]:
    """Georeferenced before/after copies of a LEVIR-CD 1024² pair (optionally a window of it)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = shared_data / "LEVIR-CD-1024"
    tag = "_".join(map(str, srcwin)) if srcwin else "full"
    return (georeference(src / "A" / f"{name}.png", folder / f"before_{tag}.tif", srcwin),
            georeference(src / "B" / f"{name}.png", folder / f"after_{tag}.tif", srcwin))


def read(path: Path, band: int = 1) -> tuple[np.ndarray, float | None]:
    ds = gdal.Open(str(path))
    b = ds.GetRasterBand(band)
    arr, nodata = b.ReadAsArray(), b.GetNoDataValue()
    del b, ds
    return arr, nodata
