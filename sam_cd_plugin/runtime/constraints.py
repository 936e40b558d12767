"""What the base Python already ships, pinned, so the install cannot replace it.

The venv sees the base's site-packages (``--system-site-packages``), so the engine imports
QGIS's own GDAL bindings, which are compiled against the base's numpy. Letting pip install
another numpy (or another build of a package compiled against numpy) into the venv would
break those imports inside the engine. :func:`probe_venv` asks the new venv which of
:data:`PROTECTED` it sees and whether ``osgeo`` imports; :func:`constraints_text` turns the
answer into a pip constraints file.
"""
from __future__ import annotations

import json
import re
# Runs the venv's own interpreter with fixed arguments.
import subprocess  # nosec B404
from dataclasses import dataclass
from pathlib import Path

from .pip_runner import child_environment

__all__ = ["PROTECTED", "GDAL_FALLBACK", "VenvProbe", "probe_venv", "constraints_text"]

#: numpy and the base's packages compiled against it.
PROTECTED = ("numpy", "GDAL", "scipy", "pandas", "matplotlib", "shapely", "h5py", "netCDF4")
#: Provides ``osgeo`` as a binary wheel when the base has no GDAL bindings.
GDAL_FALLBACK = "gdal-wheel"

_PUBLIC_VERSION = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")

_PROBE = f"""
import json, importlib.metadata as md, importlib.util as u
found = {{}}
for name in {PROTECTED!r}:
    try:
        found[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
try:
    from osgeo import gdal
    osgeo = gdal.__version__
except Exception:
    osgeo = None
print(json.dumps({{"distributions": found, "osgeo": osgeo}}))
"""


@dataclass(frozen=True)
class VenvProbe:
    """What a fresh venv sees of its base: protected distributions (name → version) and GDAL."""

    distributions: dict[str, str]
    osgeo: str | None


def probe_venv(python: Path) -> VenvProbe:
    """Ask the venv's ``python`` (raises ``subprocess.CalledProcessError`` / ``OSError`` on failure)."""
    out = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True,  # nosec B603
                         timeout=120, check=True, env=child_environment()).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return VenvProbe(dict(data["distributions"]), data["osgeo"])


def constraints_text(probe: VenvProbe) -> str:
    """A pip constraints file pinning each protected distribution to the base's version.

    Versions pip could not parse (some distributions patch them) are left out rather than
    making every install fail.
    """
    lines = ["# What the base Python ships; the engine install must not replace it."]
    for name, version in sorted(probe.distributions.items()):
        if _PUBLIC_VERSION.fullmatch(version):
            lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"
