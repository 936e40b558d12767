"""Loading official encoder weight files into our encoder architectures.

The official files come in three shapes:

* ``FastSAM-s.pt`` / ``FastSAM-x.pt``: an ultralytics checkpoint, a pickle of a dict whose
  ``'model'`` (or ``'ema'``) entry is a whole ``SegmentationModel`` object (often fp16), next to
  training metadata (numbers, strings, sometimes numpy scalars and paths);
* ``sam2_t.pt`` / ``sam2_s.pt`` / ``sam2_b.pt`` (and ``sam2.1_*``): Meta's ``{'model': state_dict}``
  of the whole SAM2 model (keys ``image_encoder.trunk.…``, ``image_encoder.neck.…``, ``memory_…``);
* ``mobile_sam.pt``: a plain state dict of the whole SAM model (keys ``image_encoder.…``,
  ``prompt_encoder.…``, ``mask_decoder.…``).

Every file is opened with ``torch.load(weights_only=True)``. A pickle may only reconstruct what
the file names *and* this module allows: torch / ultralytics ``nn.Module`` classes (looked up in
those packages only, so legacy module paths of old ultralytics releases still resolve), the
numpy scalars and paths ultralytics stores in its metadata, and a ``getattr`` restricted to
methods of those module classes. Module classes can only be *rebuilt* from their saved state,
never called (an ultralytics model's ``__init__`` evaluates strings from its config, so a pickle
calling it could run code). Anything else is refused instead of executed.
"""
from __future__ import annotations

import collections
import importlib
import logging
import pathlib
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ...core.errors import DependencyError, WeightsError

log = logging.getLogger(__name__)

# Packages whose nn.Module subclasses a weights file may reconstruct (pickled whole models).
_MODULE_PACKAGES = ("torch.nn.modules", "ultralytics.nn.modules", "ultralytics.nn.tasks",
                    "ultralytics.models.sam.modules")
_REBUILD_ONLY: dict[type, type | None] = {}


class _Refused(RuntimeError):
    """Raised inside the unpickler when a file asks for something that is not plain weights."""


def _rebuild_only(cls: type) -> type | None:
    """A subclass of module class ``cls`` that unpickling can rebuild but never *call*.

    A pickled module is rebuilt with ``cls.__new__`` plus its saved ``__dict__`` (NEWOBJ + BUILD),
    which runs no code of the class. A pickle may instead *call* an allowed class (REDUCE), which
    runs ``__init__`` with arguments of the file's choosing — ultralytics' model ``__init__``
    evaluates strings of its config, so that would execute arbitrary code. The subclass registered
    under the class's pickled name has an ``__init__`` that refuses.
    """
    if cls not in _REBUILD_ONLY:
        def __init__(self, *args, **kwargs):
            raise _Refused(
                f"calling {cls.__module__}.{cls.__qualname__}(...) refused while reading weights")

        try:
            with warnings.catch_warnings():  # deprecated torch classes warn when subclassed
                warnings.simplefilter("ignore")
                _REBUILD_ONLY[cls] = type(cls.__name__, (cls,), {"__init__": __init__,
                                                                 "__module__": __name__})
        except TypeError:  # pragma: no cover - a class that cannot be subclassed is not allowed
            _REBUILD_ONLY[cls] = None
    return _REBUILD_ONLY[cls]


def _restricted_getattr(obj: Any, name: str) -> Any:
    """``getattr`` for unpickling: only methods of nn.Module classes (old ultralytics pickles
    store ``Detect.forward`` this way). Refuses everything else."""
    if (isinstance(obj, type) and issubclass(obj, nn.Module) and not name.startswith("_")
            and callable(getattr(obj, name, None))):
        return getattr(obj, name)
    raise _Refused(f"getattr({obj!r}, {name!r}) refused while reading weights")


def _data_globals() -> dict[str, Any]:
    """Non-module globals found in official checkpoints' metadata, by pickled name."""
    import numpy as np

    found: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice,
        "builtins.range": range, "builtins.getattr": _restricted_getattr,
        "numpy.dtype": np.dtype,
    }
    scalar = np.float64(0).__reduce__()[0]  # numpy.core.multiarray.scalar (numpy 1) / _core (2)
    found["numpy.core.multiarray.scalar"] = scalar
    found["numpy._core.multiarray.scalar"] = scalar
    for kind in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_):
        dtype_class = type(np.dtype(kind))
        found[f"{dtype_class.__module__}.{dtype_class.__qualname__}"] = dtype_class
    local_path = type(pathlib.Path())  # PosixPath or WindowsPath: paths pickled on either OS
    for module in ("pathlib", "pathlib._local"):
        for cls in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
                    "PureWindowsPath"):
            found[f"{module}.{cls}"] = local_path
    try:
        from ultralytics.utils import IterableSimpleNamespace

        found["ultralytics.utils.IterableSimpleNamespace"] = IterableSimpleNamespace
        found["ultralytics.yolo.utils.IterableSimpleNamespace"] = IterableSimpleNamespace
    except ImportError:  # pragma: no cover - depends on ultralytics version
        pass
    return found


def _module_class(name: str) -> type | None:
    """The nn.Module subclass pickled as ``name`` if it lives in an allowed package, else None."""
    module_name, _, attr = name.rpartition(".")
    if not any(module_name == p or module_name.startswith(p + ".") for p in _MODULE_PACKAGES):
        return None
    try:
        obj = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        return None
    return _rebuild_only(obj) if isinstance(obj, type) and issubclass(obj, nn.Module) else None


