"""``pip install`` of the built wheel, in a fresh venv outside the repo: ``import sam_cd_plugin``
with its run-time resources, and the ``sam-cd`` command."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from samcd_package_helpers import venv_with
from sam_cd_plugin.runtime.location import venv_python
from sam_cd_plugin.runtime.pip_runner import child_environment


def test_wheel_gives_the_package_its_resources_and_the_command(wheel, tmp_path):
    venv = venv_with(wheel, tmp_path / "venv")
    python = venv_python(venv)
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
