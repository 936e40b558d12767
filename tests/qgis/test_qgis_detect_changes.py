"""processing.run("sam_cd:detectchanges") on real georeferenced samples with the tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from samcd_qgis_helpers import ALGORITHM_ID, gdal_array, summarize_raster

pytestmark = pytest.mark.usefixtures("sam_cd_provider")

# Small overlap keeps the 385x241 sample at a handful of 128 px tiles (fast on 2 CPU cores).
FAST = {"DEVICE": "cpu", "OVERLAP": 32}


def _params(norcia, checkpoint: Path, out: Path, **extra) -> dict:
    return {"BEFORE": str(norcia.before), "AFTER": str(norcia.after), "CHECKPOINT": str(checkpoint),
            "OUTPUT": str(out), **FAST, **extra}


def _path_of(result) -> str:
    """processing.run may hand back a path or a layer; return the path and drop the layer."""
    if isinstance(result, str):
        return result
    path = result.source()
    del result
    return path


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps the progress reports and messages of a run."""

    def __init__(self) -> None:
        super().__init__()
        self.progress_reports: list[float] = []
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.progressChanged.connect(self.progress_reports.append)

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.infos.append(info)
        super().pushInfo(info)

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.warnings.append(warning)
        super().pushWarning(warning)


class CancelAfterFirstProgress(RecordingFeedback):
    """Cancels as soon as the run reports progress that is neither the start nor the end."""

    def __init__(self) -> None:
        super().__init__()
        self.progressChanged.connect(self._cancel_mid_run)

    def _cancel_mid_run(self, value: float) -> None:
        if 0 < value < 100 and not self.isCanceled():
            self.cancel()


def test_change_mask_is_on_the_before_grid(norcia, tiny_checkpoint, tmp_path) -> None:
    out = tmp_path / "change.tif"
    prob = tmp_path / "probability.tif"
    feedback = RecordingFeedback()
    results = processing.run(ALGORITHM_ID, _params(norcia, tiny_checkpoint, out, OUTPUT_PROBABILITY=str(prob)),
                             feedback=feedback)

    assert Path(_path_of(results["OUTPUT"])) == out
    assert Path(_path_of(results["OUTPUT_PROBABILITY"])) == prob
    mask = summarize_raster(out)
    before = summarize_raster(norcia.before)
    assert mask.valid and mask.provider == "gdal"
    assert mask.crs_authid == before.crs_authid == "EPSG:4326"
    assert (mask.width, mask.height) == (before.width, before.height) == (385, 241)
    assert mask.geotransform == before.geotransform
    assert mask.band_count == 1

    values, nodata, dtype = gdal_array(out)
    assert dtype == "Byte" and nodata == 255
    assert set(np.unique(values)) <= {0, 1, 255}
    assert results["VALID_PIXELS"] == int((values != 255).sum()) > 0
    assert results["CHANGED_PIXELS"] == int((values == 1).sum())
    assert results["DEVICE_USED"].startswith("CPU")
    assert any(info.startswith("Device: CPU") for info in feedback.infos)
    assert feedback.progress_reports and max(feedback.progress_reports) == pytest.approx(100)

    # the sidecar .qml styles the mask wherever it is opened
    assert out.with_suffix(".qml").is_file()
    assert mask.renderer == "paletted"

    p_values, p_nodata, p_dtype = gdal_array(prob)
    assert p_dtype == "Float32"
    valid = values != 255
    assert np.all((p_values[valid] >= 0) & (p_values[valid] <= 1))
    assert np.all(p_values[~valid] == p_nodata)
    # mask = probability >= threshold (0.5), pixel by pixel
    assert np.array_equal(values[valid] == 1, p_values[valid] >= 0.5)
    assert summarize_raster(prob).renderer == "singlebandpseudocolor"


def test_outputs_loaded_into_the_project_get_the_bundled_style(norcia, tiny_checkpoint, tmp_path, qgis_new_project,
                                                              iface_layer_tree) -> None:
    """runAndLoadResults goes through the layer post-processor."""
    out = tmp_path / "loaded.tif"
    processing.runAndLoadResults(ALGORITHM_ID, _params(norcia, tiny_checkpoint, out))
    layers = [lyr for lyr in qgis_new_project.mapLayers().values() if Path(lyr.source()) == out]
    assert len(layers) == 1
    renderer = layers[0].renderer()
    kind = renderer.type()
    palette = {int(c.value): c.color.alpha() for c in renderer.classes()}
    opacity = renderer.opacity()
    del renderer, layers
    qgis_new_project.clear()
    assert kind == "paletted"
    assert palette[0] == 0 and palette[1] == 255  # no change transparent, change opaque
    assert 0 < opacity < 1


