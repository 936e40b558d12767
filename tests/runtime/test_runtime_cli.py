"""``python -m sam_cd_plugin runtime ...`` as a user types it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SAM_CD_ENGINE_PYTHON", "SAM_CD_RUNTIME_DIR")}
    return subprocess.run([sys.executable, "-m", "sam_cd_plugin", "runtime", "--root", str(root), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_status_of_a_fresh_machine(tmp_path):
    done = cli("status", "--json", root=tmp_path / "rt")
    assert done.returncode == 1
    status = json.loads(done.stdout)
    assert status["state"] == "missing" and status["root"] == str(tmp_path / "rt")
    assert "runtime install" in status["summary"]


def test_use_registers_an_environment_with_torch(tmp_path):
    root = tmp_path / "rt"
    done = cli("use", sys.executable, root=root)  # this test venv has torch, ultralytics and GDAL
    assert done.returncode == 0, done.stderr
    status = json.loads(cli("status", "--json", root=root).stdout)
    assert status["state"] == "registered" and status["python"] == str(Path(sys.executable).absolute())
    import torch

    assert status["packages"]["torch"] == torch.__version__
    assert cli("use", "--forget", root=root).returncode == 0
    assert json.loads(cli("status", "--json", root=root).stdout)["state"] == "missing"


def test_use_refuses_an_environment_without_torch(tmp_path):
    done = cli("use", "/usr/bin/python3", root=tmp_path / "rt")
    assert done.returncode == 2
    assert "cannot import torch" in done.stderr and "Traceback" not in done.stderr


def test_install_failure_is_one_message(tmp_path):
    done = cli("install", "--python", "/bin/true", root=tmp_path / "rt")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "does not run as a Python interpreter" in done.stderr and "runtime use PATH" in done.stderr
    assert "Base Python" not in done.stdout  # the failure came before any install step


def test_diagnostics_prints_the_report(tmp_path):
    done = cli("diagnostics", root=tmp_path / "rt")
    assert done.returncode == 0
    assert done.stdout.startswith("# sam-cd diagnostics")
    for row in ("| Python (this process) |", "| OS |", "| GPU |", "| torch build for this machine |",
                f"| Runtime root | {tmp_path / 'rt'} |"):
        assert row in done.stdout
