"""``python -m sam_cd_plugin train --before … --after … --changes …``: training on one area from a shell."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from sam_cd_plugin.cli import main
from sam_cd_plugin.models.checkpoint import read_metadata

gdal.UseExceptions()
REPO = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--epochs", "1", "--input-size", "64", "--freeze-encoder"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m sam_cd_plugin ARGS`` as a user types it, in its own process (runs that reach the
    engine are kept out of the test process: in a session that also ran QGIS tests, an in-process
    run crashed the interpreter's final garbage collection)."""
    return subprocess.run([sys.executable, "-m", "sam_cd_plugin", *args], capture_output=True, text=True,
                          timeout=900, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def taizhou(shared_data: Path, tmp_path: Path) -> Path:
    """The Taizhou pair (UTM) with its reference changes digitised as polygons, in tmp_path."""
    for name in ("before.tif", "after.tif", "label_change.tif"):
        shutil.copyfile(shared_data / "geotiff" / "taizhou" / name, tmp_path / name)
    src = gdal.Open(str(tmp_path / "label_change.tif"))
    mask = gdal.GetDriverByName("MEM").Create("", src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    mask.SetGeoTransform(src.GetGeoTransform())
    mask.GetRasterBand(1).WriteArray((src.GetRasterBand(1).ReadAsArray() > 0).astype(np.uint8))
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "changes.gpkg"))
    layer = vds.CreateLayer("changes", srs=osr.SpatialReference(wkt=src.GetProjection()), geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    gdal.Polygonize(mask.GetRasterBand(1), mask.GetRasterBand(1), layer, 0)
    layer = vds = src = mask = None  # layer first: GDAL objects must not outlive their dataset
    return tmp_path


def test_train_on_an_area_writes_a_checkpoint_beside_the_polygons(taizhou: Path) -> None:
    """The user's shell command (a separate process, as typed)."""
    done = run_cli("train", "--before", str(taizhou / "before.tif"), "--after", str(taizhou / "after.tif"),
                   "--changes", str(taizhou / "changes.gpkg"), "--name", "Taizhou", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert "hold-out F1" in printed and "threshold baseline" in printed
    meta = read_metadata(taizhou / "changes_model.pt")  # the default output
    assert meta["training"]["data"] == ["area: Taizhou"] and meta["training"]["area"]["crs"] == "EPSG:32651"
    assert set(meta["metrics"]) >= {"val", "val_threshold_baseline"}


def test_area_arguments_are_checked(taizhou: Path, capsys) -> None:
    assert main(["train", "--before", str(taizhou / "before.tif"), "--changes", str(taizhou / "changes.gpkg")]) == 2
    assert "needs --before, --after and --changes" in capsys.readouterr().err
    assert main(["train", "--data", str(taizhou), "--before", str(taizhou / "before.tif"),
                 "--after", str(taizhou / "after.tif"), "--changes", str(taizhou / "changes.gpkg")]) == 2
    assert "not both" in capsys.readouterr().err
    points = taizhou / "points.gpkg"
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(points))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32651)
    layer = vds.CreateLayer("p", srs=srs, geom_type=ogr.wkbPoint)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POINT(205000 3600000)"))
    layer.CreateFeature(feature)
    feature = layer = vds = None
    done = run_cli("train", "--before", str(taizhou / "before.tif"), "--after", str(taizhou / "after.tif"),
                   "--changes", str(points), *TINY)
    assert done.returncode == 2 and "draw polygons" in done.stderr
    assert not (taizhou / "points_model.pt").exists()


def test_the_engine_worker_trains_on_an_area_and_cancels_without_output(taizhou: Path) -> None:
    """The same request through the worker transport (another process): progress arrives, and a
    cancel after the first batch leaves no checkpoint."""
    from sam_cd_plugin.core.errors import CancelledError
    from sam_cd_plugin.engine.client import WorkerEngine
    from sam_cd_plugin.engine.requests import AreaTrainRequest

    out = taizhou / "worker.pt"
    request = AreaTrainRequest({"before": str(taizhou / "before.tif"), "after": str(taizhou / "after.tif"),
                                "changes": str(taizhou / "changes.gpkg"), "out": str(out), "device": "cpu",
                                "epochs": 2, "freeze_encoder": True})
    progress: list[float] = []
    engine = WorkerEngine(Path(sys.executable))
    try:
        with pytest.raises(CancelledError, match="no checkpoint was written"):
            engine.train_area(request, progress=progress.append, is_cancelled=lambda: bool(progress))
    finally:
        engine.close()
    assert progress and 0 < progress[0] < 100
    assert not list(taizhou.glob("worker.pt*")) and not list(taizhou.glob(".worker.pt*"))
