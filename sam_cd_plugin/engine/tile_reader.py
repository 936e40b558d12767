"""Reading tile batches ahead of the model, and writing results behind it, in background threads.

:func:`read_batch` is the pure read half of the tile function (window → normalised images and
validity); :class:`BackgroundReader` runs it for a sequence of batches in a daemon thread,
a bounded queue ahead of the consumer, so GDAL reads and warping overlap with the model.
An exception in the reader is re-raised once, unchanged, in the consuming thread; closing the
reader (end of the ``with`` block, cancel, an error downstream) stops the thread promptly.
:class:`BackgroundSink` is the write side: calls queued in order and run in a background thread
(GDAL compresses output blocks while the model runs); its first failure is re-raised in the
caller at the next call or at :meth:`BackgroundSink.close`.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from ..core.alignment import AlignedPair
from ..core.errors import InputError
from ..core.tiling import Tile

log = logging.getLogger(__name__)

__all__ = ["TileBatch", "PredictedBatch", "read_batch", "BackgroundReader", "BackgroundSink"]


@dataclass
class TileBatch:
    """Tiles and their pixels: ``before``/``after`` ``(len(work), 3, T, T)`` float32 for the tiles
    ``work`` (indices into ``tiles``) that have a valid pixel, ``valid`` ``(len(tiles), T, T)``."""

    tiles: list[Tile]
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    work: list[int]


@dataclass
class PredictedBatch:
    """What the model made of a batch: ``probs[i]`` ``(T, T)`` for each tile index ``i`` with a
    valid pixel, ``valid`` ``(len(tiles), T, T)``."""

    tiles: list[Tile]
    valid: np.ndarray
    probs: dict[int, np.ndarray]


def read_batch(pair: AlignedPair, tiles: Sequence[Tile]) -> TileBatch:
    """Read the windows of ``tiles`` from ``pair``; tiles without a valid pixel are not stacked.

    ``InputError`` naming both rasters and the window when GDAL fails to read (damaged file,
    vanished network drive)."""
    reads = []
    for t in tiles:
        try:
            reads.append(pair.read(t.x, t.y, t.size, t.size))
        except RuntimeError as exc:
            raise InputError(
                f"Reading the window at pixel ({t.x}, {t.y}) of {pair.before.path} / {pair.after.path} "
                f"failed ({exc}). The file may be damaged or on a drive that is no longer available."
            ) from exc
    work = [i for i, (_, _, valid) in enumerate(reads) if valid.any()]
    size = tiles[0].size if tiles else 0
    empty = np.zeros((0, 3, size, size), dtype=np.float32)
    before = np.stack([reads[i][0] for i in work]) if work else empty
    after = np.stack([reads[i][1] for i in work]) if work else empty
    valid = np.stack([r[2] for r in reads]) if reads else np.zeros((0, size, size), bool)
    return TileBatch(list(tiles), before, after, valid, work)


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
    """Iterate ``read(batch)`` for each of ``batches`` in order, produced ``depth`` batches ahead
    by a background thread. ``after_read()`` is called in the reader thread after each batch
    (e.g. to drop GDAL's block caches, so they never hold more than a batch's blocks)."""

    def __init__(self, read: Callable[[list[Tile]], TileBatch], batches: Sequence[list[Tile]],
                 depth: int = 2, after_read: Callable[[], None] | None = None) -> None:
        self._read = read
        self._batches = list(batches)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._after_read = after_read
        self._thread = threading.Thread(target=self._run, name="sam-cd-tile-reader", daemon=True)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for batch in self._batches:
                if self._stop.is_set():
                    return
                item = self._read(batch)
                if self._after_read is not None:
                    self._after_read()
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(_Failure(exc))

    def __enter__(self) -> "BackgroundReader":
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[TileBatch]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the reader thread and wait for it (idempotent)."""
        self._stop.set()
        while self._thread.is_alive():
            _drain(self._queue)
            self._thread.join(timeout=0.1)

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
