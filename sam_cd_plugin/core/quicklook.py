"""PNG quick-look of a detection: before | after | change (after dimmed, change in red)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from osgeo import gdal

from .normalisation import compute_band_stats, normalise

gdal.UseExceptions()


def _read_rgb(path: Path, bands: Sequence[int] | None, width: int, height: int) -> np.ndarray:
    """(3, height, width) uint8 of ``path`` resampled to the given size, stretched like the model sees it."""
    ds = gdal.Open(str(path))
    bands = list(bands) if bands else list(range(1, min(3, ds.RasterCount) + 1))
    stats = compute_band_stats(path, bands)
    data = np.stack([ds.GetRasterBand(b).ReadAsArray(buf_xsize=width, buf_ysize=height,
                                                     resample_alg=gdal.GRIORA_Average)
                     for b in bands]).astype(np.float64)
    del ds
    rgb = normalise(data, stats)
    if rgb.shape[0] == 1:
        rgb = np.repeat(rgb, 3, axis=0)
    return (rgb * 255).round().astype(np.uint8)


def write_quicklook(before: Path, after: Path, change: Path, out_png: Path,
                    bands_before: Sequence[int] | None = None,
                    bands_after: Sequence[int] | None = None, max_width: int = 1800) -> Path:
    """Write the three panels side by side at most ``max_width`` px wide; returns ``out_png``.

    ``after`` is read on its own grid, so pass the rasters the change map was computed on
    (same extent) for panels that line up.
    """
    ds = gdal.Open(str(change))
    w, h = ds.RasterXSize, ds.RasterYSize
    scale = min(1.0, max_width / (3 * w + 2 * 8))
    pw, ph = max(1, int(w * scale)), max(1, int(h * scale))
    mask = ds.GetRasterBand(1).ReadAsArray(buf_xsize=pw, buf_ysize=ph,
                                           resample_alg=gdal.GRIORA_NearestNeighbour)
    del ds
    rgb_before = _read_rgb(before, bands_before, pw, ph)
    rgb_after = _read_rgb(after, bands_after, pw, ph)
    overlay = (rgb_after * 0.55).astype(np.uint8)
    overlay[:, mask == 1] = np.array([255, 40, 40], np.uint8)[:, None]
    overlay[:, mask == 255] = 0
    gap = np.full((3, ph, 8), 255, np.uint8)
    canvas = np.concatenate([rgb_before, gap, rgb_after, gap, overlay], axis=2)
    mem = gdal.GetDriverByName("MEM").Create("", canvas.shape[2], ph, 3, gdal.GDT_Byte)
    for i in range(3):
        mem.GetRasterBand(i + 1).WriteArray(canvas[i])
    out_png = Path(out_png)
    gdal.GetDriverByName("PNG").CreateCopy(str(out_png), mem)
    del mem
    Path(str(out_png) + ".aux.xml").unlink(missing_ok=True)
    return out_png
