"""Fixtures for the hardening suite: small real input rasters in a checksummed workspace.

The QGIS fixtures (``sam_cd_provider``, ``plugin_dir``) are reused from ``tests/qgis`` rather than
copied: that conftest is loaded here under another module name.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from osgeo import gdal

HERE = Path(__file__).resolve().parent
QGIS_TESTS = HERE.parent / "qgis"
for folder in (HERE, QGIS_TESTS):  # hardening_helpers, samcd_qgis_helpers
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from hardening_helpers import CROP, Workspace  # noqa: E402

gdal.UseExceptions()


def _load_qgis_conftest():
    spec = importlib.util.spec_from_file_location("samcd_qgis_conftest", QGIS_TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_qgis = _load_qgis_conftest()
sam_cd_provider = _qgis.sam_cd_provider
plugin_dir = _qgis.plugin_dir


@pytest.fixture(scope="session")
def real_crops(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Crops of the real Norcia Sentinel-2 pair (uint16, 4 bands, EPSG:4326), made once."""
    site = shared_data / "geotiff" / "oscd_norcia"
    folder = tmp_path_factory.mktemp("real_crops")
    crops = {}
    for name in ("before", "after"):
        out = folder / f"{name}.tif"
        gdal.Translate(str(out), str(site / f"{name}.tif"), srcWin=[0, 0, *CROP])
        crops[name] = out
    return crops


@pytest.fixture()
def ws(tmp_path: Path, real_crops: dict[str, Path]) -> Workspace:
    return Workspace(tmp_path, real_crops)


