"""Make the managed runtime: :func:`install_runtime` with :class:`InstallOptions`.

Steps (each line of every command goes to ``log`` and to ``<root>/install.log``):

1. take ``<root>/install.lock`` (a second install is refused while one runs);
2. find the base Python (QGIS's own minor version, :mod:`.base_python`) and the torch build
   (:mod:`.torch_build`);
3. ``python -m venv --system-site-packages <root>/<tag>-<hash>``;
4. pin what the base ships (:mod:`.constraints`); add ``gdal-wheel`` when ``osgeo`` is missing;
5. ``pip install`` torch and torchvision from the build's index when it is not pip's own,
   then the whole requirements file;
6. import the packages in the venv, record their versions in the marker (written last), and
   remove runtimes of older pins of the same Python.

A failure or a cancel removes the unfinished runtime folder and raises
:class:`~.errors.RuntimeInstallError` with its kind and advice; the log stays.
"""
from __future__ import annotations

import datetime
import json
import shutil
# Runs the new venv's interpreter with fixed arguments.
import subprocess  # nosec B404
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base_python import BasePython, check_base_python, find_base_python
from .constraints import GDAL_FALLBACK, constraints_text, probe_venv
from .errors import RuntimeInstallError, advice_for, classify_os_error
from .location import LOCK_NAME, LOG_NAME, python_tag, runtime_dir, runtime_root, venv_python
from .lock import InstallLock, LockBusy
from .pip_runner import child_environment, run_streamed
from .records import marker_path, read_record, write_record
from .requirements import ENGINE_REQUIREMENTS, requirement_lines, requirements_hash, torch_lines
from .status import RuntimeStatus, runtime_status
from .torch_build import TorchBuild, build_for_variant, choose_torch_build, query_nvidia_smi, torch_index

__all__ = ["InstallOptions", "install_runtime", "pip_install_command"]

CONSTRAINTS_NAME = "constraints.txt"


@dataclass(frozen=True)
class InstallOptions:
    """What to install: ``python`` None = find QGIS's; ``torch_build`` None = choose from ``nvidia-smi``.

    ``verify_imports``: modules the finished venv must import; ``pip_args``: extra arguments
    for every ``pip install`` (e.g. ``("--proxy", "http://user:password@host:3128")`` from
    QGIS's proxy settings); ``force``: reinstall even when the runtime for these pins is ready.
    """

    requirements: Path = ENGINE_REQUIREMENTS
    python: Path | None = None
    torch_build: str | None = None
    verify_imports: tuple[str, ...] = ("torch", "torchvision", "ultralytics", "open_clip", "numpy", "osgeo.gdal")
    pip_args: tuple[str, ...] = ()
    force: bool = False


class _Progress:
    """Maps pip's lines onto a share of the whole install (pip tells no totals up front):
    resolving and downloading fill half of a pip stage, unpacking the rest."""

    def __init__(self, report: Callable[[float], None]):
        self.report, self.lo, self.hi, self.seen, self.value = report, 0.0, 0.0, 0, 0.0

    def set(self, value: float) -> None:
        self.value = max(self.value, min(1.0, value))
        self.report(self.value)

    def stage(self, lo: float, hi: float) -> None:
        self.lo, self.hi, self.seen = lo, hi, 0
        self.set(lo)

    def line(self, text: str) -> None:
        if text.startswith(("Collecting", "Downloading", "Processing", "  Downloading", "Requirement already")):
            self.seen += 1
            self.set(self.lo + 0.5 * (self.hi - self.lo) * (1 - 0.9 ** self.seen))
        elif text.startswith("Installing collected packages"):  # unpacking: silent, and long for torch
            self.set(self.lo + 0.55 * (self.hi - self.lo))


_VERIFY = """
import importlib, importlib.metadata as md, json, sys
modules, dists = json.loads(sys.argv[1]), json.loads(sys.argv[2])
found = {}
for name in modules:
    module = importlib.import_module(name)
    found[name.split('.')[0] if name != 'osgeo.gdal' else 'gdal'] = str(getattr(module, '__version__', '?'))
for name in dists:
    if name.replace('-', '_').lower() in found:
        continue
    try:
        found.setdefault(name, md.version(name))
    except md.PackageNotFoundError:
        pass
print(json.dumps(found))
"""


def _distribution_names(requirements: Path) -> list[str]:
    names = []
    for line in requirement_lines(requirements):
        if not line.startswith("-"):
            name = line.split(";")[0]
            for sep in "=<>!~[ @":
                name = name.split(sep)[0]
            names.append(name.strip())
    return [n for n in names if n] + ["numpy"]


def _choose_build(options: InstallOptions) -> TorchBuild:
    if options.torch_build:
        try:
            return build_for_variant(sys.platform, options.torch_build)
        except ValueError as exc:
            raise RuntimeInstallError("failed", f"Cannot install: {exc}.") from exc
    return choose_torch_build(sys.platform, query_nvidia_smi())


def _base_python(options: InstallOptions) -> BasePython:
    found = check_base_python(options.python) if options.python else find_base_python()
    if isinstance(found, str):
        raise RuntimeInstallError("unsupported_python", f"No Python fit for the engine: {found}.")
    return found


def _installed(target: Path, requirements: Path) -> bool:
    """Whether ``target`` holds a finished runtime for ``requirements``."""
    marker = read_record(marker_path(target))
    return bool(marker) and marker.get("requirements_hash") == requirements_hash(requirements) \
        and Path(str(marker.get("python", ""))).is_file()


def _remove_older(root: Path, keep: Path) -> list[Path]:
    removed = []
    for other in root.glob(f"{python_tag()}-*"):
        if other != keep and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
            removed.append(other)
    return removed


