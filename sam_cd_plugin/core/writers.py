"""Atomic, windowed GeoTIFF output.

:class:`AtomicRasterWriter` writes a tiled, DEFLATE-compressed GeoTIFF window by window into a
hidden temporary file ``.<name>.partial`` in the target folder and renames it to the final
name (``os.replace``) only when the ``with`` block ends without an exception. On an exception
(including cancellation) the temporary file is deleted, so a failed run never leaves a file
that looks finished; an existing file at the final path is only replaced on success.

Options: ``cog=True`` converts the finished temporary GeoTIFF into a Cloud Optimized GeoTIFF
(GDAL's COG driver, with overviews) before the rename; ``scale`` stores a band scale (e.g. 0.01
for a probability in percent); ``scratch=True`` never publishes the file (it is deleted when the
block ends; use :meth:`AtomicRasterWriter.finish` and ``temp_path`` to read it before).
:meth:`AtomicRasterWriter.write_rows` writes whole-width row bands in order and hands complete
rows of blocks to disk as it goes, so GDAL's block cache (and the process memory) stays bounded
whatever the raster size.

:func:`check_output_path` validates an output path before any work starts.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from osgeo import gdal, gdal_array

from .errors import OutputError
from .raster import DEFAULT_GEOTRANSFORM

gdal.UseExceptions()

log = logging.getLogger(__name__)

__all__ = ["AtomicRasterWriter", "OutputSet", "check_output_path", "partial_path", "publish_together",
           "PROBABILITY_FORMATS"]

BLOCK_SIZE = 256
#: Probability raster encodings: float32 0..1 (nodata -1), uint8 percent 0..100 (nodata 255).
PROBABILITY_FORMATS = ("float32", "uint8")


def partial_path(path: Path) -> Path:
    """Temporary name used while ``path`` is being written: ``.<name>.partial`` beside it."""
    return path.with_name(f".{path.name}.partial")


def _detached(exc: BaseException) -> BaseException:
    """``exc`` without its traceback, to chain as a cause: the traceback's frames hold GDAL
    datasets and bands (``self`` of the failing binding call), which would keep the file open
    (disk space in use, folder busy) for as long as the error is kept, e.g. by QGIS."""
    return exc.with_traceback(None)


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
                 metadata: Mapping[str, Any] | None = None, cog: bool = False,
                 scale: float | None = None, scratch: bool = False) -> None:
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
        self.cog = bool(cog)
        self.scale = scale
        self.scratch = bool(scratch)
        self._finished = False
        self._rows_written = 0
        self._band: np.ndarray | None = None  # the partial row of blocks, filled in place
        self._buffered = 0  # rows of it filled
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
                              "writable and the disk is not full.") from _detached(exc)
        try:
            if self.geotransform is not None and self.geotransform != DEFAULT_GEOTRANSFORM:
                ds.SetGeoTransform(self.geotransform)
            if self.crs_wkt:
                ds.SetProjection(self.crs_wkt)
            for i in range(1, self.band_count + 1):
                if self.nodata is not None:
                    ds.GetRasterBand(i).SetNoDataValue(float(self.nodata))
                if self.scale is not None:
                    ds.GetRasterBand(i).SetScale(float(self.scale))
                    ds.GetRasterBand(i).SetOffset(0.0)
            meta = {str(k): str(v) for k, v in self.metadata.items() if v is not None}
            if meta:
                ds.SetMetadata(meta)
        except RuntimeError as exc:
            ds = None
            self._remove_temp()
            raise OutputError(f"Cannot prepare {self.path} ({exc}).") from _detached(exc)
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
        except (RuntimeError, OSError) as exc:
            raise OutputError(f"Writing {self.path} failed ({exc}). Check free disk space.") from _detached(exc)

    def write_rows(self, rows: np.ndarray, y: int) -> None:
        """Write full-width ``(h, width)`` rows starting at row ``y``; calls must follow each other
        (``y`` = rows written so far). Complete rows of blocks are written out and dropped from
        GDAL's cache at once; a partial one waits in one preallocated band for the next call or
        :meth:`finish`."""
        if y != self._rows_written:
            raise ValueError(f"write_rows expects row {self._rows_written}, got {y}")
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"write_rows expects (h, {self.width}) arrays, got {rows.shape}")
        done = 0
        while done < rows.shape[0]:
            start = self._rows_written - self._buffered  # first row of the band
            height = min(BLOCK_SIZE, self.height - start)
            if self._band is None:
                self._band = np.empty((min(BLOCK_SIZE, self.height), self.width), self.dtype)
            n = min(rows.shape[0] - done, height - self._buffered)
            self._band[self._buffered:self._buffered + n] = rows[done:done + n]
            self._buffered += n
            self._rows_written += n
            done += n
            if self._buffered == height:
                self._flush_band()

    def _flush_band(self) -> None:
        if self._band is None or not self._buffered:
            return
        self.write(self._band[:self._buffered], 0, self._rows_written - self._buffered)
        self._buffered = 0
        try:
            self._ds.FlushCache()  # writes the finished blocks and drops them from the cache
        except RuntimeError as exc:
            raise OutputError(f"Writing {self.path} failed ({exc}). Check free disk space.") from _detached(exc)

    def finish(self) -> Path:
        """Complete the file under ``temp_path`` (close it; convert to COG when asked) and return
        that path. Called by a successful ``with`` block; call it earlier to read the file."""
        if self._finished:
            return self.temp_path
        self._flush_band()
        self._band = None
        self._close_dataset()
        if self.cog:
            self._convert_to_cog()
        self._finished = True
        return self.temp_path

    def _convert_to_cog(self) -> None:
        cog_temp = self.temp_path.with_name(self.temp_path.name + ".cog")
        opts = ["COMPRESS=DEFLATE", f"BLOCKSIZE={BLOCK_SIZE}", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS",
                "OVERVIEW_RESAMPLING=NEAREST" if not np.issubdtype(self.dtype, np.floating)
                else "OVERVIEW_RESAMPLING=AVERAGE"]
        try:
            out = gdal.Translate(str(cog_temp), str(self.temp_path), format="COG", creationOptions=opts)
            out = None  # noqa: F841 - closing finishes the file
            os.replace(cog_temp, self.temp_path)
        except (RuntimeError, OSError) as exc:
            cog_temp.unlink(missing_ok=True)
            raise OutputError(f"Cannot write {self.path} as a Cloud Optimized GeoTIFF ({exc}). "
                              "Check free disk space, or write a plain GeoTIFF.") from _detached(exc)

    def _remove_temp(self) -> None:
        for p in (self.temp_path, self.temp_path.with_name(self.temp_path.name + ".aux.xml"),
                  self.temp_path.with_name(self.temp_path.name + ".cog")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - best effort
                log.warning("Could not remove temporary file %s: %s", p, exc)

    def _close_dataset(self) -> None:
        ds, self._ds = self._ds, None
        if ds is None:
            return
        try:
            ds.FlushCache()
        finally:
            # Closing the last reference finishes the GeoTIFF. Also on error: a traceback must not
            # keep the file open (its disk space would stay in use and its folder busy).
            del ds

    def abort(self) -> None:
        """Drop the unfinished file (after a failure or a cancel)."""
        try:
            self._close_dataset()
        except (RuntimeError, OSError):
            pass
        self._remove_temp()

    def complete(self) -> Path | None:
        """Finish the temporary file; its path, or ``None`` for a scratch file (then deleted)."""
        try:
            self.finish()
        except OutputError:
            self._remove_temp()
            raise
        except (RuntimeError, OSError) as error:
            self._remove_temp()
            raise OutputError(f"Could not finish {self.path} ({error}). Check free disk space and "
                              "that the file is not open in another program.") from _detached(error)
        if self.scratch:
            self._remove_temp()
            return None
        return self.temp_path

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
            return
        temp = self.complete()
        if temp is not None:
            publish_together([(temp, self.path)])


def publish_together(files: Sequence[tuple[Path, Path]]) -> None:
    """Rename each finished temporary file onto its final path: all of them or none.

    Files already at a final path are set aside first and put back when a later rename fails, so
    a failure leaves the folder as it was (minus the temporary files). ``OutputError`` then.
    """
    set_aside: list[tuple[Path, Path]] = []
    published: list[Path] = []
    try:
        for _, final in files:
            if final.is_file() or final.is_symlink():
                aside = final.with_name(f".{final.name}.previous")
                os.replace(final, aside)
                set_aside.append((aside, final))
        for temp, final in files:
            aux = final.with_name(final.name + ".aux.xml")  # stale statistics of a replaced raster
            if aux.is_file():
                aux.unlink()
            os.replace(temp, final)
            published.append(final)
            log.debug("Wrote %s", final)
    except OSError as error:
        for final in published:
            final.unlink(missing_ok=True)
        for aside, final in set_aside:
            os.replace(aside, final)
        for temp, _ in files:
            temp.unlink(missing_ok=True)
        raise OutputError(f"Could not publish {', '.join(str(f) for _, f in files)} ({error}); none "
                          "of them was written. Check that no output name is a folder or open in "
                          "another program.") from _detached(error)
    for aside, _ in set_aside:
        aside.unlink(missing_ok=True)


class OutputSet:
    """The outputs of one run, published together when the ``with`` block succeeds, else none.

    ``add`` enters an :class:`AtomicRasterWriter`; ``add_file(temp, final)`` adds a file that
    another writer (e.g. polygonize) completed under a temporary name.
    """

    def __init__(self) -> None:
        self._writers: list[AtomicRasterWriter] = []
        self._files: list[tuple[Path, Path]] = []

    def add(self, writer: AtomicRasterWriter) -> AtomicRasterWriter:
        writer.__enter__()
        self._writers.append(writer)
        return writer

    def add_file(self, temp: Path, final: Path) -> None:
        self._files.append((Path(temp), Path(final)))

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                finished = [(temp, w.path) for w in self._writers if (temp := w.complete()) is not None]
            except BaseException:
                self._discard()
                raise
            publish_together(finished + self._files)
            return
        self._discard()

    def _discard(self) -> None:
        for writer in self._writers:
            writer.abort()
        for temp, _ in self._files:
            temp.unlink(missing_ok=True)
