"""The small JSON records the runtime keeps: an install's marker and a registered interpreter.

- The **marker** (``<runtime>/sam-cd-runtime.json``) is written as the last step of a successful
  install: ``requirements_hash``, ``python`` (the venv's interpreter), ``torch_build``,
  ``packages`` (name → version) and ``installed_at``. No marker, or one with another hash,
  means the folder is not a usable runtime.
- The **registration** (``<root>/registered.json``): ``python`` and ``packages`` of an existing
  environment registered with ``runtime use``.

Both are written under a temporary name and renamed, so a reader never sees half a record.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .location import MARKER_NAME, REGISTERED_NAME

__all__ = ["read_record", "write_record", "marker_path", "registration_path"]


def marker_path(runtime: Path) -> Path:
    return Path(runtime) / MARKER_NAME


def registration_path(root: Path) -> Path:
    return Path(root) / REGISTERED_NAME


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
