"""Host → device transfer of tile batches, and normalisation on the device.

Tiles of 8- and 16-bit rasters travel raw (1–2 bytes a sample instead of 4) and are normalised
where the model runs, by :func:`normalise_tensor` — the formula of
:func:`~..core.normalisation.normalise` with the same float32 coefficients, so the values are
the same on every device (float32 subtract and multiply, each correctly rounded). On CUDA,
:class:`DeviceFeed` copies through reused page-locked buffers on a side stream (non-blocking);
on the CPU an upload is a view of the array (no copy).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["DeviceFeed", "normalise_tensor"]


def _to_torch(array: np.ndarray) -> torch.Tensor:
    """A tensor viewing ``array``; uint16 is viewed as int16 (every device copies int16)."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        array = array.view(np.int16)
    return torch.from_numpy(array)


def normalise_tensor(raw: torch.Tensor, low: np.ndarray, scale: np.ndarray,
                     unsigned16: bool = False) -> torch.Tensor:
    """``clip((raw - low) * scale, 0, 1)`` in float32 for a raw ``(B, C, H, W)`` integer tensor,
    per channel (``low``/``scale`` float32 ``(C,)``, :attr:`~..core.alignment.AlignedPair.coefficients`),
    on ``raw``'s device. ``unsigned16``: ``raw`` holds uint16 pixels viewed as int16."""
    x = raw.to(torch.int32).bitwise_and_(0xFFFF) if unsigned16 else raw
    x = x.to(torch.float32)
    lo = torch.from_numpy(np.ascontiguousarray(low, np.float32)).to(raw.device).view(1, -1, 1, 1)
    sc = torch.from_numpy(np.ascontiguousarray(scale, np.float32)).to(raw.device).view(1, -1, 1, 1)
    return ((x - lo) * sc).clamp_(0.0, 1.0)


class DeviceFeed:
    """Uploads host arrays to ``device``. On CUDA each named slot reuses one page-locked buffer
    (grown when a larger batch comes) and copies on a side stream; the current stream waits for
    the copy, and a slot's buffer is refilled only after its previous copy finished."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cuda = device.type == "cuda"
        self._stream = torch.cuda.Stream(device) if self._cuda else None
        self._pinned: dict[str, torch.Tensor] = {}
        self._copied: dict[str, torch.cuda.Event] = {}

    def upload(self, slot: str, array: np.ndarray) -> torch.Tensor:
        """``array`` on the device (uint16 as int16, see :func:`normalise_tensor`)."""
        host = _to_torch(array)
        if not self._cuda:
            return host
        pending = self._copied.pop(slot, None)
        if pending is not None:
            pending.synchronize()
        buf = self._pinned.get(slot)
        if buf is None or buf.dtype != host.dtype or buf.numel() < host.numel():
            buf = torch.empty(host.numel(), dtype=host.dtype, pin_memory=True)
            self._pinned[slot] = buf
        staged = buf[:host.numel()].view(host.shape)
        staged.copy_(host)
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)  # the destination memory may be reused from it
        with torch.cuda.stream(self._stream):
            out = staged.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._stream)
        self._copied[slot] = done
        current.wait_stream(self._stream)
        out.record_stream(current)
        return out
