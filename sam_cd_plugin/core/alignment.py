"""A before/after raster pair read window by window on one common grid.

The output grid is the *before* raster's grid (CRS, geotransform, size). When the after raster
is on another grid (other CRS, resolution, origin or size) it is warped onto the before grid
with ``gdal.Warp`` into an in-memory VRT (bilinear, with an alpha band), so nothing is resampled
up front and memory stays bounded: each :meth:`AlignedPair.read` warps only the pixels it needs.

Validity of an output pixel (``valid`` in :meth:`AlignedPair.read`) is False when

* it lies outside the before raster (windows may extend past the border; those pixels are
  filled by reflecting the inside pixels),
* it lies outside the after raster's footprint (partial overlap),
* any selected band of either raster is nodata there (band nodata value, alpha/mask band) or
  NaN/Inf.

Invalid pixels inside the raster are set to 0 in both returned images.

Band selection: by default the first three bands (a raster with fewer than three bands uses
band 1, replicated to three channels); explicit 1-based lists of one or three bands.
Normalisation (``normalisation``, see :mod:`sam_cd_plugin.core.normalisation`): ``joint`` (default)
gives both dates one :class:`~sam_cd_plugin.core.normalisation.BandStats`, computed once from a
decimated read of the overlap window where both dates are valid (the after raster as warped onto
the before grid); ``per-date`` gives each raster its own, from its whole extent. ``joint`` falls
back to ``per-date`` (with a warning) when a band is 8-bit in one date and not in the other: such
dates come from different sensors.

Rasters without a CRS are accepted only in pairs of the same size (pixel-to-pixel alignment).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array, osr

from .errors import InputError
from .normalisation import (NORMALISATIONS, RAW_DTYPES, SAMPLE_SIZE, BandStats,
                            band_stats_from_dataset, invalid_mask, joint_band_stats, normalise,
                            normalise_coefficients)
from .raster import RasterInfo, info_from_dataset, open_raster

gdal.UseExceptions()

log = logging.getLogger(__name__)

__all__ = ["AlignedPair", "PairReader", "resolve_bands", "same_grid", "window_overlaps"]

#: Grids whose corners differ by less than this fraction of a pixel are considered identical.
GRID_TOLERANCE = 0.01
#: Warped pixels whose alpha is below this value (of 255) count as outside the after raster.
ALPHA_THRESHOLD = 128


def resolve_bands(count: int, bands: Sequence[int] | None, path: Path | str) -> tuple[int, ...]:
    """Validated 1-based band tuple of length 1 or 3 (default: first three, or band 1)."""
    if bands is None:
        return (1, 2, 3) if count >= 3 else (1,)
    try:
        resolved = tuple(int(b) for b in bands)
    except (TypeError, ValueError):
        raise InputError(f"Band list {bands!r} for {path} must contain band numbers such as 1, 2, 3.") from None
    if len(resolved) not in (1, 3):
        raise InputError(
            f"Select one band (used as grey) or three bands of {path}; got {len(resolved)}: {list(resolved)}."
        )
    for b in resolved:
        if not 1 <= b <= count:
            raise InputError(
                f"Band {b} does not exist in {path}, which has {count} band(s). "
                f"Choose band numbers between 1 and {count}."
            )
    return resolved


def _srs(wkt: str) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def same_grid(a: RasterInfo, b: RasterInfo, tolerance: float = GRID_TOLERANCE) -> bool:
    """True when ``b`` lies on exactly ``a``'s grid: same CRS, size and geotransform (± tolerance px)."""
    if (a.width, a.height) != (b.width, b.height):
        return False
    if a.has_crs != b.has_crs:
        return False
    if a.has_crs and not _srs(a.crs_wkt).IsSame(_srs(b.crs_wkt)):
        return False
    ga, gb = a.geotransform, b.geotransform
    pixel = max(abs(ga[1]), abs(ga[2]), abs(ga[4]), abs(ga[5])) or 1.0
    limits = (
        (abs(ga[0] - gb[0]), 1), (abs(ga[3] - gb[3]), 1),
        (abs(ga[1] - gb[1]), a.width), (abs(ga[4] - gb[4]), a.width),
        (abs(ga[2] - gb[2]), a.height), (abs(ga[5] - gb[5]), a.height),
    )
    return all(diff * n <= tolerance * pixel for diff, n in limits)


