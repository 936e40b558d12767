"""Cheap check for the heavy optional dependencies (torch, ultralytics).

Nothing here imports torch: the check only asks the import system whether the packages
can be found, so it is safe to call while QGIS starts or a dialog opens. A package that is
found but fails to import (e.g. a broken CUDA DLL) is reported later, when the engine is
imported, as a ``DependencyError``-style message from the caller.
"""

from __future__ import annotations

import importlib.util

__all__ = ["REQUIRED_PACKAGES", "install_hint", "missing_dependencies"]

#: Import name -> pip distribution name.
REQUIRED_PACKAGES: dict[str, str] = {"torch": "torch", "ultralytics": "ultralytics"}


def missing_dependencies() -> list[str]:
    """Import names of the required packages that cannot be found, in a stable order."""
    missing = []
    for module in REQUIRED_PACKAGES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def install_hint(missing: list[str]) -> str:
    """User-facing message naming the missing packages and how to install them."""
    names = " and ".join(missing) if missing else "torch and ultralytics"
    dists = " ".join(REQUIRED_PACKAGES.get(m, m) for m in (missing or REQUIRED_PACKAGES))
    return (
        f"SAM change detection needs the Python package(s) {names}, which the Python used by QGIS "
        f"cannot import. Install them into that Python (Windows: OSGeo4W Shell; Linux/macOS: the "
        f"python3 QGIS runs on) with:  python -m pip install {dists}  (for an NVIDIA GPU pick the CUDA "
        f"build of torch from https://pytorch.org), then restart QGIS. See the README, section "
        f"'Installing the dependencies'."
    )
