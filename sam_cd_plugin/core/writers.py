"""Atomic, windowed GeoTIFF output.

:class:`AtomicRasterWriter` writes a tiled, DEFLATE-compressed GeoTIFF window by window into a
hidden temporary file ``.<name>.partial`` in the target folder and renames it to the final
name (``os.replace``) only when the ``with`` block ends without an exception. On an exception
(including cancellation) the temporary file is deleted, so a failed run never leaves a file
that looks finished; an existing file at the final path is only replaced on success.

:func:`check_output_path` validates an output path before any work starts.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from osgeo import gdal, gdal_array

from .errors import OutputError
from .raster import DEFAULT_GEOTRANSFORM

gdal.UseExceptions()

log = logging.getLogger(__name__)

__all__ = ["AtomicRasterWriter", "check_output_path", "partial_path"]

BLOCK_SIZE = 256


def partial_path(path: Path) -> Path:
    """Temporary name used while ``path`` is being written: ``.<name>.partial`` beside it."""
    return path.with_name(f".{path.name}.partial")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_path(path: Path | str, inputs: Iterable[Path | str] = ()) -> Path:
    """Absolute output path, or ``OutputError`` if its folder is missing or not writable,
    the path is a folder, or it is one of ``inputs``."""
    out = Path(os.path.abspath(Path(path).expanduser()))
    if out.is_dir():
        raise OutputError(f"Output path {out} is a folder. Give a file name such as {out / 'changes.tif'}.")
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"Output folder {folder} does not exist. Create it or choose another folder.")
    for inp in inputs:
        if inp is not None and _same_file(out, Path(os.path.abspath(Path(inp).expanduser()))):
            raise OutputError(
                f"Output {out} is also an input. Choose another output file name so the input is not overwritten."
            )
    writable = os.access(folder, os.W_OK | os.X_OK)
    if writable:
        # os.access can be wrong (root on read-only mounts, ACLs): try creating a file.
        try:
            fd, probe = tempfile.mkstemp(prefix=".samcd-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError:
            writable = False
    if not writable:
        raise OutputError(f"Cannot write to folder {folder} (permission denied or read-only). "
                          "Choose a folder you can write to.")
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputError(f"Output file {out} exists and is read-only. Delete it or choose another name.")
    return out


class AtomicRasterWriter:
    """Context manager writing one GeoTIFF atomically, window by window.

    ``write(array, x, y)`` takes a ``(h, w)`` array (band 1) or a ``(bands, h, w)`` array.
    A ``geotransform`` of ``None`` or GDAL's default ``(0, 1, 0, 0, 0, 1)`` writes no
    georeferencing. ``nodata=None`` writes no nodata value. ``metadata`` values are stored as
    strings (``None`` values are skipped). Any stale ``<path>.aux.xml`` is removed on success.
    """

    def __init__(self, path: Path | str, width: int, height: int,
                 geotransform: tuple[float, ...] | None, crs_wkt: str = "",
                 dtype: str = "uint8", nodata: float | None = 255, band_count: int = 1,
                 metadata: Mapping[str, Any] | None = None) -> None:
        if width < 1 or height < 1 or band_count < 1:
            raise ValueError(f"invalid raster shape {band_count}x{height}x{width}")
        self.path = Path(os.path.abspath(path))
        self.temp_path = partial_path(self.path)
        self.width = int(width)
        self.height = int(height)
        self.band_count = int(band_count)
        self.geotransform = tuple(geotransform) if geotransform is not None else None
        self.crs_wkt = crs_wkt or ""
        self.dtype = np.dtype(dtype)
        self.nodata = nodata
        self.metadata = dict(metadata or {})
        self._gdal_type = gdal_array.NumericTypeCodeToGDALTypeCode(self.dtype)
        if self._gdal_type is None:
            raise ValueError(f"unsupported output dtype {dtype!r}")
        self._ds: gdal.Dataset | None = None

    def _creation_options(self) -> list[str]:
        opts = ["TILED=YES", f"BLOCKXSIZE={BLOCK_SIZE}", f"BLOCKYSIZE={BLOCK_SIZE}",
                "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS"]
        if np.issubdtype(self.dtype, np.floating):
            opts.append("PREDICTOR=3")
        elif self.dtype.itemsize > 1:
            opts.append("PREDICTOR=2")
        if self.band_count > 1:
            opts.append("INTERLEAVE=BAND")
        return opts

    def __enter__(self) -> "AtomicRasterWriter":
        if not self.path.parent.is_dir():
            raise OutputError(f"Output folder {self.path.parent} does not exist. "
                              "Create it or choose another folder.")
        try:
            ds = gdal.GetDriverByName("GTiff").Create(
                str(self.temp_path), self.width, self.height, self.band_count, self._gdal_type,
                options=self._creation_options())
        except RuntimeError as exc:
            self._remove_temp()
            raise OutputError(f"Cannot create {self.path} ({exc}). Check that the folder is "
                              "writable and the disk is not full.") from exc
        try:
            if self.geotransform is not None and self.geotransform != DEFAULT_GEOTRANSFORM:
                ds.SetGeoTransform(self.geotransform)
            if self.crs_wkt:
                ds.SetProjection(self.crs_wkt)
            for i in range(1, self.band_count + 1):
                if self.nodata is not None:
                    ds.GetRasterBand(i).SetNoDataValue(float(self.nodata))
            meta = {str(k): str(v) for k, v in self.metadata.items() if v is not None}
            if meta:
                ds.SetMetadata(meta)
        except RuntimeError as exc:
            ds = None
            self._remove_temp()
            raise OutputError(f"Cannot prepare {self.path} ({exc}).") from exc
        self._ds = ds
        log.debug("Writing %s via %s", self.path, self.temp_path)
        return self

    def write(self, array: np.ndarray, x: int, y: int) -> None:
        """Write ``array`` ((h, w) or (bands, h, w)) with its top-left pixel at (x, y)."""
        if self._ds is None:
            raise RuntimeError("AtomicRasterWriter.write called outside its with-block")
        arr = np.asarray(array)
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        if arr.ndim != 3:
            raise ValueError(f"expected a (h, w) or (bands, h, w) array, got shape {array.shape}")
        if arr.shape[0] != self.band_count and not (arr.shape[0] == 1 and np.ndim(array) == 2):
            raise ValueError(f"array has {arr.shape[0]} bands, the output has {self.band_count}")
        h, w = arr.shape[1:]
        if x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise ValueError(f"window ({x}, {y}, {w}, {h}) lies outside the {self.width}x{self.height} output")
        try:
            for i in range(arr.shape[0]):
                self._ds.GetRasterBand(i + 1).WriteArray(arr[i].astype(self.dtype, copy=False), int(x), int(y))
        except RuntimeError as exc:
            raise OutputError(f"Writing {self.path} failed ({exc}). Check free disk space.") from exc

    def _remove_temp(self) -> None:
        for p in (self.temp_path, self.temp_path.with_name(self.temp_path.name + ".aux.xml")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - best effort
                log.warning("Could not remove temporary file %s: %s", p, exc)

    def _close_dataset(self) -> None:
        ds, self._ds = self._ds, None
        if ds is not None:
            ds.FlushCache()
            del ds  # closing the last reference finishes the GeoTIFF

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            try:
                self._close_dataset()
            except RuntimeError:
                pass
            self._remove_temp()
            return
        try:
            self._close_dataset()
            aux = self.path.with_name(self.path.name + ".aux.xml")
            if aux.exists():
                aux.unlink()
            os.replace(self.temp_path, self.path)
        except (RuntimeError, OSError) as error:
            self._remove_temp()
            raise OutputError(f"Could not finish {self.path} ({error}). Check free disk space and "
                              "that the file is not open in another program.") from error
        log.debug("Wrote %s", self.path)
