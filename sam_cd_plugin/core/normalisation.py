"""Per-band normalisation of 8-bit, 16-bit and floating-point imagery to [0, 1].

Statistics are computed once per scene, never per tile, so tiles are scaled identically and
results do not depend on tiling. Two modes for a before/after pair (:data:`NORMALISATIONS`):

* ``joint`` (default): one stretch for both dates, from the pixels valid in both
  (:func:`joint_band_stats`), so an unchanged pixel gets the same value in both dates whatever
  else either scene contains;
* ``per-date``: each raster gets its own stretch over its whole extent
  (:func:`band_stats_from_dataset`), for dates from different sensors.

Per band:

* ``uint8`` bands use the fixed range 0..255 (what the models were trained on; in ``joint``
  mode when the band is 8-bit in both dates);
* every other type uses the robust 2nd/98th percentiles of a decimated read (at most
  :data:`SAMPLE_SIZE` pixels on a side; GDAL uses overviews when the file has them), ignoring
  nodata values, masked pixels and NaN/Inf;
* a constant band (or one without any valid pixel) gets ``high = low + 1`` so normalisation
  never divides by zero.

:func:`normalise` maps ``(x - low) / (high - low)`` clipped to [0, 1] as float32; NaN becomes 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from .errors import InputError
from .raster import open_raster

gdal.UseExceptions()

log = logging.getLogger(__name__)

__all__ = [
    "BandStats",
    "SAMPLE_SIZE",
    "compute_band_stats",
    "band_stats_from_dataset",
    "invalid_mask",
    "joint_band_stats",
    "NORMALISATIONS",
    "normalise",
    "percentile_range",
    "normalise_coefficients",
    "RAW_DTYPES",
]

#: Pixel types a tile may be sent in un-normalised (raw) and normalised later, on the device:
#: unsigned, so their statistics have ``low >= 0`` and a raw 0 normalises to exactly 0.0.
RAW_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))

#: Longest side (pixels) of the decimated read used for percentile statistics.
SAMPLE_SIZE = 1024
LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 98.0
#: ``joint``: one stretch for both dates over their common valid pixels; ``per-date``: one each.
NORMALISATIONS = ("joint", "per-date")


@dataclass(frozen=True)
class BandStats:
    """Per-band value range mapped to [0, 1]: ``low[i]`` -> 0, ``high[i]`` -> 1."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high):
            raise ValueError("BandStats.low and BandStats.high must have the same length")

    def __len__(self) -> int:
        return len(self.low)


def invalid_mask(ds: gdal.Dataset, band_index: int, data: np.ndarray,
                 window: tuple[int, int, int, int] | None = None,
                 buf_size: tuple[int, int] | None = None) -> np.ndarray | None:
    """Boolean mask of invalid pixels in ``data`` read from band ``band_index`` of ``ds``.

    Invalid = the band's nodata value, zero in a per-dataset/alpha mask, or NaN/Inf.
    ``window`` (x, y, w, h) and ``buf_size`` (w, h) describe how ``data`` was read, so a mask
    band can be read the same way. Returns ``None`` when every pixel is valid.
    """
    band = ds.GetRasterBand(band_index)
    flags = band.GetMaskFlags()
    bad: np.ndarray | None = None
    if flags & gdal.GMF_NODATA:
        nodata = band.GetNoDataValue()
        if nodata is not None and not np.isnan(nodata):
            bad = data == nodata
    elif not flags & gdal.GMF_ALL_VALID:
        # Alpha band, internal mask or per-dataset mask: read it like the data.
        mask_band = band.GetMaskBand()
        x, y, w, h = window if window is not None else (0, 0, ds.RasterXSize, ds.RasterYSize)
        bw, bh = buf_size if buf_size is not None else (w, h)
        mask = mask_band.ReadAsArray(x, y, w, h, buf_xsize=bw, buf_ysize=bh)
        bad = mask == 0
    if np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.complexfloating):
        nonfinite = ~np.isfinite(data)
        if nonfinite.any():
            bad = nonfinite if bad is None else (bad | nonfinite)
    return bad


def _check_bands(ds: gdal.Dataset, bands: Sequence[int], path: Path | str) -> list[int]:
    out = []
    for b in bands:
        if int(b) != b or not 1 <= int(b) <= ds.RasterCount:
            raise InputError(
                f"Band {b} does not exist in {path}, which has {ds.RasterCount} band(s). "
                f"Choose band numbers between 1 and {ds.RasterCount}."
            )
        out.append(int(b))
    if not out:
        raise InputError(f"No bands selected for {path}. Choose at least one band.")
    return out


