"""The wheel, built once per session from this checkout."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sam_cd_plugin.runtime.errors import classify_output
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
