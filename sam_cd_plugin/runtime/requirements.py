"""The engine's pinned requirements: which file, its hash, and the torch lines in it.

The hash covers the requirement lines only (comments and blank lines do not count), so the
runtime folder changes exactly when what would be installed changes.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["ENGINE_REQUIREMENTS", "TORCH_PACKAGES", "requirement_lines", "requirements_hash",
           "torch_lines"]

ENGINE_REQUIREMENTS = Path(__file__).with_name("requirements-engine.txt")
#: Installed from the torch build's own index (CPU or CUDA) before everything else.
TORCH_PACKAGES = ("torch", "torchvision")

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_lines(path: Path) -> list[str]:
    """Non-empty lines of a requirements file without comments, stripped."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


def requirements_hash(path: Path = ENGINE_REQUIREMENTS) -> str:
    """First 12 hex digits of the SHA-256 of the requirement lines."""
    text = "\n".join(requirement_lines(path)) + "\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _name(line: str) -> str | None:
    m = _NAME.match(line)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m and not line.startswith("-") else None


def torch_lines(path: Path) -> list[str]:
    """The lines pinning :data:`TORCH_PACKAGES` (installed first, from the torch build's index)."""
    return [line for line in requirement_lines(path) if _name(line) in TORCH_PACKAGES]
