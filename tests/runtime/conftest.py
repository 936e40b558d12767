"""Runtime tests: a runtime root in tmp, and pip kept off every index but the ones a test names."""
from __future__ import annotations

import os

import pytest

from samcd_runtime_helpers import build_wheel

PIP_ENV = ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX",
           "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
           "no_proxy", "SAM_CD_ENGINE_PYTHON", "SAM_CD_TORCH_INDEX_URL")


@pytest.fixture
def hermetic_pip(monkeypatch):
    """pip reads no configuration file (no configured index, links or constraints) and no proxy."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in PIP_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def runtime_root(tmp_path, monkeypatch, hermetic_pip):
    root = tmp_path / "runtime"
    monkeypatch.setenv("SAM_CD_RUNTIME_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def probe_wheels(tmp_path_factory):
    """A folder of two versions of a small wheel built here: ``samcd_probe`` 1.0 and 2.0."""
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(folder, "1.0")
    build_wheel(folder, "2.0")
    return folder
