"""Where the managed runtime lives: the root folder and the files in it.

The root is, in order: the environment variable ``SAM_CD_RUNTIME_DIR``; the folder given to
:func:`set_runtime_root` (the plugin passes ``<QGIS profile folder>/sam_cd/runtime`` at start);
else the same place inside the *default* QGIS profile of this user, so that the command line
and a QGIS running its default profile find the same runtime. It lies outside the plugin
folder, so updating or reinstalling the plugin does not wipe it.

Layout of the root::

    <root>/cp311-1a2b3c4d5e6f/     a runtime: venv of Python 3.11 for requirements hash 1a2b...
    <root>/install.log            the last install's log
    <root>/install.lock           held while an install runs
    <root>/registered.json        an existing interpreter registered with ``runtime use``
"""
from __future__ import annotations

import os
import sys
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

__all__ = ["ENV_RUNTIME_DIR", "set_runtime_root", "runtime_root", "default_root", "python_tag",
           "runtime_dir", "venv_python", "LOG_NAME", "LOCK_NAME", "REGISTERED_NAME", "MARKER_NAME"]

ENV_RUNTIME_DIR = "SAM_CD_RUNTIME_DIR"
LOG_NAME = "install.log"
LOCK_NAME = "install.lock"
REGISTERED_NAME = "registered.json"
#: Written inside a runtime folder as the last step of a successful install.
MARKER_NAME = "sam-cd-runtime.json"

_configured_root: Path | None = None


def set_runtime_root(path: str | os.PathLike | None) -> None:
    """Use ``path`` as the runtime root (``None``: back to the default); the env variable still wins."""
    global _configured_root
    _configured_root = Path(path) if path is not None else None


def default_root(platform: str = sys.platform, env: dict[str, str] | None = None,
                 home: PurePath | None = None) -> PurePath:
    """``<default QGIS profile>/sam_cd/runtime`` for ``platform`` (pure: unit-testable per OS)."""
    env = dict(os.environ) if env is None else env
    if platform.startswith("win"):
        home = PureWindowsPath(home) if home is not None else PureWindowsPath(Path.home())
        base = PureWindowsPath(env["APPDATA"]) if env.get("APPDATA") else home / "AppData" / "Roaming"
    else:
        home = PurePosixPath(home) if home is not None else PurePosixPath(Path.home())
        if platform == "darwin":
            base = home / "Library" / "Application Support"
        else:
            base = PurePosixPath(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else home / ".local" / "share"
    return base / "QGIS" / "QGIS3" / "profiles" / "default" / "sam_cd" / "runtime"


def runtime_root() -> Path:
    """The runtime root now in force (see the module docstring for the order)."""
    if os.environ.get(ENV_RUNTIME_DIR):
        return Path(os.environ[ENV_RUNTIME_DIR])
    if _configured_root is not None:
        return _configured_root
    return Path(default_root())


def python_tag(version: tuple[int, int] = sys.version_info[:2]) -> str:
    """``cp311`` for CPython 3.11: the runtime is tied to QGIS's Python minor version."""
    return f"cp{version[0]}{version[1]}"


def runtime_dir(root: Path, requirements_hash: str, version: tuple[int, int] = sys.version_info[:2]) -> Path:
    """The folder of the runtime for this Python and requirements hash."""
    return root / f"{python_tag(version)}-{requirements_hash}"


def venv_python(venv: PurePath, platform: str = sys.platform) -> PurePath:
    """The interpreter inside a venv folder."""
    if platform.startswith("win"):
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"
