"""A fresh venv with the wheel installed (and, optionally, this test venv's packages visible)."""
from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

from sam_cd_plugin.runtime.base_python import find_base_python
from sam_cd_plugin.runtime.location import venv_python
from sam_cd_plugin.runtime.pip_runner import child_environment


def venv_with(wheel: Path, venv: Path, see_test_packages: bool = False) -> Path:
    """``venv`` made from the base Python (system site-packages) with ``wheel`` installed.

    ``see_test_packages``: a ``.pth`` file adds this test venv's site-packages (torch, dask), but
    not sam_cd_plugin, which comes from the wheel only.
    """
    base = find_base_python()
    assert not isinstance(base, str), base
    subprocess.run([str(base.path), "-m", "venv", "--system-site-packages",
                    *(["--without-pip"] if base.base_pip else []), str(venv)], check=True)
    python = venv_python(venv)
    if see_test_packages:
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "samcd_test_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, env=child_environment())
    return venv
