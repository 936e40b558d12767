"""sam_cd:detectchanges in a graphical model (detect → polygonize → extract) and in a batch run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import processing
import pytest
from pytest_qgis.utils import wait_until
from qgis.core import QgsProcessingModelAlgorithm, QgsVectorLayer

from sam_cd_plugin.gui.detection_task import AlgorithmRun
from samcd_qgis_helpers import REPO, gdal_array, summarize_raster

pytestmark = pytest.mark.usefixtures("sam_cd_provider")
MODEL = REPO / "tests" / "data" / "detect_polygons.model3"


def test_model_chains_detect_polygonize_and_a_native_algorithm(norcia, tiny_checkpoint, tmp_path: Path) -> None:
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL))
    children = {c.childId(): c.algorithmId() for c in model.childAlgorithms().values()}
    assert children == {"detect": "sam_cd:detectchanges", "polygonize": "gdal:polygonize",
                        "extract": "native:extractbyattribute"}
    mask, polygons = tmp_path / "mask.tif", tmp_path / "changes.gpkg"
    results = processing.run(model, {
        "before": str(norcia.before), "after": str(norcia.after), "checkpoint": str(tiny_checkpoint),
        "threshold": 0.5, "detect:change_mask": str(mask), "extract:change_polygons": str(polygons),
    })
    assert Path(results["detect:change_mask"]) == mask
    values, _, _ = gdal_array(mask)
    gt = summarize_raster(mask).geotransform
    changed = int((values == 1).sum())
    assert changed > 0

    layer = QgsVectorLayer(results["extract:change_polygons"], "changes", "ogr")
    assert layer.isValid()
    dn = [f["DN"] for f in layer.getFeatures()]
    area = sum(f.geometry().area() for f in layer.getFeatures())
    del layer
    assert dn and set(dn) == {1}  # only change polygons survive the native filter
    assert area == pytest.approx(changed * abs(gt[1] * gt[5]), rel=1e-6)  # exactly the changed pixels


def test_batch_rows_as_the_batch_panel_gives_them(norcia, rio, tiny_checkpoint) -> None:
    """Two rows, file paths as layer sources and TEMPORARY_OUTPUT, each run as a background task."""
    rows = [
        {"BEFORE": str(norcia.before), "AFTER": str(norcia.after)},
        {"BEFORE": str(rio.before), "AFTER": str(rio.after)},
    ]
    outputs = []
    for row in rows:
        params = {**row, "CHECKPOINT": str(tiny_checkpoint), "THRESHOLD": 0.5, "DEVICE": "cpu", "TILE_SIZE": 0,
                  "OVERLAP": 32, "BANDS_BEFORE": "3,2,1", "BANDS_AFTER": "3,2,1", "OUTPUT": "TEMPORARY_OUTPUT"}
        done: list[tuple[bool, dict, str]] = []
        run = AlgorithmRun("sam_cd:detectchanges", params)
        run.finished.connect(lambda ok, results, message: done.append((ok, results, message)))
        run.start()
        assert wait_until(lambda: bool(done), timeout_milliseconds=180_000)
        ok, results, message = done[0]
        assert ok, message
        outputs.append(results["OUTPUT"])
    assert len(set(outputs)) == 2
    for row, output in zip(rows, outputs):
        mask, before = summarize_raster(output), summarize_raster(row["BEFORE"])
        assert (mask.crs_authid, mask.width, mask.height, mask.geotransform) == (
            before.crs_authid, before.width, before.height, before.geotransform)
        values, nodata, _ = gdal_array(output)
        assert nodata == 255 and set(np.unique(values)) <= {0, 1, 255}