def test_outputs_to_load_get_the_style_post_processor(norcia, tiny_checkpoint, tmp_path) -> None:
    """The post-processor is attached to outputs that will be loaded, and it styles a layer by itself."""
    out = tmp_path / "to_load.tif"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = _params(norcia, tiny_checkpoint, out)
    params["OUTPUT"] = QgsProcessingOutputLayerDefinition(str(out), QgsProject.instance())
    processing.run(ALGORITHM_ID, params, context=context)  # plain run: layers are left in the context
    assert context.willLoadLayerOnCompletion(str(out))
    post_processor = context.layerToLoadOnCompletionDetails(str(out)).postProcessor()
    assert post_processor is not None

    out.with_suffix(".qml").unlink()  # without the sidecar the layer opens with QGIS' default style
    layer = QgsRasterLayer(str(out), "mask")
    default_kind = layer.renderer().type()
    post_processor.postProcessLayer(layer, context, QgsProcessingFeedback())
    styled_kind = layer.renderer().type()
    del layer, post_processor
    context.setLayersToLoadOnCompletion({})
    assert default_kind != "paletted"
    assert styled_kind == "paletted"


def test_after_raster_in_another_crs_is_resampled_onto_the_before_grid(norcia, tiny_checkpoint, tmp_path) -> None:
    after_utm = tmp_path / "after_utm33.tif"
    gdal.Warp(str(after_utm), str(norcia.after), dstSRS="EPSG:32633", xRes=12.0, yRes=12.0)
    out = tmp_path / "change.tif"
    params = _params(norcia, tiny_checkpoint, out)
    params["AFTER"] = str(after_utm)
    processing.run(ALGORITHM_ID, params)
    mask, before = summarize_raster(out), summarize_raster(norcia.before)
    assert mask.crs_authid == before.crs_authid
    assert (mask.width, mask.height, mask.geotransform) == (before.width, before.height, before.geotransform)
    values, _, _ = gdal_array(out)
    assert set(np.unique(values)) <= {0, 1, 255}
    assert (values != 255).mean() > 0.9  # the warped after raster still covers almost all of before


def test_cancel_mid_run_leaves_no_output(norcia, tiny_checkpoint, tmp_path) -> None:
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    feedback = CancelAfterFirstProgress()
    params = _params(norcia, tiny_checkpoint, out_dir / "change.tif", OUTPUT_PROBABILITY=str(out_dir / "prob.tif"))
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run(ALGORITHM_ID, params, feedback=feedback)
    assert feedback.isCanceled()
    assert feedback.progress_reports and min(feedback.progress_reports) < 100  # it really stopped mid-run
    assert sorted(p.name for p in out_dir.iterdir()) == []  # no mask, probability, partial file or .qml


def test_missing_input_file_is_a_clear_error(norcia, tiny_checkpoint, tmp_path) -> None:
    missing = tmp_path / "nowhere" / "before.tif"
    params = _params(norcia, tiny_checkpoint, tmp_path / "change.tif")
    params["BEFORE"] = str(missing)
    with pytest.raises(QgsProcessingException, match="BEFORE") as info:
        processing.run(ALGORITHM_ID, params)
    assert str(missing) in str(info.value)
    assert not (tmp_path / "change.tif").exists()


def test_missing_checkpoint_is_a_clear_error(norcia, tmp_path) -> None:
    checkpoint = tmp_path / "no_such_model.pt"
    with pytest.raises(QgsProcessingException, match="no_such_model.pt"):
        processing.run(ALGORITHM_ID, _params(norcia, checkpoint, tmp_path / "change.tif"))
    assert not (tmp_path / "change.tif").exists()


def test_web_layers_are_refused_with_advice(norcia, tiny_checkpoint, tmp_path) -> None:
    xyz = QgsRasterLayer("type=xyz&url=https://tile.example.org/{z}/{x}/{y}.png&zmax=19&zmin=0", "tiles", "wms")
    params = _params(norcia, tiny_checkpoint, tmp_path / "change.tif")
    params["AFTER"] = xyz
    try:
        with pytest.raises(QgsProcessingException, match="GeoTIFF") as info:
            processing.run(ALGORITHM_ID, params)
    finally:
        params.clear()
        del xyz
    assert "'wms'" in str(info.value) and "AFTER" in str(info.value)


