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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real bi-temporal samples); tests needing it skip when it is absent.

    The samples are read-only for the tests: a session that leaves new ``.aux.xml`` files (GDAL
    statistics, written when QGIS loads a raster as a layer) there fails; copy a sample to
    ``tmp_path`` before loading it as a layer.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real samples not found at {SHARED_DATA}")
    before = set(SHARED_DATA.rglob("*.aux.xml"))
    yield SHARED_DATA
    new = sorted(set(SHARED_DATA.rglob("*.aux.xml")) - before)
    assert not new, f"tests wrote GDAL statistics next to the shared samples: {new}"


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
