"""The sam-cd checkpoint format: one ``.pt`` file with fp16 weights and JSON metadata.

Layout (all plain types, so it loads with ``torch.load(weights_only=True)``)::

    {"format": "sam-cd-checkpoint", "format_version": 2,
     "meta": "<JSON object>", "state_dict": {name: tensor}}

Versions: 1 — the first format; 2 — SAM2-CD (gate inside the Hiera trunk, SAM2 FPN neck, all-to-all
fusion, three masks) and SAM-CD (MAM at every level) got new architectures. The weights layout is
unchanged, so a version-1 SAM-CEM-CD checkpoint loads as it is; version-1 SAM2-CD and SAM-CD
checkpoints hold the old architectures and are refused with a "retrain" message
(:data:`ARCHITECTURE_SINCE`). :func:`upgrade_checkpoint` rewrites a loadable version-1 file as
version 2.

``meta`` holds at least ``method``, ``encoder``, ``input_size`` and ``delta``; the trainer adds
normalisation, prompts, training data and metrics. A checkpoint is untrusted input: anything
else than tensors and plain containers is refused before it is unpickled.
"""
from __future__ import annotations

import io
import json
import os
# pickle only inspects files, with a find_class that refuses or stubs every global (_InspectingUnpickler)
import pickle  # nosec B403
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import CheckpointError

FORMAT = "sam-cd-checkpoint"
FORMAT_VERSION = 2
#: The format version that introduced each method's current architecture.
ARCHITECTURE_SINCE = {"sam-cem-cd": 1, "sam2-cd": 2, "sam-cd": 2}
REQUIRED_META = ("method", "encoder", "input_size")
MAX_CHECKPOINT_BYTES = 4 * 1024 ** 3


def save_checkpoint(path: Path | str, model: nn.Module, meta: dict[str, Any],
                    half: bool = True) -> Path:
    """Write ``model``'s weights (fp16 when ``half``) and ``meta`` atomically to ``path``."""
    path = Path(path)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
             for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
               "meta": json.dumps(meta, sort_keys=True), "state_dict": state}
    return atomic_torch_save(payload, path)


def atomic_torch_save(payload: Any, path: Path | str) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _Stub:
    """What a global of the inspected pickle becomes: records the call, runs nothing."""

    def __init__(self, name: str, args: tuple = ()) -> None:
        self.name, self.args = name, args

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub(self.name, args)

    def __setstate__(self, state: Any) -> None:  # BUILD on a rebuilt object: keep nothing
        pass


class _InspectingUnpickler(pickle.Unpickler):
    """Reads ``data.pkl`` of a torch zip checkpoint without constructing anything: globals
    outside :data:`_ALLOWED_GLOBALS` are refused, the rest become :class:`_Stub`, and each
    tensor storage the file declares is recorded as ``(key, dtype name, element count)``."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(io.BytesIO(data))
        self.name = name
        self.storages: list[tuple[str, str, int]] = []

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified not in _ALLOWED_GLOBALS and not (module == "torch" and name.endswith("Storage")):
            raise CheckpointError(
                f"Checkpoint {self.name} asks to run {qualified} while loading: it holds objects "
                "other than tensors and metadata and is refused for safety. Use a checkpoint made "
                "by sam-cd from a source you trust.")
        return _Stub(qualified)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"Checkpoint {self.name} has a malformed tensor reference.")
        _, storage_type, key, _location, numel = pid
        dtype = storage_type.name.rsplit(".", 1)[-1] if isinstance(storage_type, _Stub) else ""
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"Checkpoint {self.name} declares a tensor of {numel!r} elements.")
        self.storages.append((str(key), dtype, numel))
        return _Stub("storage", (str(key), dtype, numel))


#: Globals a sam-cd checkpoint's pickle may name (what torch.save writes for tensors and dicts).
_ALLOWED_GLOBALS = frozenset({
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "collections.OrderedDict", "torch.serialization._get_layout", "torch.strided",
})
_DTYPE_BYTES = {"HalfStorage": 2, "BFloat16Storage": 2, "FloatStorage": 4, "DoubleStorage": 8,
                "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
                "ByteStorage": 1, "BoolStorage": 1, "UntypedStorage": 1}
MAX_META_CHARS = 1_000_000


def _inspect_archive(path: Path) -> None:
    """Refuse a file before ``torch.load`` touches it: not a torch zip archive, compressed or
    truncated members, globals that are not tensors/containers, or tensors that claim more bytes
    than the file holds (a crafted file could otherwise make torch allocate many GB)."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {i.filename: i for i in archive.infolist()}
            pickles = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                raise CheckpointError(f"{name} is not a sam-cd checkpoint (no single torch data.pkl).")
            prefix = pickles[0][: -len("data.pkl")]
            size = path.stat().st_size
            for info in infos.values():
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                    raise CheckpointError(f"{name} has a member that claims {info.file_size} bytes "
                                          "(compressed or larger than the file); refusing to load it.")
            inspector = _InspectingUnpickler(archive.read(pickles[0]), name)
            inspector.load()
    except (zipfile.BadZipFile, EOFError, OSError, pickle.UnpicklingError, ValueError,
            TypeError, AttributeError, IndexError, KeyError, RecursionError, MemoryError) as exc:
        raise CheckpointError(
            f"Cannot load checkpoint {name}: it is corrupt, truncated, or not a checkpoint saved "
            f"by sam-cd (refused for safety). Details: {type(exc).__name__}: {exc}") from exc
    for key, dtype, numel in inspector.storages:
        record = infos.get(f"{prefix}data/{key}")
        claimed = numel * _DTYPE_BYTES.get(dtype, 8)
        if record is None or record.file_size < claimed:
            raise CheckpointError(
                f"Checkpoint {name} declares a tensor of {claimed} bytes that the file does not "
                "hold (truncated or crafted); refusing to load it.")