def _fmt_extent(ext: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in ext) + ")"


def _reflect_pad(arr: np.ndarray, pad_y: tuple[int, int], pad_x: tuple[int, int]) -> np.ndarray:
    """Pad the last two axes by reflection (edge replication along an axis of length 1)."""
    widths = [(0, 0)] * (arr.ndim - 2)
    if arr.shape[-2] > 1:
        arr = np.pad(arr, widths + [pad_y, (0, 0)], mode="reflect")
    else:
        arr = np.pad(arr, widths + [pad_y, (0, 0)], mode="edge")
    if arr.shape[-1] > 1:
        return np.pad(arr, widths + [(0, 0), pad_x], mode="reflect")
    return np.pad(arr, widths + [(0, 0), pad_x], mode="edge")


class AlignedPair:
    """Context manager reading a before/after pair tile by tile on the before raster's grid.

    Attributes: ``width``, ``height``, ``geotransform``, ``crs_wkt`` (the output grid),
    ``before`` / ``after`` (:class:`RasterInfo`), ``bands_before`` / ``bands_after`` (resolved
    1-based tuples), ``stats_before`` / ``stats_after`` (:class:`BandStats`; the same object in
    ``joint`` mode), ``normalisation`` (the mode used: ``joint`` or ``per-date``), ``warped`` (True
    when the after raster is resampled), ``overlap_window`` (x0, y0, x1, y1): the pixel
    rectangle of the before grid covered by the after raster (tiles outside it are all invalid).

    Raises :class:`InputError` for unreadable files, bands out of range, one raster with a CRS
    and the other without, CRS-less rasters of different sizes, and rasters that do not overlap.
    ``read`` is serialised by a lock, so one pair can be shared by threads; reader threads
    that should run in parallel each take their own handles with :meth:`open_reader`.
    """

    def __init__(self, before_path: Path | str, after_path: Path | str,
                 bands_before: Sequence[int] | None = None,
                 bands_after: Sequence[int] | None = None,
                 normalisation: str = "joint") -> None:
        if normalisation not in NORMALISATIONS:
            raise InputError(f"Normalisation '{normalisation}' is unknown; use one of "
                             f"{', '.join(NORMALISATIONS)}.")
        self._lock = threading.Lock()
        self._vsimem: list[str] = []
        self._warped_ds: gdal.Dataset | None = None
        self._subset_ds: gdal.Dataset | None = None
        self._before_ds: gdal.Dataset | None = None
        self._after_ds: gdal.Dataset | None = None
        self._warp_path: str | None = None
        try:
            self._open(before_path, after_path, bands_before, bands_after)
            self._set_stats(normalisation)
        except BaseException:
            self.close()
            raise

    def _open(self, before_path: Path | str, after_path: Path | str,
              bands_before: Sequence[int] | None, bands_after: Sequence[int] | None) -> None:
        self._before_ds = open_raster(before_path)
        self._after_ds = open_raster(after_path)
        self.before: RasterInfo = info_from_dataset(self._before_ds, before_path)
        self.after: RasterInfo = info_from_dataset(self._after_ds, after_path)
        for info, ds in ((self.before, self._before_ds), (self.after, self._after_ds)):
            if gdal.DataTypeIsComplex(ds.GetRasterBand(1).DataType):
                raise InputError(f"{info.path} has complex-valued pixels ({info.dtype}); "
                                 "convert it to real-valued bands first.")
        self.bands_before = resolve_bands(self.before.band_count, bands_before, self.before.path)
        self.bands_after = resolve_bands(self.after.band_count, bands_after, self.after.path)

        self.width = self.before.width
        self.height = self.before.height
        self.geotransform = self.before.geotransform
        self.crs_wkt = self.before.crs_wkt
        self.warped = False
        self.overlap_window: tuple[int, int, int, int] = (0, 0, self.width, self.height)

        self._check_crs()
        if self.before.has_crs and not same_grid(self.before, self.after):
            self._setup_warp()
        self._raw_dtype_before = self._band_dtype(self._before_ds, self.bands_before)
        self._raw_dtype_after = self._band_dtype(self._after_ds, self.bands_after)
        log.debug("AlignedPair %s / %s: %dx%d, warped=%s, overlap=%s", self.before.path,
                  self.after.path, self.width, self.height, self.warped, self.overlap_window)

    # ------------------------------------------------------------------ setup
    def _set_stats(self, normalisation: str) -> None:
        before_ds, after_ds = self._before_ds, self._after_ds
        if before_ds is None or after_ds is None:
            raise RuntimeError("rasters are not open")
        types = [(before_ds.GetRasterBand(b).DataType == gdal.GDT_Byte,
                  after_ds.GetRasterBand(a).DataType == gdal.GDT_Byte)
                 for b, a in zip(self.bands_before, self.bands_after)]
        if normalisation == "joint" and len(self.bands_before) != len(self.bands_after):
            log.warning("Normalising each date on its own: %s uses %d band(s), %s %d",
                        self.before.path, len(self.bands_before), self.after.path, len(self.bands_after))
            normalisation = "per-date"
        if normalisation == "joint" and any(b != a for b, a in types):
            log.warning("Normalising each date on its own: one date is 8-bit and the other is not "
                        "(different sensors?)")
            normalisation = "per-date"
        self.normalisation = normalisation
        if normalisation == "per-date":
            self.stats_before: BandStats = band_stats_from_dataset(
                before_ds, self.bands_before, self.before.path)
            self.stats_after: BandStats = band_stats_from_dataset(
                after_ds, self.bands_after, self.after.path)
            return
        fixed = [b for b, _ in types]
        if all(fixed):  # 0..255 whatever the pixels: no need to read them
            stats = BandStats((0.0,) * len(fixed), (255.0,) * len(fixed))
        else:
            stats = joint_band_stats(*self._overlap_sample(), fixed)
        self.stats_before = self.stats_after = stats

    def _overlap_sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw before/after samples of the overlap window (at most :data:`SAMPLE_SIZE` px on a
        side, GDAL's nearest-neighbour decimation) and the mask of pixels valid in both."""
        x0, y0, x1, y1 = self.overlap_window
        w, h = x1 - x0, y1 - y0
        scale = max(w, h) / float(SAMPLE_SIZE)
        buf = (max(1, round(w / scale)), max(1, round(h / scale))) if scale > 1 else (w, h)
        before_ds, after_ds = self._before_ds, self._after_ds
        if before_ds is None or after_ds is None:
            raise RuntimeError("rasters are not open")
        b_raw, b_bad = self._read_direct(before_ds, self.bands_before, x0, y0, w, h, buf)
        if self._warped_ds is not None:
            a_raw, a_bad = self._read_warped(self._warped_ds, x0, y0, w, h, buf)
        else:
            a_raw, a_bad = self._read_direct(after_ds, self.bands_after, x0, y0, w, h, buf)
        return b_raw, a_raw, ~(b_bad | a_bad)

    def _check_crs(self) -> None:
        b, a = self.before, self.after
        if b.has_crs != a.has_crs:
            with_crs, without = (b, a) if b.has_crs else (a, b)
            raise InputError(
                f"{with_crs.path} has a coordinate reference system but {without.path} has none, "
                "so they cannot be aligned. Assign a CRS to the raster without one (Raster > "
                "Projections > Assign Projection) or use two images without georeferencing."
            )
        if not b.has_crs and (b.width, b.height) != (a.width, a.height):
            raise InputError(
                f"{b.path} ({b.width}×{b.height} px) and {a.path} ({a.width}×{a.height} px) have "
                "no coordinate reference system and different sizes, so their pixels cannot be "
                "matched. Georeference both rasters or use images of the same size."
            )

    def _after_extent_in_before_crs(self) -> tuple[float, float, float, float]:
        src, dst = _srs(self.after.crs_wkt), _srs(self.before.crs_wkt)
        ext = self.after.extent
        if src.IsSame(dst):
            return ext
        try:
            ct = osr.CoordinateTransformation(src, dst)
            xmin, ymin, xmax, ymax = ct.TransformBounds(*ext, 21)
        except (RuntimeError, TypeError) as exc:
            raise InputError(
                f"Cannot transform the extent of {self.after.path} into the coordinate reference "
                f"system of {self.before.path} ({exc}). Reproject one raster to the other's CRS."
            ) from exc
        return xmin, ymin, xmax, ymax

    def _setup_warp(self) -> None:
        b, a = self.before, self.after
        gt = b.geotransform
        if gt[2] != 0 or gt[4] != 0 or gt[5] >= 0:
            raise InputError(
                f"{b.path} has a rotated or south-up geotransform, which sam-cd cannot use as the "
                "output grid. Warp it to a north-up grid first (gdalwarp or Raster > Projections > Warp)."
            )
        bext = b.extent
        aext = self._after_extent_in_before_crs()
        ix0, iy0 = max(bext[0], aext[0]), max(bext[1], aext[1])
        ix1, iy1 = min(bext[2], aext[2]), min(bext[3], aext[3])
        if not (ix1 > ix0 and iy1 > iy0):
            raise InputError(
                f"The rasters do not overlap: {b.path} covers {_fmt_extent(bext)} and {a.path} "
                f"covers {_fmt_extent(a.extent)} in its own CRS, i.e. {_fmt_extent(aext)} in the "
                "before raster's CRS (xmin, ymin, xmax, ymax). Choose two rasters of the same area."
            )
        eps = 1e-6  # pixels: absorbs round-off in extents that fall on pixel edges
        px0 = int(np.clip(np.floor((ix0 - gt[0]) / gt[1] + eps), 0, b.width))
        px1 = int(np.clip(np.ceil((ix1 - gt[0]) / gt[1] - eps), 0, b.width))
        py0 = int(np.clip(np.floor((iy1 - gt[3]) / gt[5] + eps), 0, b.height))
        py1 = int(np.clip(np.ceil((iy0 - gt[3]) / gt[5] - eps), 0, b.height))
        self.overlap_window = (px0, py0, px1, py1)

        # Only the selected bands are warped (gdalwarp -b needs GDAL 3.7): subset them in a VRT.
        after_ds = self._after_ds
        if after_ds is None:
            raise RuntimeError("after raster is not open")
        unique = list(dict.fromkeys(self.bands_after))
        band_list = list(unique)
        first = after_ds.GetRasterBand(1)
        has_alpha = bool(first.GetMaskFlags() & gdal.GMF_ALPHA)
        if has_alpha:
            alpha_index = next((i for i in range(1, a.band_count + 1)
                                if after_ds.GetRasterBand(i).GetColorInterpretation()
                                == gdal.GCI_AlphaBand), None)
            if alpha_index is None or alpha_index in band_list:
                has_alpha = False
            else:
                band_list.append(alpha_index)
        token = uuid.uuid4().hex
        subset_path = f"/vsimem/samcd_{token}_subset.vrt"
        warp_path = f"/vsimem/samcd_{token}_warped.vrt"
        self._vsimem += [subset_path, warp_path]
        self._warp_path = warp_path
        try:
            self._subset_ds = gdal.Translate(subset_path, after_ds, format="VRT", bandList=band_list)
            xmin, ymin, xmax, ymax = bext
            self._warped_ds = gdal.Warp(
                warp_path, self._subset_ds, format="VRT",
                outputBounds=(xmin, ymin, xmax, ymax), width=b.width, height=b.height,
                dstSRS=b.crs_wkt, resampleAlg="bilinear", dstAlpha=True, srcAlpha=has_alpha,
                multithread=True, warpOptions=["NUM_THREADS=ALL_CPUS", "DST_ALPHA_MAX=255"],
            )
        except RuntimeError as exc:
            raise InputError(
                f"Cannot resample {a.path} onto the grid of {b.path} ({exc}). Reproject it to the "
                "before raster's CRS and resolution with gdalwarp and try again."
            ) from exc
        self._after_band_map = {band: i + 1 for i, band in enumerate(unique)}
        self._alpha_index = len(unique) + 1
        self.warped = True
        log.info("Warping %s onto the grid of %s (%dx%d px)", a.path, b.path, b.width, b.height)

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _read_direct(ds: gdal.Dataset, bands: tuple[int, ...], x: int, y: int, w: int, h: int,
                     buf: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        bw, bh = buf or (w, h)
        arrays: dict[int, np.ndarray] = {}
        bad = np.zeros((bh, bw), dtype=bool)
        for b in dict.fromkeys(bands):
            data = ds.GetRasterBand(b).ReadAsArray(x, y, w, h, buf_xsize=bw, buf_ysize=bh)
            arrays[b] = data
            m = invalid_mask(ds, b, data, (x, y, w, h), (bw, bh))
            if m is not None:
                bad |= m
        return np.stack([arrays[b] for b in bands]), bad

    def _read_warped(self, ds: gdal.Dataset, x: int, y: int, w: int, h: int,
                     buf: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        bw, bh = buf or (w, h)
        alpha = ds.GetRasterBand(self._alpha_index).ReadAsArray(x, y, w, h, buf_xsize=bw, buf_ysize=bh)
        bad = alpha < ALPHA_THRESHOLD
        arrays: dict[int, np.ndarray] = {}
        for b in dict.fromkeys(self.bands_after):
            band = ds.GetRasterBand(self._after_band_map[b])
            data = band.ReadAsArray(x, y, w, h, buf_xsize=bw, buf_ysize=bh)
            arrays[b] = data
            nodata = band.GetNoDataValue()
            if nodata is not None and not np.isnan(nodata):
                bad |= data == nodata
            if np.issubdtype(data.dtype, np.floating):
                bad |= ~np.isfinite(data)
        return np.stack([arrays[b] for b in self.bands_after]), bad

    def _band_dtype(self, ds: gdal.Dataset, bands: tuple[int, ...]) -> np.dtype | None:
        types = {ds.GetRasterBand(b).DataType for b in bands}
        if len(types) != 1:
            return None
        return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(types.pop()))

    @property
    def raw_dtypes(self) -> tuple[np.dtype, np.dtype] | None:
        """The pixel types of ``read(..., raw=True)`` (before, after), or None when the pair
        cannot be read raw (a type other than uint8/uint16, or mixed types within a raster)."""
        found = (self._raw_dtype_before, self._raw_dtype_after)
        return found if all(t in RAW_DTYPES for t in found) else None  # type: ignore[return-value]

    @property
    def coefficients(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``((low, scale), (low, scale))`` float32 ``(3,)`` of before and after (see
        :func:`~.normalisation.normalise_coefficients`; one band is repeated to three)."""
        out = []
        for stats in (self.stats_before, self.stats_after):
            low, scale = normalise_coefficients(stats)
            out.append((np.resize(low, 3), np.resize(scale, 3)))
        return out[0], out[1]

    def read(self, x: int, y: int, w: int, h: int, raw: bool = False
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read window (x, y, w, h) of the before grid (serialised by a lock; reader threads use
        their own handles, :meth:`open_reader`).

        Returns ``(before, after, valid)``: float32 ``(3, h, w)`` arrays in [0, 1] and a bool
        ``(h, w)`` mask. The window may extend beyond the raster (reflection padding, invalid).
        ``raw=True`` (only when :attr:`raw_dtypes` is set): the arrays in their pixel types,
        not normalised, invalid pixels 0 — normalising them with :attr:`coefficients` gives
        exactly the float32 arrays.
        """
        with self._lock:
            if self._before_ds is None or self._after_ds is None:
                raise RuntimeError("AlignedPair.read called after close()")
            return self._read_with(self._before_ds, self._after_ds, self._warped_ds,
                                   x, y, w, h, raw)

    def _read_with(self, before_ds: gdal.Dataset, after_ds: gdal.Dataset | None,
                   warped_ds: gdal.Dataset | None, x: int, y: int, w: int, h: int, raw: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if w < 1 or h < 1:
            raise ValueError(f"window size must be positive, got {w}x{h}")
        if raw and self.raw_dtypes is None:
            raise ValueError("this pair's pixel types cannot be read raw")
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        valid = np.zeros((h, w), dtype=bool)
        if x1 <= x0 or y1 <= y0:
            types = self.raw_dtypes if raw else (np.float32, np.float32)
            return (np.zeros((3, h, w), dtype=types[0]), np.zeros((3, h, w), dtype=types[1]),  # type: ignore[index]
                    valid)
        iw, ih = x1 - x0, y1 - y0
        before, b_bad = self._read_direct(before_ds, self.bands_before, x0, y0, iw, ih)
        if warped_ds is not None:
            after, a_bad = self._read_warped(warped_ds, x0, y0, iw, ih)
        else:
            after, a_bad = self._read_direct(after_ds, self.bands_after, x0, y0, iw, ih)
        if not raw:
            before = normalise(before, self.stats_before)
            after = normalise(after, self.stats_after)
        inner_valid = ~(b_bad | a_bad)
        if not inner_valid.all():
            # raw: 0 normalises to exactly 0.0, as low >= 0 for unsigned types
            before[:, ~inner_valid] = 0
            after[:, ~inner_valid] = 0
        if before.shape[0] == 1:
            before = np.repeat(before, 3, axis=0)
        if after.shape[0] == 1:
            after = np.repeat(after, 3, axis=0)
        pad_y, pad_x = (y0 - y, y + h - y1), (x0 - x, x + w - x1)
        if any(pad_y) or any(pad_x):
            before = _reflect_pad(before, pad_y, pad_x)
            after = _reflect_pad(after, pad_y, pad_x)
        valid[y0 - y:y1 - y, x0 - x:x1 - x] = inner_valid
        return np.ascontiguousarray(before), np.ascontiguousarray(after), valid

    def open_reader(self) -> "PairReader":
        """Handles of their own on both rasters (and the warp), for one reader thread: reads
        through them need no lock and run in parallel (GDAL releases the GIL)."""
        if self._before_ds is None:
            raise RuntimeError("AlignedPair.open_reader called after close()")
        return PairReader(self)

    def block_bytes(self, rows: int) -> int:
        """Decoded bytes of ``rows`` full-width rows of every dataset read (the block-cache
        working set of a reader that keeps the blocks of ``rows`` rows)."""
        total = 0
        with self._lock:
            datasets = [(self._before_ds, self.bands_before), (self._warped_ds or self._after_ds,
                        self.bands_after if self._warped_ds is None
                        else range(1, self._warped_ds.RasterCount + 1))]
            if self._warped_ds is not None:  # the warper reads source blocks too
                datasets.append((self._after_ds, self.bands_after))
            for ds, bands in datasets:
                if ds is None:
                    continue
                for b in dict.fromkeys(bands):
                    band = ds.GetRasterBand(b)
                    block_h = band.GetBlockSize()[1]
                    size = gdal.GetDataTypeSize(band.DataType) // 8
                    total += (rows + block_h) * ds.RasterXSize * size
        return total

    def drop_caches(self) -> None:
        """Drop GDAL's cached blocks of the pair's own datasets (thread-safe)."""
        with self._lock:
            for ds in (self._warped_ds, self._subset_ds, self._before_ds, self._after_ds):
                if ds is not None:
                    ds.FlushCache()

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Release the datasets and in-memory VRTs (idempotent)."""
        with self._lock:
            # The warped VRT goes first: it reads from the subset VRT.
            self._warped_ds = None
            self._subset_ds = None
            self._before_ds = None
            self._after_ds = None
            for path in self._vsimem:
                try:
                    gdal.Unlink(path)
                except RuntimeError as exc:
                    log.debug("Could not unlink %s: %s", path, exc)
            self._vsimem = []

    def __enter__(self) -> "AlignedPair":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort if the caller forgot close()
        if getattr(self, "_lock", None) is not None:
            self.close()


class PairReader:
    """One reader thread's own GDAL handles on an :class:`AlignedPair` (use from one thread only).

    ``read`` is :meth:`AlignedPair.read` without the lock; the warp is re-opened from the
    pair's in-memory VRT, so it resamples exactly as the pair's own handle does."""

    def __init__(self, pair: AlignedPair) -> None:
        self.pair = pair
        self._before_ds: gdal.Dataset | None = open_raster(pair.before.path)
        self._after_ds: gdal.Dataset | None = None
        self._warped_ds: gdal.Dataset | None = None
        if pair._warp_path is not None:
            self._warped_ds = gdal.Open(pair._warp_path)
        else:
            self._after_ds = open_raster(pair.after.path)

    def read(self, x: int, y: int, w: int, h: int, raw: bool = False
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """See :meth:`AlignedPair.read`."""
        if self._before_ds is None:
            raise RuntimeError("PairReader.read called after close()")
        return self.pair._read_with(self._before_ds, self._after_ds, self._warped_ds, x, y, w, h, raw)

    def close(self) -> None:
        """Release the handles (idempotent)."""
        self._warped_ds = self._after_ds = self._before_ds = None

    def __enter__(self) -> "PairReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def window_overlaps(pair: AlignedPair, x: int, y: int, w: int, h: int) -> bool:
    """False when window (x, y, w, h) lies entirely outside the raster or the after raster's
    footprint (:attr:`AlignedPair.overlap_window`): all of its pixels are invalid."""
    ox0, oy0, ox1, oy1 = pair.overlap_window
    return x < ox1 and x + w > ox0 and y < oy1 and y + h > oy0
