"""Device choice ('auto' | 'cpu' | 'cuda') with CPU fallback, and a human description of it."""
from __future__ import annotations

import logging

import torch

from ..core.errors import InputError

log = logging.getLogger(__name__)
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto") -> torch.device:
    """'auto' → CUDA when available else CPU; 'cuda' without CUDA falls back to CPU with a warning."""
    choice = (choice or "auto").lower()
    if choice not in DEVICE_CHOICES and not choice.startswith("cuda:"):
        raise InputError(f"Unknown device '{choice}'. Use one of: {', '.join(DEVICE_CHOICES)}.")
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if choice == "auto" else choice)
    if choice != "auto":
        log.warning("CUDA was requested but is not available (torch %s, no usable GPU); "
                    "running on the CPU instead, which is much slower.", torch.__version__)
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """'CUDA: <GPU name> (<memory> GiB)' or 'CPU (N threads)'."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"CUDA: {props.name} ({props.total_memory / 1024 ** 3:.0f} GiB)"
    return f"CPU ({torch.get_num_threads()} threads)"


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ('auto' | 'bf16' | 'fp16' | 'off') on ``device``; None
    (full precision) on the CPU or 'off'. 'auto' prefers bf16 where the GPU supports it."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``; disabled when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