def _all_module_classes() -> dict[str, type]:
    """Every nn.Module class of the allowed packages (fallback when a file cannot be scanned)."""
    import inspect

    import torch.nn.modules as tnm
    import ultralytics.nn.modules as unm
    import ultralytics.nn.tasks as tasks

    modules = [tnm, unm, tasks]
    try:
        from ultralytics.models.sam.modules import (blocks, decoders, encoders, memory_attention,
                                                    sam, tiny_encoder)
        modules += [blocks, decoders, encoders, memory_attention, sam, tiny_encoder]
    except ImportError:  # pragma: no cover - depends on ultralytics version
        pass
    found: dict[str, type] = {}
    for module in modules:
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, nn.Module) and _rebuild_only(obj) is not None:
                found[f"{obj.__module__}.{obj.__qualname__}"] = _rebuild_only(obj)
    return found


def _allowed_globals(path: Path) -> list:
    """``(object, pickled name)`` pairs this file may use (only the globals it actually names)."""
    data = _data_globals()
    try:
        needed = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # not a zip checkpoint (legacy format, or corrupt): allow the full set
        return [(obj, name) for name, obj in {**_all_module_classes(), **data}.items()]
    # All data globals always (numpy dtype classes are built while unpickling and never named in
    # the file), module classes only when the file names them (keeps the unpickler fast).
    allowed = [(obj, name) for name, obj in data.items()]
    for name in needed:
        obj = _module_class(name) if name not in data else None
        if obj is not None:
            allowed.append((obj, name))
    return allowed


def _read_error(path: Path, exc: Exception) -> WeightsError:
    """A user-facing error for a file torch could not (or was not allowed to) unpickle."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    blocked = (re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"(getattr\(.*\)) refused", text)
               or re.search(r"calling ([\w.]+)\(\.\.\.\) refused", text))
    if blocked:
        return WeightsError(
            f"'{path.name}' holds Python objects that are not model weights ({blocked.group(1)}); "
            "they were refused instead of executed. Use the official weights file of this encoder.")
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    reason = detail.group(1).strip() if detail else (lines[0] if lines else type(exc).__name__)
    return WeightsError(
        f"Cannot read encoder weights '{path.name}' ({reason[:160]}): it is not a PyTorch "
        "weights file or it is truncated/corrupt. Download the official file again.")


def load_ultralytics_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Return the float state dict stored in an official weights file (or a plain state dict).

    Accepts ultralytics checkpoints (``{'model'|'ema': nn.Module, ...}``), ``{'model': state_dict}``
    and plain state dicts. Raises :class:`WeightsError` for unreadable, unsafe or non-weight files
    (:class:`DependencyError` on PyTorch older than 2.6, which lacks the restricted loader we need).
    """
    path = Path(path)
    if not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        raise DependencyError(
            f"Reading encoder weights safely needs PyTorch 2.6 or newer (found {torch.__version__}). "
            "Update PyTorch, then try again.")
    try:
        with torch.serialization.safe_globals(_allowed_globals(path)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, or corrupt / truncated / not a torch file
        raise _read_error(path, exc) from exc
    if isinstance(obj, Mapping):
        for key in ("ema", "model", "state_dict"):
            if obj.get(key) is not None:
                obj = obj[key]
                break
    if isinstance(obj, nn.Module):
        obj = obj.float().state_dict()
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsError(f"'{path.name}' does not hold model weights. Use the official weights "
                           "file of this encoder.")
    return dict(obj)


def describe_weights(state: Mapping[str, torch.Tensor]) -> str:
    """A short guess of which model a state dict belongs to (for error messages), or ''."""
    def n_blocks(prefix: str) -> int:
        ids = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
        return max(ids) + 1 if ids else 0

    proj = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if proj is not None:
        sizes = {(96, 12): "sam2-t", (96, 16): "sam2-s", (112, 24): "sam2-b+", (144, 48): "sam2-l"}
        depth = n_blocks("image_encoder.trunk.blocks.")
        name = sizes.get((int(proj.shape[0]), depth))
        return f"SAM2 weights ({name})" if name else "SAM2 weights"
    if any(k.startswith("image_encoder.layers.") for k in state):
        return "MobileSAM weights (mobilesam)"
    if any(k.startswith("image_encoder.blocks.") for k in state):
        return "SAM ViT weights (not supported as an encoder here)"
    first = state.get("model.0.conv.weight")
    if first is not None:
        widths = {16: "n", 32: "s (fastsam-s)", 48: "m", 64: "l", 80: "x (fastsam-x)"}
        size = widths.get(int(first.shape[0]))
        return f"YOLOv8/FastSAM weights{f', size {size}' if size else ''}"
    return ""


def copy_matching(target: nn.Module, state: Mapping[str, torch.Tensor], path: Path,
                  encoder_name: str, full: Mapping[str, torch.Tensor] | None = None,
                  strict_extra: bool = False) -> None:
    """Copy ``state`` into ``target``; every target tensor must be present with the right shape.

    ``full`` is the whole file's state dict (used to name what the file is in the error);
    ``strict_extra`` also rejects tensors of ``state`` that ``target`` lacks (a bigger model).
    """
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own] if strict_extra else []
    if missing or wrong or extra:
        guess = describe_weights(full if full is not None else state)
        looks = f"; it looks like {guess}" if guess else ""
        raise WeightsError(
            f"'{Path(path).name}' is not a {encoder_name} weights file ({len(missing)} tensors "
            f"missing, {len(wrong)} with the wrong shape, {len(extra)} unexpected{looks}). "
            f"Pick the official file made for {encoder_name}."
        )
    target.load_state_dict({k: state[k].to(own[k].dtype) for k in own}, strict=True)
