"""The engine's managed runtime: a venv with torch outside the plugin folder, made on request.

Standard library only (no torch, no qgis): QGIS imports this at plugin start and dock open.
The modules: :mod:`.location` (where), :mod:`.requirements` (what, and its hash),
:mod:`.base_python` (from which Python), :mod:`.torch_build` (which torch), :mod:`.constraints`
(what must not change), :mod:`.install` (how), :mod:`.status` (is it there),
:mod:`.registration` (an existing environment instead), :mod:`.diagnostics` (the report).
"""
from .diagnostics import diagnostics_report
from .errors import RuntimeInstallError
from .install import InstallOptions, install_runtime
from .location import runtime_root, set_runtime_root
from .registration import register_python
from .status import RuntimeStatus, engine_python, runtime_status

__all__ = ["engine_python", "runtime_status", "install_runtime", "diagnostics_report", "RuntimeStatus",
           "RuntimeInstallError", "InstallOptions", "set_runtime_root", "runtime_root", "register_python"]