def _check_meta(meta: Any, name: str) -> dict[str, Any]:
    """``meta`` if it describes a model sam-cd can build; CheckpointError naming the bad value."""
    from .encoders import ENCODER_NAMES
    from .registry import METHODS

    if not isinstance(meta, dict):
        raise CheckpointError(f"{name} has metadata of type {type(meta).__name__}, not an object; "
                              "it is not a valid sam-cd checkpoint.")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{name} metadata lacks {', '.join(missing)}.")
    method, encoder, size = meta["method"], meta["encoder"], meta["input_size"]
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise CheckpointError(f"{name} is for an unknown method {method!r}; this sam-cd knows "
                              f"{', '.join(METHODS)}. Update the plugin or pick another checkpoint.")
    if not isinstance(encoder, str) or encoder.lower() not in ENCODER_NAMES:
        raise CheckpointError(f"{name} uses an unknown encoder {encoder!r}; this sam-cd knows "
                              f"{', '.join(ENCODER_NAMES)}. Update the plugin or pick another checkpoint.")
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_INPUT <= size <= MAX_INPUT \
            or size % 32:
        raise CheckpointError(f"{name} declares an input size of {size!r} px; a sam-cd model "
                              f"takes a multiple of 32 from {MIN_INPUT} to {MAX_INPUT}. The file is damaged "
                              "or was edited; pick another checkpoint.")
    delta = meta.get("delta")
    if delta is not None and (isinstance(delta, bool) or not isinstance(delta, (int, float))
                              or not 0.0 <= delta <= 1.0):
        raise CheckpointError(f"{name} declares δ = {delta!r}; δ is a weight from 0 to 1. The file is "
                              "damaged or was edited; pick another checkpoint.")
    return meta


MIN_INPUT, MAX_INPUT = 32, 4096


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(state_dict as float32, meta)``; CheckpointError with a clear reason otherwise.

    The file is inspected before ``torch.load`` (:func:`_inspect_archive`), and loaded with
    ``weights_only=True``; the metadata is checked before any model is built from it."""
    state, meta = _load(Path(path), mmap=False)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, meta


def read_metadata(path: Path | str) -> dict[str, Any]:
    """Metadata of a checkpoint, with the same checks as :func:`load_checkpoint`; the weights are
    memory-mapped rather than read (use for tables of checkpoints)."""
    return _load(Path(path), mmap=True)[1]


def _load(path: Path, mmap: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}. Pick an existing .pt file.")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"Checkpoint {path.name} is larger than 4 GiB; refusing to load it.")
    _inspect_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Cannot load checkpoint {path.name}: it is corrupt, truncated, or holds objects other "
            f"than tensors and metadata (refused for safety). Details: {first}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path.name} is not a sam-cd checkpoint. Train one with "
            "`python -m sam_cd_plugin train` or pick a checkpoint made by sam-cd.")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path.name} has an unreadable format version {version!r}.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path.name} was written by a newer sam-cd; update the plugin.")
    text = payload.get("meta")
    if not isinstance(text, str) or len(text) > MAX_META_CHARS:
        raise CheckpointError(f"{path.name} has unreadable metadata.")
    try:
        meta = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path.name} has unreadable metadata.") from exc
    meta = _check_meta(meta, path.name)
    method = meta["method"].lower()
    if version < ARCHITECTURE_SINCE[method]:
        raise CheckpointError(
            f"{path.name} was made by an older sam-cd (checkpoint format {version}); the {method} "
            f"architecture has changed since (format {ARCHITECTURE_SINCE[method]}), so its weights "
            "cannot be converted. Retrain it with `python -m sam_cd_plugin train --method "
            f"{method}` (or the Train algorithm).")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name} holds no weights.")
    return state, meta


def upgrade_checkpoint(path: Path | str, out: Path | str) -> Path:
    """Rewrite the loadable checkpoint ``path`` in the current format at ``out`` (weights as
    stored); CheckpointError for a file whose architecture changed (retrain it instead)."""
    state, meta = _load(Path(path), mmap=False)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
               "meta": json.dumps(meta, sort_keys=True), "state_dict": dict(state)}
    return atomic_torch_save(payload, out)
