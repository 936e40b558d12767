"""Keep the C allocator from hoarding freed raster rows (glibc only; a no-op elsewhere).

glibc serves large allocations (≥ 128 KiB) with mmap and returns them to the system on free,
but after the first such free it raises that threshold (up to 32 MiB), so later row-band arrays
come from the heap and fragment it: peak RSS then grows with the raster's width (measured on a
null-model 20000² run: 1.102× the RSS of 2000² with the threshold pinned at 4 MiB, 1.014× at
128 KiB). Pinning the threshold at glibc's own starting value switches that adaptation off —
at a price: every allocation of 128 KiB or more is then a fresh mmap, which made each small
detection about twice as slow. So the pin is process-wide policy with two conditions:

* only a process that opted in (:func:`allow_pinning`: the engine worker, never QGIS's own
  process), and
* only once a raster at least :data:`WIDE_RASTER_PX` wide is processed (:func:`pin_for_raster`);
  it then stays pinned for the life of the process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default starting threshold
#: glibc's default; its adaptation raises it with the mmap threshold (to 64 MiB), and it stays
#: there when the mmap threshold is pinned later, so freed heap would never return to the system
TRIM_THRESHOLD_BYTES = 128 * 1024
#: Rasters at least this wide pin the threshold (below it the heap's growth is a few MiB).
WIDE_RASTER_PX = 4096
_pinned = False
_allowed = False


def allow_pinning() -> None:
    """Let this process pin the threshold for wide rasters (call it only in a process of its own)."""
    global _allowed
    _allowed = True


def pin_for_raster(width: int) -> bool:
    """Pin the threshold when this process allows it and ``width`` is wide; True if pinned."""
    if _allowed and width >= WIDE_RASTER_PX:
        return pin_mmap_threshold()
    return _pinned


def is_pinned() -> bool:
    return _pinned


def pin_pending() -> bool:
    """True while a wide raster would still pin the threshold here (callers skip reading the
    raster's width otherwise: in QGIS's process and once pinned)."""
    return _allowed and not _pinned


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold once per process; True if it is pinned (now or before)."""
    global _pinned
    if _pinned or not sys.platform.startswith("linux"):
        return _pinned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _pinned = (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
               and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    log.debug("glibc mmap threshold pinned at %d bytes: %s", MMAP_THRESHOLD_BYTES, _pinned)
    return _pinned
