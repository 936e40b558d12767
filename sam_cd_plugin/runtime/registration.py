"""An existing environment as the engine's Python instead of a managed one (``runtime use PATH``).

For conda users, servers and tests: the interpreter is checked (it must import torch,
ultralytics and GDAL's ``osgeo``, which the engine reads rasters with) and recorded in
``<root>/registered.json`` with its package versions. A registration wins over the managed
runtime; :func:`forget_python` removes it.
"""
from __future__ import annotations

import datetime
import json
# Runs the interpreter the user named, with fixed arguments.
import subprocess  # nosec B404
from pathlib import Path

from .errors import RuntimeInstallError, advice_for, classify_os_error
from .location import runtime_root
from .pip_runner import child_environment
from .records import registration_path, write_record
from .status import RuntimeStatus, runtime_status

__all__ = ["REQUIRED_MODULES", "register_python", "forget_python", "interpreter_packages"]

REQUIRED_MODULES = ("torch", "ultralytics", "osgeo.gdal")

_CHECK = """
import importlib, json, sys
found, missing = {"python": sys.version.split()[0]}, {}
for name in json.loads(sys.argv[1]):
    try:
        module = importlib.import_module(name)
        found['gdal' if name == 'osgeo.gdal' else name] = str(getattr(module, '__version__', '?'))
    except Exception as exc:
        missing[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"found": found, "missing": missing}))
"""


def interpreter_packages(python: Path, modules: tuple[str, ...] = REQUIRED_MODULES) -> tuple[dict, dict]:
    """(versions found, import errors) of ``modules`` in ``python``; raises RuntimeInstallError if it does not run."""
    try:
        done = subprocess.run([str(python), "-c", _CHECK, json.dumps(list(modules))],  # nosec B603
                              capture_output=True, text=True, timeout=300, env=child_environment(), check=True)
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise RuntimeInstallError("failed", f"{python} does not run as a Python interpreter ({exc}).",
                                  "Give the path of the environment's python executable "
                                  "(e.g. /opt/conda/envs/x/bin/python or C:\\...\\python.exe).") from exc
    return answer["found"], answer["missing"]


def register_python(python: str | Path) -> RuntimeStatus:
    """Check ``python`` and register it as the engine's interpreter; the new status."""
    path = Path(python).expanduser()
    path = path.absolute() if path.exists() else path
    found, missing = interpreter_packages(path)
    if missing:
        names = ", ".join(f"{name} ({why})" for name, why in missing.items())
        raise RuntimeInstallError("failed", f"{path} cannot import {names}.",
                                  "Install torch, ultralytics and GDAL's Python bindings into that environment "
                                  "or choose another one; or let sam-cd install its own engine "
                                  "('python -m sam_cd_plugin runtime install').")
    root = runtime_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        write_record(registration_path(root), {
            "python": str(path), "packages": found,
            "registered_at": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    except OSError as exc:
        kind = classify_os_error(exc)
        raise RuntimeInstallError(kind, f"Cannot record the registration in {root} ({exc}).",
                                  advice_for(kind, root)) from exc
    return runtime_status()


def forget_python() -> RuntimeStatus:
    """Remove the registration (the managed runtime, if any, is used again); the new status."""
    registration_path(runtime_root()).unlink(missing_ok=True)
    return runtime_status()
