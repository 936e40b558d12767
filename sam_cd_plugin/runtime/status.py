"""Is there an engine Python, and which: :func:`engine_python` and :func:`runtime_status`.

Both are cheap: they read small JSON records and test a few paths, never start a process, so
the dock may call them on the GUI thread when it opens.

Which interpreter runs the engine, in order: ``SAM_CD_ENGINE_PYTHON``; the interpreter
registered with ``runtime use``; the managed runtime's venv when its marker carries the current
requirements hash.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .location import LOCK_NAME, LOG_NAME, python_tag, runtime_dir, runtime_root
from .lock import install_running
from .records import marker_path, read_record, registration_path
from .requirements import ENGINE_REQUIREMENTS, requirements_hash

__all__ = ["ENV_ENGINE_PYTHON", "STATES", "RuntimeStatus", "runtime_status", "engine_python"]

ENV_ENGINE_PYTHON = "SAM_CD_ENGINE_PYTHON"
STATES = ("ready", "missing", "outdated", "broken", "registered")
INSTALL_HINT = ("Install engine in the dock (about 1 GB for the CPU build, 3 GB with CUDA) or run "
                "'python -m sam_cd_plugin runtime install'")


@dataclass(frozen=True)
class RuntimeStatus:
    """Where the engine stands; ``summary`` is one user-facing sentence."""

    ready: bool
    state: str
    python: Path | None
    root: Path
    summary: str
    packages: dict[str, str] = field(default_factory=dict)


def _versions(packages: dict[str, str]) -> str:
    shown = [f"{name} {packages[name]}" for name in ("torch", "ultralytics") if name in packages]
    return ", ".join(shown)


def _interpreter_status(python: Path, root: Path, origin: str, packages: dict[str, str]) -> RuntimeStatus:
    if not python.is_file():
        return RuntimeStatus(False, "broken", None, root,
                             f"The engine Python {python} ({origin}) does not exist: register another "
                             f"with 'runtime use PATH', or {INSTALL_HINT}.", packages)
    versions = _versions(packages)
    return RuntimeStatus(True, "registered", python, root,
                         f"Engine: {python} ({origin}{', ' + versions if versions else ''}).", packages)


def runtime_status(requirements: Path = ENGINE_REQUIREMENTS) -> RuntimeStatus:
    """The engine's state for the current runtime root and pins (no subprocess)."""
    root = runtime_root()
    env = os.environ.get(ENV_ENGINE_PYTHON)
    if env:
        return _interpreter_status(Path(env), root, f"from {ENV_ENGINE_PYTHON}", {})
    registered = read_record(registration_path(root))
    if registered and registered.get("python"):
        return _interpreter_status(Path(registered["python"]), root, "registered with 'runtime use'",
                                   dict(registered.get("packages") or {}))
    if install_running(root / LOCK_NAME):
        return RuntimeStatus(False, "missing", None, root,
                             f"The detection engine is being installed (log: {root / LOG_NAME}).")
    wanted = requirements_hash(requirements)
    here = runtime_dir(root, wanted)
    marker = read_record(marker_path(here))
    if marker and marker.get("requirements_hash") == wanted:
        python = Path(marker.get("python", ""))
        packages = dict(marker.get("packages") or {})
        if python.is_file():
            return RuntimeStatus(True, "ready", python, root,
                                 f"Engine ready: {_versions(packages) or 'installed'} in {here}.", packages)
        return RuntimeStatus(False, "broken", None, root,
                             f"The engine in {here} lost its Python ({python}): {INSTALL_HINT} again.", packages)
    if here.exists():
        return RuntimeStatus(False, "broken", None, root,
                             f"The last engine install in {here} did not finish: {INSTALL_HINT} again "
                             f"(log: {root / LOG_NAME}).")
    older = sorted(p for p in root.glob(f"{python_tag()}-*") if (marker_path(p)).is_file()) if root.is_dir() else []
    if older:
        return RuntimeStatus(False, "outdated", None, root,
                             f"The installed engine ({older[-1].name}) was made for other package pins: "
                             f"{INSTALL_HINT} to update it.")
    return RuntimeStatus(False, "missing", None, root, f"The detection engine is not installed: {INSTALL_HINT}.")


def engine_python(requirements: Path = ENGINE_REQUIREMENTS) -> Path | None:
    """The Python that runs the engine worker, or None when there is none yet (see module docstring)."""
    env = os.environ.get(ENV_ENGINE_PYTHON)
    if env:
        return Path(env)
    status = runtime_status(requirements)
    return status.python if status.ready else None