def _install(options: InstallOptions, root: Path, target: Path, log: Callable[[str], None],
             progress: _Progress, is_cancelled: Callable[[], bool]) -> None:
    base = _base_python(options)
    log(f"Base Python: {base.path} ({'.'.join(map(str, base.version))})")
    progress.set(0.02)
    build = _choose_build(options)
    index = torch_index(build)
    log(f"torch build: {build.variant} from {index or 'pip’s configured index'} ({build.reason})")
    progress.stage(0.05, 0.12)
    if target.exists():
        log(f"Removing what an earlier install left in {target}")
        shutil.rmtree(target)
    env = child_environment()
    run_streamed([str(base.path), "-m", "venv", "--system-site-packages",
                  *(["--without-pip"] if base.base_pip else []), str(target)], "creating the venv",
                 log, is_cancelled, env)
    python = Path(venv_python(target))
    progress.stage(0.12, 0.14)
    try:
        probe = probe_venv(python)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise RuntimeInstallError("failed", f"The new venv's Python {python} does not run ({exc}).") from exc
    constraints = target / CONSTRAINTS_NAME
    constraints.write_text(constraints_text(probe), encoding="utf-8")
    log(f"Kept from the base Python: {', '.join(f'{k} {v}' for k, v in sorted(probe.distributions.items())) or 'nothing'}"
        f"; GDAL bindings: {probe.osgeo or f'missing, installing {GDAL_FALLBACK}'}")
    pip = pip_install_command(python, constraints, options.pip_args)
    torch_pins = torch_lines(options.requirements)
    if torch_pins and index:
        progress.stage(0.14, 0.6)
        run_streamed([*pip, "--index-url", index, *torch_pins], f"installing {', '.join(torch_pins)}",
                     _tee(log, progress), is_cancelled, env)
    progress.stage(0.6 if torch_pins and index else 0.14, 0.95)
    extra = [] if probe.osgeo else [GDAL_FALLBACK]
    run_streamed([*pip, "-r", str(options.requirements), *extra], "installing the engine packages",
                 _tee(log, progress), is_cancelled, env)
    progress.stage(0.95, 0.99)
    packages = _verify(python, options, env)
    log("Installed: " + ", ".join(f"{k} {v}" for k, v in sorted(packages.items())))
    write_record(marker_path(target), {
        "requirements_hash": requirements_hash(options.requirements), "python": str(python),
        "base_python": str(base.path), "torch_build": build.variant, "torch_index": index,
        "packages": packages, "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    for old in _remove_older(root, target):
        log(f"Removed the runtime of older pins {old}")


def pip_install_command(python: Path, constraints: Path, pip_args: tuple[str, ...] = ()) -> list[str]:
    """``pip install`` in the venv of ``python``, held to ``constraints``, without prompts or bars."""
    return [str(python), "-m", "pip", "install", "--progress-bar", "off", "--no-input",
            "--no-warn-script-location", "-c", str(constraints), *pip_args]


def _tee(log: Callable[[str], None], progress: _Progress) -> Callable[[str], None]:
    def both(line: str) -> None:
        log(line)
        progress.line(line)
    return both


def _verify(python: Path, options: InstallOptions, env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run([str(python), "-c", _VERIFY, json.dumps(list(options.verify_imports)),  # nosec B603
                           json.dumps(_distribution_names(options.requirements))],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeInstallError("failed", f"The installed engine does not import ({last}).")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _install_logged(options: InstallOptions, root: Path, target: Path, log: Callable[[str], None],
                    progress: Callable[[float], None], is_cancelled: Callable[[], bool]) -> None:
    """:func:`_install` with every line also written to ``<root>/install.log``."""
    log_path = root / LOG_NAME
    with open(log_path, "w", encoding="utf-8") as log_file:
        def both(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()
            log(line)

        both(f"sam-cd engine install into {target}, "
             f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
        try:
            _install(options, root, target, both, _Progress(progress), is_cancelled)
        except RuntimeInstallError as exc:
            both(f"error ({exc.kind}): {exc.message}")
            shutil.rmtree(target, ignore_errors=True)
            raise RuntimeInstallError(exc.kind, exc.message, advice_for(exc.kind, root, log_path),
                                      log_path) from exc
        both("done")


def install_runtime(options: InstallOptions, log: Callable[[str], None], progress: Callable[[float], None],
                    is_cancelled: Callable[[], bool]) -> RuntimeStatus:
    """Install the runtime for ``options`` (see the module docstring); the resulting status."""
    root = runtime_root()
    log_path = root / LOG_NAME
    target = runtime_dir(root, requirements_hash(options.requirements))
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = InstallLock(root / LOCK_NAME).acquire()
    except LockBusy as exc:
        raise RuntimeInstallError("busy", f"Another engine install is running (process {exc.holder or '?'}).") from exc
    except OSError as exc:
        kind = classify_os_error(exc)
        raise RuntimeInstallError(kind, f"Cannot prepare the runtime folder {root} ({exc}).",
                                  advice_for(kind, root, log_path)) from exc
    try:
        if _installed(target, options.requirements) and not options.force:
            log(f"The engine for these pins is already installed in {target}: nothing to do.")
        else:
            _install_logged(options, root, target, log, progress, is_cancelled)
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        kind = classify_os_error(exc)
        raise RuntimeInstallError(kind, f"The engine install into {target} failed ({exc}).",
                                  advice_for(kind, root, log_path), log_path) from exc
    finally:
        lock.release()
    progress(1.0)
    return runtime_status(options.requirements)
