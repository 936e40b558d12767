"""Shared fixtures: the real samples beside the repo, and small checkpoints built offline."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".ultralytics"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Start of the skip reason of every test that needs the real samples (counted in the summary).
NO_SAMPLES = "real samples not found at"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real bi-temporal samples); tests needing it skip when it is absent,
    and fail under ``CI=true`` (CI must not pass with the geospatial core untested).

    The samples are read-only for the tests: a session that leaves new ``.aux.xml`` files (GDAL
    statistics, written when QGIS loads a raster as a layer) there fails; copy a sample to
    ``tmp_path`` before loading it as a layer.
    """
    if not SHARED_DATA.is_dir():
        if _in_ci():
            pytest.fail(f"CI=true but the real samples are missing: {SHARED_DATA} does not exist "
                        "(CI must provide ../shared/data beside the clone)", pytrace=False)
        pytest.skip(f"{NO_SAMPLES} {SHARED_DATA}")
    before = set(SHARED_DATA.rglob("*.aux.xml"))
    yield SHARED_DATA
    new = sorted(set(SHARED_DATA.rglob("*.aux.xml")) - before)
    assert not new, f"tests wrote GDAL statistics next to the shared samples: {new}"


def pytest_configure(config) -> None:
    """``SAM_CD_DEPRECATIONS=error`` (the QGIS 3.40/3.44 chroot runs): a deprecation warning raised
    from sam_cd_plugin's code fails the test, so new QGIS/Qt/torch deprecations are seen at once."""
    if os.environ.get("SAM_CD_DEPRECATIONS") == "error":
        for category in ("DeprecationWarning", "PendingDeprecationWarning"):
            config.addinivalue_line("filterwarnings", f"error::{category}:sam_cd_plugin")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    """Says how many tests did not run for want of ``../shared/data``, so a green run can't hide it."""
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [r for r in skipped if isinstance(r.longrepr, tuple) and NO_SAMPLES in str(r.longrepr[2])]
    if missing:
        terminalreporter.write_sep("=", "tests that did not run", yellow=True)
        terminalreporter.write_line(
            f"{len(missing)} test(s) did not run: {NO_SAMPLES} {SHARED_DATA}. The alignment, detector, "
            "scale, hardening and training tests need them; CI=true makes this an error.")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised SAM-CEM-CD / FastSAM-s checkpoint with input size 128."""
    import torch

    from sam_cd_plugin.models.checkpoint import save_checkpoint
    from sam_cd_plugin.models.registry import build_model

    torch.manual_seed(0)
    meta = {"method": "sam-cem-cd", "encoder": "fastsam-s", "delta": 0.3, "input_size": 128,
            "training": {"data": [], "note": "random initialisation, for tests"}, "metrics": {}}
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam_cem_cd.pt"
    return save_checkpoint(path, build_model(meta).eval(), meta)
