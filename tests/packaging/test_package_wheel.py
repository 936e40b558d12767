"""``pip install`` of the built wheel, in a fresh venv outside the repo: ``import sam_cd_plugin``
with its run-time resources, and the ``sam-cd`` command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sam_cd_plugin.runtime.base_python import find_base_python
from sam_cd_plugin.runtime.errors import classify_output
from sam_cd_plugin.runtime.location import venv_python
from sam_cd_plugin.runtime.pip_runner import child_environment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(REPO)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_environment())
    if done.returncode != 0 and classify_output(done.stdout) in ("network", "proxy", "ssl"):
        pytest.skip(f"the build backend cannot be fetched from pip's index: {done.stdout.splitlines()[-1]}")
    assert done.returncode == 0, done.stdout[-3000:]
    return next(dist.glob("sam_cd-*.whl"))


def test_wheel_gives_the_package_its_resources_and_the_command(wheel, tmp_path):
    base = find_base_python()
    assert not isinstance(base, str), base
    venv = tmp_path / "venv"
    subprocess.run([str(base.path), "-m", "venv", "--system-site-packages",
                    *(["--without-pip"] if base.base_pip else []), str(venv)], check=True)
    python = venv_python(venv)
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, env=child_environment())
    env = child_environment({"SAM_CD_RUNTIME_DIR": str(tmp_path / "runtime")})
    env.pop("SAM_CD_ENGINE_PYTHON", None)
    where = subprocess.run(
        [str(python), "-c", "import json, sam_cd_plugin.paths as p, sam_cd_plugin.runtime.requirements as r\n"
         "print(json.dumps([str(p.resources_dir()), p.default_checkpoint().is_file(),"
         " p.resource_path('styles', 'change_mask.qml').is_file(), r.ENGINE_REQUIREMENTS.is_file()]))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    resources, *present = json.loads(where)
    assert Path(resources).is_relative_to(venv) and all(present)

    command = venv / ("Scripts/sam-cd.exe" if os.name == "nt" else "bin/sam-cd")
    help_text = subprocess.run([str(command), "--help"], cwd=tmp_path, env=env, capture_output=True,
                               text=True, check=True).stdout
    assert "detect" in help_text and "runtime" in help_text
    status = subprocess.run([str(command), "runtime", "status", "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert status.returncode == 1 and json.loads(status.stdout)["state"] == "missing"
