"""sam_cd:evaluate: a change raster against a reference, in-process and through qgis_process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import processing
import pytest
from qgis.core import QgsApplication, QgsProcessingException

from sam_cd_plugin.core.metrics import ConfusionMatrix
from sam_cd_plugin.processing.evaluate_changes import METRICS
from samcd_qgis_helpers import qgis_process_runner, write_raster

pytestmark = pytest.mark.usefixtures("sam_cd_provider")
ALGORITHM = "sam_cd:evaluate"
GEOTRANSFORM = (500000.0, 10.0, 0.0, 4700000.0, 0.0, -10.0)
REF_NODATA = 99


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, np.ndarray]:
    """A prediction (0/1, no data 255) and a reference (0/255, no data 99), 50x60 pixels."""
    rng = np.random.default_rng(5)
    truth = rng.random((50, 60)) < 0.2
    pred = np.where(rng.random((50, 60)) < 0.85, truth, ~truth).astype(np.uint8)
    pred[:4, :] = 255
    ref = np.where(truth, 255, 0).astype(np.uint8)
    ref[10:13, 20:30] = REF_NODATA
    return pred, ref


def expected(pred: np.ndarray, ref: np.ndarray) -> ConfusionMatrix:
    return ConfusionMatrix().update(pred == 1, (ref != 0) & (ref != REF_NODATA), (pred != 255) & (ref != REF_NODATA))


def assert_metrics(results: dict, matrix: ConfusionMatrix) -> None:
    for name, (attr, _label) in METRICS.items():
        assert results[name] == pytest.approx(getattr(matrix, attr)), name
    assert (results["TP"], results["FP"], results["FN"], results["TN"]) == (matrix.tp, matrix.fp, matrix.fn, matrix.tn)


def test_algorithm_is_documented_for_every_interface() -> None:
    registry = QgsApplication.processingRegistry()
    for algorithm_id in (ALGORITHM, "sam_cd:train", "sam_cd:detectchanges"):
        algorithm = registry.algorithmById(algorithm_id)
        assert algorithm is not None, algorithm_id
        assert len(algorithm.shortHelpString()) > 200 and not algorithm.icon().isNull()
        for param in algorithm.parameterDefinitions():  # every type the batch panel and modeler know
            assert param.type() in {"raster", "band", "file", "fileDestination", "number", "enum", "string", "boolean",
                                    "rasterDestination", "vectorDestination"}, (algorithm_id, param.name())


def test_metrics_with_0_255_and_0_1_references(arrays, tmp_path: Path) -> None:
    pred, ref = arrays
    change = write_raster(tmp_path / "change.tif", pred, nodata=255)
    ref_255 = write_raster(tmp_path / "ref255.tif", ref, nodata=REF_NODATA)
    ref_01 = write_raster(tmp_path / "ref01.tif", np.where(ref == 255, 1, ref).astype(np.uint8), nodata=REF_NODATA)
    report = tmp_path / "report.html"
    matrix = expected(pred, ref)
    assert 0.5 < matrix.f1 < 0.95 and matrix.total == (pred != 255).sum() - 30

    results = processing.run(ALGORITHM, {"CHANGE": str(change), "REFERENCE": str(ref_255), "OUTPUT_HTML_FILE": str(report)})
    assert_metrics(results, matrix)
    assert results["OUTPUT_HTML_FILE"] == str(report)
    text = report.read_text(encoding="utf-8")
    assert f"{matrix.f1:.4f}" in text and "Kappa" in text and str(matrix.tp) in text

    results = processing.run(ALGORITHM, {"CHANGE": str(change), "REFERENCE": str(ref_01), "OUTPUT_HTML_FILE": "TEMPORARY_OUTPUT"})
    assert_metrics(results, matrix)
    assert Path(results["OUTPUT_HTML_FILE"]).is_file()


def test_reference_on_another_grid_is_aligned(arrays, tmp_path: Path) -> None:
    """Reference shifted by whole pixels and cut on the right: only the overlap is counted."""
    pred, ref = arrays
    change = write_raster(tmp_path / "change.tif", pred, nodata=255)
    shifted = np.zeros((55, 50), np.uint8)  # starts 5 px left and 5 px above; ends 15 px before the right edge
    shifted[5:, 5:] = ref[:, :45]
    gt = (GEOTRANSFORM[0] - 50.0, 10.0, 0.0, GEOTRANSFORM[3] + 50.0, 0.0, -10.0)
    reference = write_raster(tmp_path / "ref_shifted.tif", shifted, geotransform=gt, nodata=REF_NODATA)
    results = processing.run(ALGORITHM, {"CHANGE": str(change), "REFERENCE": str(reference)})
    assert_metrics(results, expected(pred[:, :45], ref[:, :45]))


def test_bad_band_is_a_clear_error(arrays, tmp_path: Path) -> None:
    pred, ref = arrays
    change = write_raster(tmp_path / "change.tif", pred, nodata=255)
    reference = write_raster(tmp_path / "ref.tif", ref)
    with pytest.raises(QgsProcessingException):
        processing.run(ALGORITHM, {"CHANGE": str(change), "REFERENCE": str(reference), "REFERENCE_BAND": 3})


def test_qgis_process_runs_evaluate_headless(arrays, plugin_dir: Path, tmp_path: Path) -> None:
    pred, ref = arrays
    change = write_raster(tmp_path / "change.tif", pred, nodata=255)
    reference = write_raster(tmp_path / "ref.tif", ref, nodata=REF_NODATA)
    report = tmp_path / "report.html"
    run = qgis_process_runner(plugin_dir, tmp_path / "profile")
    done = run("--json", "run", ALGORITHM, "--", f"CHANGE={change}", f"REFERENCE={reference}", f"OUTPUT_HTML_FILE={report}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(done.stdout)["results"]
    assert_metrics(results, expected(pred, ref))
    assert report.is_file()
