"""Reading tile batches ahead of the model, and writing results behind it, in background threads.

:func:`read_batch` is the pure read half of the tile function (window → normalised, or raw,
images and validity); :class:`BackgroundReader` runs it for a sequence of batches in one or more
daemon threads, each with its own GDAL handles (no lock: GDAL releases the GIL, so the reads run
in parallel) and bounded queues ahead of the consumer, which takes the batches in their order.
An exception in a reader is re-raised once, unchanged, in the consuming thread when it reaches
that batch; closing the reader (end of the ``with`` block, cancel, an error downstream) stops
every thread promptly. :func:`gdal_block_cache` sizes GDAL's block cache for a run, so blocks
shared by neighbouring windows are decoded (and warped) once instead of once per batch.
:class:`BackgroundSink` is the write side: calls queued in order and run in a background thread
(GDAL compresses output blocks while the model runs); its first failure is re-raised in the
caller at the next call or at :meth:`BackgroundSink.close`.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from osgeo import gdal

from ..core.alignment import AlignedPair, PairReader, window_overlaps
from ..core.errors import InputError
from ..core.tiling import Tile

log = logging.getLogger(__name__)

__all__ = ["TileBatch", "PredictedBatch", "read_batch", "gdal_block_cache", "BackgroundReader",
           "BackgroundSink"]


Coefficients = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class TileBatch:
    """Tiles and their pixels: ``before``/``after`` ``(len(work), 3, T, T)`` for the tiles
    ``work`` (indices into ``tiles``) that have a valid pixel, ``valid`` ``(len(tiles), T, T)``.
    ``coefficients`` None: the pixels are normalised float32; else they are raw uint8/uint16 and
    normalise with these (:attr:`~..core.alignment.AlignedPair.coefficients`)."""

    tiles: list[Tile]
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    work: list[int]
    coefficients: Coefficients | None = None


@dataclass
class PredictedBatch:
    """What the model made of a batch: ``probs[i]`` ``(T, T)`` for each tile index ``i`` with a
    valid pixel, ``valid`` ``(len(tiles), T, T)``."""

    tiles: list[Tile]
    valid: np.ndarray
    probs: dict[int, np.ndarray]


def read_batch(pair: AlignedPair, tiles: Sequence[Tile], reader: PairReader | None = None,
               raw: bool = False) -> TileBatch:
    """Read the windows of ``tiles`` from ``pair`` (through ``reader``, a thread's own handles,
    when given); tiles without a valid pixel are not stacked, and tiles entirely outside the
    pair's overlap are not read at all. ``raw``: pixels in their own type (see :class:`TileBatch`).

    ``InputError`` naming both rasters and the window when GDAL fails to read (damaged file,
    vanished network drive)."""
    source = reader if reader is not None else pair
    size = tiles[0].size if tiles else 0
    types = pair.raw_dtypes if raw else (np.dtype(np.float32),) * 2
    if types is None:
        raise ValueError("this pair's pixel types cannot be read raw")
    reads = []
    for t in tiles:
        if not window_overlaps(pair, t.x, t.y, t.size, t.size):
            reads.append(None)
            continue
        try:
            window = (t.x, t.y, t.size, t.size)
            reads.append(source.read(*window, raw=True) if raw else source.read(*window))
        except RuntimeError as exc:
            raise InputError(
                f"Reading the window at pixel ({t.x}, {t.y}) of {pair.before.path} / {pair.after.path} "
                f"failed ({exc}). The file may be damaged or on a drive that is no longer available."
            ) from exc
    valid = np.zeros((len(tiles), size, size), bool)
    for i, r in enumerate(reads):
        if r is not None:
            valid[i] = r[2]
    work = [i for i, r in enumerate(reads) if r is not None and valid[i].any()]
    before, after = (np.stack([reads[i][k] for i in work]) if work  # type: ignore[index]
                     else np.zeros((0, 3, size, size), dtype=types[k]) for k in (0, 1))
    return TileBatch(list(tiles), before, after, valid, work, pair.coefficients if raw else None)


_CACHE_LOCK = threading.Lock()
_CACHE_REQUESTS: list[int] = []
_CACHE_ORIGINAL: list[int] = []


@contextlib.contextmanager
def gdal_block_cache(nbytes: int) -> Iterator[None]:
    """GDAL's (process-wide) block cache set to ``nbytes`` meanwhile — to the largest request
    while several runs overlap — and restored afterwards."""
    with _CACHE_LOCK:
        if not _CACHE_REQUESTS:
            _CACHE_ORIGINAL[:] = [gdal.GetCacheMax()]
        _CACHE_REQUESTS.append(int(nbytes))
        gdal.SetCacheMax(max(_CACHE_REQUESTS))
    try:
        yield
    finally:
        with _CACHE_LOCK:
            _CACHE_REQUESTS.remove(int(nbytes))
            gdal.SetCacheMax(max(_CACHE_REQUESTS) if _CACHE_REQUESTS else _CACHE_ORIGINAL[0])


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _drain(q: queue.Queue) -> None:
    """Drop every item waiting in ``q``."""
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


class BackgroundReader:
    """Iterate ``read(handle, batch)`` for each of ``batches`` in order, read ahead by ``readers``
    background threads: thread ``i`` opens its own ``handle = open_handle()`` (closed with its
    ``close()`` when it ends; None: no handle) and reads batches ``i, i + readers, ...``, each up
    to ``depth`` batches ahead of the consumer (at least one per thread). The consumer takes
    them in order, so the sequence is the one of a single reader."""

    def __init__(self, read: Callable[[Any, list[Tile]], TileBatch], batches: Sequence[list[Tile]],
                 depth: int = 2, readers: int = 1,
                 open_handle: Callable[[], Any] | None = None) -> None:
        self._read = read
        self._open = open_handle
        self._batches = list(batches)
        self._readers = max(1, min(int(readers), len(self._batches) or 1))
        per_thread = max(1, -(-max(1, depth) // self._readers))
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=per_thread)
                                           for _ in range(self._readers)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), name="sam-cd-tile-reader",
                                          daemon=True) for i in range(self._readers)]

    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, index: int) -> None:
        q, handle = self._queues[index], None
        try:
            handle = self._open() if self._open is not None else None
            for k in range(index, len(self._batches), self._readers):
                if self._stop.is_set():
                    return
                if not self._put(q, self._read(handle, self._batches[k])):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(q, _Failure(exc))
        finally:
            if handle is not None:
                handle.close()

    def __enter__(self) -> "BackgroundReader":
        for t in self._threads:
            t.start()
        return self

    def __iter__(self) -> Iterator[TileBatch]:
        for k in range(len(self._batches)):
            item = self._queues[k % self._readers].get()
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the reader threads and wait for them (idempotent)."""
        self._stop.set()
        for t in self._threads:
            while t.is_alive():
                for q in self._queues:
                    _drain(q)
                t.join(timeout=0.1)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class BackgroundSink:
    """Run ``fn(*args)`` for each call, in order, in a background thread behind a bounded queue."""

    def __init__(self, fn: Callable[..., None], depth: int = 2) -> None:
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sam-cd-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._fn(*item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __call__(self, *args: object) -> None:
        self._raise()
        self._queue.put(args)

    def close(self) -> None:
        """Wait until every queued call ran; re-raise the first failure."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop after the call in progress, dropping the rest (used when the run failed)."""
        if self._thread.is_alive():
            _drain(self._queue)
            self._queue.put(_DONE)
            self._thread.join()
