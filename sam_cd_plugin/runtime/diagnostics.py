"""A copyable Markdown report of everything that decides whether the engine can run.

QGIS and Qt versions come from the caller (``host``), since this package cannot import qgis.
The report runs ``nvidia-smi`` and the engine's Python (a few seconds when torch is
imported), so front ends call it off the GUI thread.
"""
from __future__ import annotations

import json
import platform
# Runs nvidia-smi and the engine's interpreter with fixed arguments.
import subprocess  # nosec B404
import sys
from pathlib import Path

from .location import LOG_NAME
from .pip_runner import child_environment
from .requirements import ENGINE_REQUIREMENTS
from .status import runtime_status
from .torch_build import choose_torch_build, parse_nvidia_smi, query_nvidia_smi

__all__ = ["diagnostics_report", "LOG_TAIL_LINES"]

LOG_TAIL_LINES = 30

_ENGINE_PROBE = """
import importlib, json, sys
out = {"python": sys.version.split()[0]}
for name in ("torch", "torchvision", "ultralytics", "open_clip", "numpy", "osgeo.gdal"):
    try:
        out['gdal' if name == 'osgeo.gdal' else name] = str(importlib.import_module(name).__version__)
    except Exception as exc:
        out['gdal' if name == 'osgeo.gdal' else name] = f"not importable ({type(exc).__name__}: {exc})"
try:
    import torch
    out["torch CUDA"] = f"{torch.version.cuda or 'none'} (available: {torch.cuda.is_available()})"
except Exception:
    pass
print(json.dumps(out))
"""


def _engine_packages(python: Path) -> dict[str, str]:
    try:
        done = subprocess.run([str(python), "-c", _ENGINE_PROBE], capture_output=True, text=True,  # nosec B603
                              timeout=300, env=child_environment(), check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"(engine Python)": f"does not run: {exc}"}


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return "\n".join(text.splitlines()[-lines:])


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def diagnostics_report(host: dict[str, str] | None = None, requirements: Path = ENGINE_REQUIREMENTS) -> str:
    """The report (Markdown); ``host`` adds what only the caller knows, e.g. ``{"QGIS": ..., "Qt": ...}``."""
    from .. import __version__

    host = dict(host or {})
    smi = query_nvidia_smi()
    gpu = parse_nvidia_smi(smi)
    build = choose_torch_build(sys.platform, smi)
    status = runtime_status(requirements)
    rows = [("sam-cd", __version__),
            ("QGIS", host.pop("QGIS", "not given (report made outside QGIS)")),
            ("Qt", host.pop("Qt", "not given (report made outside QGIS)")),
            *host.items(),
            ("Python (this process)", f"{sys.version.split()[0]} ({sys.executable})"),
            ("OS", f"{platform.platform()} ({platform.machine()})"),
            ("GPU", f"{smi.strip().splitlines()[0]} (name, driver, memory)" if gpu and smi else
             "no NVIDIA GPU or driver (nvidia-smi missing or failing)"),
            ("torch build for this machine", f"{build.variant}: {build.reason}"),
            ("Runtime root", status.root),
            ("Engine", f"{status.state}: {status.summary}"),
            ("Engine Python", status.python or "none")]
    out = ["# sam-cd diagnostics", "", "| item | value |", "|---|---|"]
    out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
    packages = _engine_packages(status.python) if status.python else dict(status.packages)
    out += ["", "## Engine packages", ""]
    if packages:
        out += ["| package | version |", "|---|---|"] + [f"| {_cell(k)} | {_cell(v)} |" for k, v in packages.items()]
    else:
        out.append("No engine Python yet.")
    tail = _log_tail(status.root / LOG_NAME)
    out += ["", f"## Last install log ({status.root / LOG_NAME}, last {LOG_TAIL_LINES} lines)", ""]
    out += ["```text", tail, "```"] if tail is not None else ["No install has run yet."]
    return "\n".join(out) + "\n"
