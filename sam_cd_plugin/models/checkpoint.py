"""The sam-cd checkpoint format: one ``.pt`` file with fp16 weights and JSON metadata.

Layout (all plain types, so it loads with ``torch.load(weights_only=True)``)::

    {"format": "sam-cd-checkpoint", "format_version": 1,
     "meta": "<JSON object>", "state_dict": {name: tensor}}

``meta`` holds at least ``method``, ``encoder``, ``input_size`` and ``delta``; the trainer adds
normalisation, prompts, training data and metrics. A checkpoint is untrusted input: anything
else than tensors and plain containers is refused before it is unpickled.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import CheckpointError

FORMAT = "sam-cd-checkpoint"
FORMAT_VERSION = 1
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


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(state_dict as float32, meta)``; CheckpointError with a clear reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}. Pick an existing .pt file.")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"Checkpoint {path.name} is larger than 4 GiB; refusing to load it.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Cannot load checkpoint {path.name}: it is corrupt, truncated, or holds objects other "
            f"than tensors and metadata (refused for safety). Details: {first}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path.name} is not a sam-cd checkpoint. Train one with "
            "`python -m sam_cd_plugin train` or pick a checkpoint made by sam-cd.")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path.name} was written by a newer sam-cd; update the plugin.")
    try:
        meta = json.loads(payload["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name} has unreadable metadata.") from exc
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{path.name} metadata lacks {', '.join(missing)}.")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name} holds no weights.")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, meta


def read_metadata(path: Path | str) -> dict[str, Any]:
    """Metadata of a checkpoint (loads the file; use for tables of checkpoints)."""
    return load_checkpoint(path)[1]