def band_stats_from_dataset(ds: gdal.Dataset, bands: Sequence[int], path: Path | str = "",
                            sample_size: int = SAMPLE_SIZE) -> BandStats:
    """:class:`BandStats` for the 1-based ``bands`` of an open dataset (see module docstring)."""
    bands = _check_bands(ds, bands, path or ds.GetDescription())
    scale = max(ds.RasterXSize, ds.RasterYSize) / float(sample_size)
    bw = max(1, min(ds.RasterXSize, round(ds.RasterXSize / scale))) if scale > 1 else ds.RasterXSize
    bh = max(1, min(ds.RasterYSize, round(ds.RasterYSize / scale))) if scale > 1 else ds.RasterYSize
    lows: list[float] = []
    highs: list[float] = []
    for b in bands:
        band = ds.GetRasterBand(b)
        if band.DataType == gdal.GDT_Byte:
            lows.append(0.0)
            highs.append(255.0)
            continue
        try:
            data = band.ReadAsArray(0, 0, ds.RasterXSize, ds.RasterYSize, buf_xsize=bw, buf_ysize=bh)
        except RuntimeError as exc:
            raise InputError(f"Cannot read band {b} of {path} ({exc}). The file may be damaged.") from exc
        bad = invalid_mask(ds, b, data, None, (bw, bh))
        values = data[~bad] if bad is not None else data.ravel()
        if values.size == 0:
            log.warning("Band %d of %s has no valid pixel in the statistics sample", b, path)
        low, high = percentile_range(values)
        lows.append(low)
        highs.append(high)
    return BandStats(tuple(lows), tuple(highs))


def percentile_range(values: np.ndarray) -> tuple[float, float]:
    """The 2nd/98th percentiles of ``values`` (``high > low`` always; (0, 1) when empty)."""
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values.astype(np.float64),
                                                  [LOW_PERCENTILE, HIGH_PERCENTILE]))
    return low, high if high > low else low + 1.0


def joint_band_stats(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                     fixed_byte: Sequence[bool]) -> BandStats:
    """One :class:`BandStats` for both dates from samples of the same ground.

    ``before`` / ``after``: raw ``(C, h, w)`` samples on one grid; ``valid``: ``(h, w)`` pixels
    valid in both dates (only those count). Band ``i`` uses 0..255 when ``fixed_byte[i]``, else
    the 2/98 % percentiles of both dates' valid values pooled.
    """
    if before.shape != after.shape or before.shape[1:] != valid.shape:
        raise ValueError(f"joint_band_stats: shapes {before.shape}, {after.shape}, {valid.shape} differ")
    if len(fixed_byte) != before.shape[0]:
        raise ValueError("joint_band_stats: one fixed_byte flag per band is needed")
    if not valid.any() and not all(fixed_byte):
        log.warning("No pixel is valid in both dates in the statistics sample")
    lows: list[float] = []
    highs: list[float] = []
    for i, fixed in enumerate(fixed_byte):
        if fixed:
            low, high = 0.0, 255.0
        else:
            low, high = percentile_range(np.concatenate([before[i][valid], after[i][valid]]))
        lows.append(low)
        highs.append(high)
    return BandStats(tuple(lows), tuple(highs))


def compute_band_stats(path: Path | str, bands: Sequence[int]) -> BandStats:
    """Normalisation statistics for the 1-based ``bands`` of the raster at ``path``."""
    ds = open_raster(path)
    return band_stats_from_dataset(ds, bands, path)


def normalise_coefficients(stats: BandStats) -> tuple[np.ndarray, np.ndarray]:
    """``(low, scale)``, float32 ``(C,)``: :func:`normalise` computes ``clip((x - low) * scale, 0, 1)``
    in float32, so any implementation using these (e.g. on a GPU) gives the same values."""
    low = np.asarray(stats.low, dtype=np.float64)
    span = np.asarray(stats.high, dtype=np.float64) - low
    span = np.where(span > 0, span, 1.0)
    return low.astype(np.float32), (1.0 / span).astype(np.float32)


def normalise(array: np.ndarray, stats: BandStats) -> np.ndarray:
    """Scale a ``(C, H, W)`` array band by band to float32 in [0, 1] (NaN -> 0)."""
    if array.ndim != 3:
        raise ValueError(f"normalise expects a (C, H, W) array, got shape {array.shape}")
    if array.shape[0] != len(stats):
        raise ValueError(f"array has {array.shape[0]} bands but stats describe {len(stats)}")
    low, scale = (c.reshape(-1, 1, 1) for c in normalise_coefficients(stats))
    out = array.astype(np.float32)  # in place from here: a tile is read and normalised per window
    out -= low
    out *= scale
    np.maximum(out, 0.0, out=out)  # clip to [0, 1] (np.clip is several times slower)
    np.minimum(out, 1.0, out=out)
    if not np.issubdtype(array.dtype, np.integer):
        np.nan_to_num(out, copy=False, nan=0.0)
    return out
