"""Loading official encoder weight files into our encoder architectures.

Official ultralytics checkpoints (FastSAM-*.pt, sam2_*.pt, mobile_sam.pt) are pickles of whole
model objects. They are opened with ``torch.load(weights_only=True)`` and an allow-list made of
the torch and ultralytics module classes only, so a file that tries to run arbitrary code is
refused instead of executed.
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ...core.errors import WeightsError

log = logging.getLogger(__name__)


def _module_classes(*modules) -> list[type]:
    found: list[type] = []
    for module in modules:
        for _, obj in inspect.getmembers(module, inspect.isclass):
            found.append(obj)
    return found


def _allowed_globals() -> list:
    import collections
    import torch.nn.modules as tnm
    import ultralytics.nn.modules as unm
    import ultralytics.nn.tasks as tasks

    allowed = _module_classes(tnm, unm, tasks)
    for sub in ("activation", "batchnorm", "container", "conv", "dropout", "linear",
                "normalization", "pooling", "upsampling", "sparse"):
        allowed += _module_classes(getattr(tnm, sub))
    try:
        import ultralytics.models.sam.modules as sam_modules
        from ultralytics.models.sam.modules import blocks, encoders, sam, tiny_encoder, decoders, memory_attention
        allowed += _module_classes(sam_modules, blocks, encoders, sam, tiny_encoder, decoders,
                                   memory_attention)
    except ImportError:  # pragma: no cover - depends on ultralytics version
        pass
    allowed += [collections.OrderedDict, set, getattr, slice, range, dict, list, tuple]
    return allowed


def load_ultralytics_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Return the float state dict stored in an official weights file (or a plain state dict)."""
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or corrupt file
        raise WeightsError(
            f"Cannot read encoder weights '{path.name}': {str(exc).splitlines()[0][:200]}. "
            "Use the official file for this encoder, downloaded again if it may be truncated."
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("ema", "model", "state_dict"):
            if obj.get(key) is not None:
                obj = obj[key]
                break
    if isinstance(obj, nn.Module):
        obj = obj.float().state_dict()
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"'{path.name}' does not hold model weights.")
    return dict(obj)


def copy_matching(target: nn.Module, state: Mapping[str, torch.Tensor], path: Path,
                  encoder_name: str) -> None:
    """Copy ``state`` into ``target``; every target tensor must be present with the right shape."""
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        raise WeightsError(
            f"'{path.name}' is not a {encoder_name} weights file "
            f"({len(missing)} tensors missing, {len(wrong)} with the wrong shape). "
            "Pick the official file made for this encoder."
        )
    target.load_state_dict({k: state[k].to(own[k].dtype) for k in own}, strict=True)
