"""``pip install --dry-run --report`` of the real pinned set, in a venv made as the install makes
it, held to the base's constraints: the pins resolve, and nothing the base ships is replaced.

The index is pip's configured one (PyPI's torch: the CPU build on Windows, the CUDA 13.0 build on
Linux) unless ``SAM_CD_TORCH_INDEX_URL`` names a mirror of the chosen build's index; tests
contact no other address, so PyTorch's own CPU index is not tried here.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from sam_cd_plugin.runtime.base_python import find_base_python
from sam_cd_plugin.runtime.constraints import constraints_text, probe_venv
from sam_cd_plugin.runtime.errors import classify_output
from sam_cd_plugin.runtime.install import pip_install_command
from sam_cd_plugin.runtime.location import venv_python
from sam_cd_plugin.runtime.pip_runner import child_environment
from sam_cd_plugin.runtime.requirements import ENGINE_REQUIREMENTS, requirement_lines, torch_lines
from sam_cd_plugin.runtime.torch_build import ENV_TORCH_INDEX


def test_pinned_set_resolves_without_replacing_the_base(tmp_path):
    base = find_base_python()
    assert not isinstance(base, str), base
    venv = tmp_path / "venv"
    subprocess.run([str(base.path), "-m", "venv", "--system-site-packages",
                    *(["--without-pip"] if base.base_pip else []), str(venv)], check=True)
    python = venv_python(venv)
    probe = probe_venv(python)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(constraints_text(probe))
    report = tmp_path / "report.json"
    index = os.environ.get(ENV_TORCH_INDEX)
    extra = ["--extra-index-url", index] if index else []
    done = subprocess.run([*pip_install_command(python, constraints, ("--dry-run", "--report", str(report))),
                           *extra, "-r", str(ENGINE_REQUIREMENTS)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_environment())
    if done.returncode != 0 and classify_output(done.stdout) in ("network", "proxy", "ssl"):
        pytest.skip(f"pip's configured index is unreachable: {done.stdout.splitlines()[-1]}")
    assert done.returncode == 0, done.stdout[-3000:]
    chosen = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    for line in requirement_lines(ENGINE_REQUIREMENTS):
        name, _, version = line.partition("==")
        if version:
            assert chosen[name.lower().replace("_", "-")].split("+")[0] == version, (name, chosen)
    assert {line.split("==")[0] for line in torch_lines(ENGINE_REQUIREMENTS)} <= set(chosen)
    for name in probe.distributions:  # numpy, GDAL, ... stay the base's
        assert name.lower() not in chosen, (name, chosen[name.lower()])
