"""Which Python the runtime's venv is made from: one of QGIS's own minor version.

QGIS embeds Python, so inside QGIS ``sys.executable`` is often the QGIS program itself
(``/usr/bin/qgis``, ``qgis-bin.exe``, ``QGIS.app/Contents/MacOS/QGIS``). The candidates, in order:

- Linux and other POSIX: ``sys._base_executable`` when it is a python; ``<sys.base_prefix>/bin/
  python3.X``, ``.../python3``; then ``/usr/bin/python3.X`` and ``/usr/bin/python3`` (the system
  Python that distribution packages of QGIS run on).
- Windows (OSGeo4W and the standalone installer): ``python3.exe`` / ``python.exe`` beside QGIS's
  executable (``<OSGeo4W>/bin``), then ``<sys.base_prefix>/python.exe`` (``<OSGeo4W>/apps/Python3X``).
- macOS (the app bundle): ``<bundle>/Contents/MacOS/bin/python3.X`` / ``python3`` beside the QGIS
  executable, then ``<sys.base_prefix>/bin/python3.X`` (the bundle's Python.framework).

A candidate counts only if it exists and reports the same ``major.minor`` as the running
Python (:func:`check_base_python`, which also needs ``venv`` and a pip: the base's own or ``ensurepip``'s).
"""
from __future__ import annotations

import json
# Runs the Python interpreter found here, with fixed arguments.
import subprocess  # nosec B404
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from .pip_runner import child_environment

__all__ = ["SUPPORTED_VERSIONS", "BasePython", "python_candidates", "find_base_python",
           "check_base_python", "version_problem"]

#: Python minor versions the pinned torch publishes wheels for.
SUPPORTED_VERSIONS = ((3, 10), (3, 11), (3, 12), (3, 13), (3, 14))


@dataclass(frozen=True)
class BasePython:
    """An interpreter fit to make the runtime's venv from."""

    path: Path
    version: tuple[int, int, int]
    #: Whether the venv can use the base's own pip (else the venv gets one from ensurepip).
    base_pip: bool = False


def _unique(paths: list[PurePath]) -> list[PurePath]:
    seen: list[PurePath] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def python_candidates(platform: str, executable: str, base_prefix: str, version: tuple[int, int],
                      base_executable: str | None = None) -> list[PurePath]:
    """Candidate interpreters, best first, for a QGIS whose Python reports these values (pure)."""
    x_y = f"{version[0]}.{version[1]}"
    if platform.startswith("win"):
        exe, prefix = PureWindowsPath(executable), PureWindowsPath(base_prefix)
        found: list[PurePath] = []
        if base_executable and PureWindowsPath(base_executable).name.lower().startswith("python"):
            found.append(PureWindowsPath(base_executable))
        found += [exe.parent / "python3.exe", exe.parent / "python.exe",
                  prefix / "python.exe", prefix / "python3.exe"]
        return _unique(found)
    exe, prefix = PurePosixPath(executable), PurePosixPath(base_prefix)
    found = []
    if base_executable and PurePosixPath(base_executable).name.startswith("python"):
        found.append(PurePosixPath(base_executable))
    if exe.name.startswith("python"):
        found.append(exe)
    if platform == "darwin":
        found += [exe.parent / "bin" / f"python{x_y}", exe.parent / "bin" / "python3"]
    found += [prefix / "bin" / f"python{x_y}", prefix / "bin" / "python3"]
    if platform != "darwin":
        found += [PurePosixPath("/usr/bin") / f"python{x_y}", PurePosixPath("/usr/bin/python3")]
    return _unique(found)


def version_problem(found: tuple[int, ...], wanted: tuple[int, int]) -> str | None:
    """Why an interpreter of version ``found`` cannot serve a QGIS on ``wanted``; None if it can."""
    if tuple(found[:2]) != tuple(wanted):
        return (f"it is Python {'.'.join(map(str, found[:3]))}, but QGIS runs Python "
                f"{wanted[0]}.{wanted[1]}; the runtime must match QGIS's minor version")
    if tuple(wanted) not in SUPPORTED_VERSIONS:
        names = ", ".join(f"{a}.{b}" for a, b in SUPPORTED_VERSIONS)
        return f"Python {wanted[0]}.{wanted[1]} has no torch wheels for the pinned version (supported: {names})"
    return None


_PROBE = """
import json, sys, importlib.util as u, importlib.metadata as md
try:
    pip = md.version("pip")
except md.PackageNotFoundError:
    pip = None
print(json.dumps({"version": list(sys.version_info[:3]), "venv": u.find_spec("venv") is not None,
                  "ensurepip": u.find_spec("ensurepip") is not None, "pip": pip}))
"""
#: A base pip at least this new is used by the venv as it is (no ensurepip: faster, and works on
#: Debian/Ubuntu without python3-venv).
MIN_BASE_PIP = (22, 2)


def _version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for part in (text or "").split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def check_base_python(path: Path, wanted: tuple[int, int] = sys.version_info[:2]) -> BasePython | str:
    """``path`` as a :class:`BasePython`, or the sentence saying why it cannot be used."""
    if not Path(path).is_file():
        return f"{path} does not exist"
    try:
        out = subprocess.run([str(path), "-I", "-c", _PROBE], capture_output=True, text=True,  # nosec B603
                             timeout=60, check=True, env=child_environment()).stdout
        probe = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return f"{path} does not run as a Python interpreter ({exc})"
    except IndexError:
        return f"{path} does not run as a Python interpreter (it answered nothing)"
    version = tuple(probe["version"])
    problem = version_problem(version, wanted)
    if problem:
        return f"{path}: {problem}"
    base_pip = _version_tuple(probe["pip"]) >= MIN_BASE_PIP
    if not probe["venv"] or not (base_pip or probe["ensurepip"]):
        return (f"{path} lacks the 'venv' module or a pip (its own pip ≥ {MIN_BASE_PIP[0]}.{MIN_BASE_PIP[1]}, "
                "or 'ensurepip') to make a virtual environment with (Debian/Ubuntu: sudo apt install "
                "python3-venv python3-pip)")
    return BasePython(Path(path), version, base_pip)  # type: ignore[arg-type]


def find_base_python() -> BasePython | str:
    """The first fit candidate for the running Python, or why none fits (every candidate's reason)."""
    reasons = []
    for candidate in python_candidates(sys.platform, sys.executable, sys.base_prefix, sys.version_info[:2],
                                       getattr(sys, "_base_executable", None)):
        if not Path(candidate).is_file():
            continue
        result = check_base_python(Path(candidate))
        if isinstance(result, BasePython):
            return result
        reasons.append(result)
    if not reasons:
        return (f"no Python {sys.version_info[0]}.{sys.version_info[1]} interpreter was found beside QGIS "
                f"(looked beside {sys.executable} and in {sys.base_prefix})")
    return "; ".join(reasons)
