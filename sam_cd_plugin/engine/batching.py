"""Batch size from free device memory, and out-of-memory back-off.

:func:`auto_batch_size` picks the batch size when the user gave none: on CUDA from the memory
one sample takes (measured with a one-sample probe) and the free memory
(``torch.cuda.mem_get_info``); on the CPU a small fixed size.
:class:`OomBackoff` runs a batch through a predict function; on ``torch.cuda.OutOfMemoryError``
it halves the batch size and retries the rest, down to 1, and then calls ``to_cpu`` once (the
caller moves the model to the CPU) with a warning saying so. Every sample is predicted exactly
once, in order, so the result is the same as an undisturbed run with the final batch size.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["auto_batch_size", "OomBackoff", "CPU_BATCH_SIZE", "MAX_BATCH_SIZE"]

CPU_BATCH_SIZE = 2
MAX_BATCH_SIZE = 64
#: Share of the free device memory the batches may use (the rest: fragmentation, other apps).
MEMORY_SHARE = 0.6

PredictFn = Callable[..., np.ndarray]


def auto_batch_size(device: torch.device, probe: Callable[[int], None]) -> int:
    """Batch size for ``device``: CPU → :data:`CPU_BATCH_SIZE`; CUDA → free memory × share
    divided by the peak memory of ``probe(1)`` (one sample through the model), within
    ``[1, MAX_BATCH_SIZE]``."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        probe(1)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        log.warning("One tile does not fit in the free memory of %s; starting with batch size 1",
                    torch.cuda.get_device_name(device))
        return 1
    per_sample = max(1, torch.cuda.max_memory_allocated(device) - base)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    size = int(min(MAX_BATCH_SIZE, max(1, free * MEMORY_SHARE // per_sample)))
    log.info("Batch size %d from %.1f of %.1f GiB free and %.0f MiB per tile", size,
             free / 1024 ** 3, total / 1024 ** 3, per_sample / 1024 ** 2)
    return size


class OomBackoff:
    """Predict batches in chunks of ``batch_size``; halve on CUDA out-of-memory, then fall back
    to the CPU via ``to_cpu`` (called once, after a warning)."""

    def __init__(self, batch_size: int, to_cpu: Callable[[], None]) -> None:
        self.batch_size = max(1, int(batch_size))
        self.fell_back = False
        self._to_cpu = to_cpu

    def run(self, predict: PredictFn, before: np.ndarray, after: np.ndarray,
            *extra: np.ndarray) -> np.ndarray:
        """``predict`` over all samples of ``before``/``after`` (and ``extra`` arrays, sliced
        alike: SAM-CD's priors) along the first axis, in order."""
        out: list[np.ndarray] = []
        i, n = 0, before.shape[0]
        while i < n:
            j = min(n, i + self.batch_size)
            try:
                out.append(predict(before[i:j], after[i:j], *(e[i:j] for e in extra)))
            except torch.cuda.OutOfMemoryError:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    log.warning("Out of device memory; retrying with batch size %d", self.batch_size)
                elif not self.fell_back:
                    log.warning("Out of GPU memory even with batch size 1: continuing on the CPU, "
                                "which is much slower. Close other GPU programs or use a smaller tile size.")
                    self.fell_back = True
                    self._to_cpu()
                else:
                    raise
                continue
            i = j
        if not out:
            return np.zeros((0,) + before.shape[2:], dtype=np.float32)
        return np.concatenate(out) if len(out) > 1 else out[0]
