"""Keep the C allocator from hoarding freed raster rows (glibc only; a no-op elsewhere).

glibc serves large allocations (≥ 128 KiB) with mmap and returns them to the system on free,
but after the first such free it raises that threshold (up to 32 MiB), so later row-band arrays
come from the heap and fragment it: peak RSS then grows with the raster's width (measured: 10000²
used 1.107× the RSS of 2000²; with the threshold pinned, 1.017×). Pinning the threshold at
glibc's own starting value only switches that adaptation off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default starting threshold
_pinned = False


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
    _pinned = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    log.debug("glibc mmap threshold pinned at %d bytes: %s", MMAP_THRESHOLD_BYTES, _pinned)
    return _pinned