def test_bad_band_list_and_output_format_are_clear_errors(norcia, tiny_checkpoint, tmp_path) -> None:
    with pytest.raises(QgsProcessingException, match="BANDS_BEFORE"):
        processing.run(ALGORITHM_ID, _params(norcia, tiny_checkpoint, tmp_path / "a.tif", BANDS_BEFORE="red,green"))
    with pytest.raises(QgsProcessingException, match=r"\.tif"):
        processing.run(ALGORITHM_ID, _params(norcia, tiny_checkpoint, tmp_path / "a.png"))
    assert list(tmp_path.iterdir()) == []


def test_polygons_uint8_probability_and_cog_outputs(norcia, tiny_checkpoint, tmp_path) -> None:
    out, prob, gpkg = tmp_path / "change.tif", tmp_path / "prob.tif", tmp_path / "changes.gpkg"
    feedback = RecordingFeedback()
    results = processing.run(ALGORITHM_ID, _params(
        norcia, tiny_checkpoint, out, OUTPUT_PROBABILITY=str(prob), OUTPUT_POLYGONS=str(gpkg),
        PROBABILITY_FORMAT="uint8", COG=True, MIN_AREA=0.0, THRESHOLD=0.3), feedback=feedback)
    assert Path(_path_of(results["OUTPUT_POLYGONS"])) == gpkg
    values, _, _ = gdal_array(out)
    p_values, p_nodata, p_dtype = gdal_array(prob)
    assert p_dtype == "Byte" and p_nodata == 255 and p_values.max() <= 100
    ds = gdal.Open(str(out))
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    del ds
    layer = QgsVectorLayer(f"{gpkg}|layername=changes", "changes", "ogr")
    assert layer.isValid() and layer.featureCount() == results["POLYGON_COUNT"] > 0
    fields = set(layer.fields().names())
    total_area = sum(f["area"] for f in layer.getFeatures())
    del layer
    assert {"area", "mean_probability", "method", "delta", "prompts", "before", "after"} <= fields
    pixel_area = abs(summarize_raster(out).geotransform[1] * summarize_raster(out).geotransform[5])
    assert total_area == pytest.approx((values == 1).sum() * pixel_area, rel=1e-6)
    assert any("change polygons" in info for info in feedback.infos)


def test_polygon_output_is_loaded_as_a_layer(norcia, tiny_checkpoint, tmp_path, qgis_new_project, iface_layer_tree) -> None:
    gpkg = tmp_path / "loaded.gpkg"
    processing.runAndLoadResults(ALGORITHM_ID, _params(norcia, tiny_checkpoint, tmp_path / "c.tif",
                                                       OUTPUT_POLYGONS=str(gpkg), THRESHOLD=0.3))
    layers = [lyr for lyr in qgis_new_project.mapLayers().values() if str(gpkg) in lyr.source()]
    vector = [isinstance(lyr, QgsVectorLayer) and lyr.isValid() for lyr in layers]
    del layers
    qgis_new_project.clear()
    assert vector == [True]


def test_polygons_must_be_a_geopackage(norcia, tiny_checkpoint, tmp_path) -> None:
    with pytest.raises(QgsProcessingException, match=r"\.gpkg"):
        processing.run(ALGORITHM_ID, _params(norcia, tiny_checkpoint, tmp_path / "c.tif",
                                             OUTPUT_POLYGONS=str(tmp_path / "p.shp")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("transport", ["inprocess", "worker"])
def test_every_run_with_the_bundled_model_warns_that_it_is_a_demonstration_model(
        norcia, tiny_checkpoint, tmp_path, monkeypatch, transport) -> None:
    import sys

    from sam_cd_plugin.engine.service import shutdown_engine

    monkeypatch.setenv("SAM_CD_ENGINE", transport)
    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)
    shutdown_engine()
    demo = ("sam_cem_cd_fastsam-s.pt is a demonstration model: trained on 8 image pairs from random "
            "initialisation; use it to try the pipeline, train or pick a model for real use.")
    try:
        for run in (1, 2):  # the second run reuses the loaded model: it must warn again
            feedback = RecordingFeedback()
            processing.run(ALGORITHM_ID, _params(norcia, "bundled", tmp_path / f"change{run}.tif"),
                           feedback=feedback)
            assert [w for w in feedback.warnings if "demonstration" in w] == [demo]
        feedback = RecordingFeedback()
        processing.run(ALGORITHM_ID, _params(norcia, tiny_checkpoint, tmp_path / "tiny.tif"),
                       feedback=feedback)
        assert not [w for w in feedback.warnings if "demonstration" in w]
    finally:
        shutdown_engine()
