"""The sam_cd provider and the definition of sam_cd:detectchanges (no model run here)."""

from __future__ import annotations

import sys

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from sam_cd_plugin.dependencies import missing_dependencies
from sam_cd_plugin.paths import BUNDLED, resource_path
from sam_cd_plugin.processing.compat import FLAG_ADVANCED, FLAG_OPTIONAL
from sam_cd_plugin.processing.detect_changes import parse_band_list
from samcd_qgis_helpers import ALGORITHM_ID

pytestmark = pytest.mark.usefixtures("sam_cd_provider")


@pytest.fixture
def algorithm() -> QgsProcessingAlgorithm:
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALGORITHM_ID)
    assert alg is not None
    return alg


def test_provider_identity() -> None:
    provider = QgsApplication.processingRegistry().providerById("sam_cd")
    assert provider is not None
    assert provider.name() == "SAM change detection"
    assert not provider.icon().isNull()
    assert sorted(a.id() for a in provider.algorithms()) == sorted([ALGORITHM_ID, "sam_cd:evaluate", "sam_cd:train", "sam_cd:trainfromlayers"])
    assert provider.defaultRasterFileExtension() == "tif"


def test_algorithm_identity(algorithm: QgsProcessingAlgorithm) -> None:
    assert algorithm.id() == "sam_cd:detectchanges"
    assert algorithm.name() == "detectchanges"
    assert algorithm.displayName() == "Detect changes"
    assert algorithm.group() == "Change detection"
    assert "no data" in algorithm.shortHelpString()
    assert not algorithm.icon().isNull()


def test_algorithm_runs_in_a_background_thread(algorithm: QgsProcessingAlgorithm) -> None:
    """No FlagNoThreading: the algorithm must not need the GUI thread (qgis_process, tasks)."""
    try:
        no_threading = QgsProcessingAlgorithm.Flag.FlagNoThreading
    except AttributeError:  # QGIS >= 3.36
        from qgis.core import Qgis

        no_threading = Qgis.ProcessingAlgorithmFlag.NoThreading
    assert not (algorithm.flags() & no_threading)


def test_parameters(algorithm: QgsProcessingAlgorithm) -> None:
    params = {p.name(): p for p in algorithm.parameterDefinitions()}
    assert list(params) == ["BEFORE", "AFTER", "CHECKPOINT", "THRESHOLD", "DEVICE", "PROMPTS", "TILE_SIZE",
                            "OVERLAP", "BANDS_BEFORE", "BANDS_AFTER", "CLIP_WEIGHTS", "PROBABILITY_FORMAT", "COG", "MIN_AREA",
                            "OUTPUT", "OUTPUT_PROBABILITY", "OUTPUT_POLYGONS", "NORMALISATION"]
    assert isinstance(params["BEFORE"], QgsProcessingParameterRasterLayer)
    assert isinstance(params["AFTER"], QgsProcessingParameterRasterLayer)

    checkpoint = params["CHECKPOINT"]
    assert isinstance(checkpoint, QgsProcessingParameterFile)
    assert checkpoint.flags() & FLAG_OPTIONAL
    assert checkpoint.defaultValue() == BUNDLED  # resolved at run time: saved models survive a plugin move

    threshold = params["THRESHOLD"]
    assert isinstance(threshold, QgsProcessingParameterNumber)
    assert (threshold.minimum(), threshold.maximum(), threshold.defaultValue()) == (0.0, 1.0, 0.5)

    device = params["DEVICE"]
    assert isinstance(device, QgsProcessingParameterEnum)
    assert device.usesStaticStrings()
    assert device.options() == ["auto", "cpu", "cuda"]
    assert device.defaultValue() == "auto"

    normalisation = params["NORMALISATION"]  # added last: older scripts and models keep working
    assert isinstance(normalisation, QgsProcessingParameterEnum) and normalisation.usesStaticStrings()
    assert normalisation.options() == ["joint", "per-date"] and normalisation.defaultValue() == "joint"

    for name in ("TILE_SIZE", "OVERLAP", "BANDS_BEFORE", "BANDS_AFTER", "CLIP_WEIGHTS", "PROBABILITY_FORMAT",
                 "COG", "MIN_AREA", "NORMALISATION"):
        assert params[name].flags() & FLAG_ADVANCED, name
    for name in ("BEFORE", "AFTER", "CHECKPOINT", "THRESHOLD", "DEVICE", "OUTPUT", "OUTPUT_PROBABILITY"):
        assert not params[name].flags() & FLAG_ADVANCED, name
    assert params["TILE_SIZE"].defaultValue() == 0
    assert params["OVERLAP"].defaultValue() == 64
    assert isinstance(params["BANDS_BEFORE"], QgsProcessingParameterString)

    assert isinstance(params["OUTPUT"], QgsProcessingParameterRasterDestination)
    probability = params["OUTPUT_PROBABILITY"]
    assert isinstance(probability, QgsProcessingParameterRasterDestination)
    assert probability.flags() & FLAG_OPTIONAL
    assert not probability.createByDefault()

    polygons = params["OUTPUT_POLYGONS"]
    assert isinstance(polygons, QgsProcessingParameterVectorDestination)
    assert polygons.flags() & FLAG_OPTIONAL and not polygons.createByDefault()
    assert params["PROBABILITY_FORMAT"].options() == ["float32", "uint8"]
    assert params["PROBABILITY_FORMAT"].defaultValue() == "float32"
    assert params["COG"].defaultValue() is False and params["MIN_AREA"].defaultValue() == 0.0

    outputs = {o.name() for o in algorithm.outputDefinitions()}
    assert {"OUTPUT", "OUTPUT_PROBABILITY", "OUTPUT_POLYGONS", "POLYGON_COUNT", "CHANGED_PIXELS", "VALID_PIXELS",
            "DEVICE_USED"} <= outputs


def test_styles_are_bundled() -> None:
    for name in ("change_mask.qml", "change_probability.qml"):
        text = resource_path("styles", name).read_text(encoding="utf-8")
        assert text.lstrip().startswith("<!DOCTYPE qgis")
    assert 'type="paletted"' in resource_path("styles", "change_mask.qml").read_text(encoding="utf-8")


def test_style_post_processor_outlives_python_references_and_styles_a_layer(tmp_path) -> None:
    import gc

    from osgeo import gdal
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer

    from sam_cd_plugin.processing.styling import StyleLayerPostProcessor

    path = tmp_path / "mask.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 8, 8, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((0, 1, 0, 8, 0, -1))
    ds.GetRasterBand(1).SetNoDataValue(255)
    ds = None

    # what the algorithm does: hand a new post-processor to QGIS and drop the Python reference
    context = QgsProcessingContext()
    details = QgsProcessingContext.LayerDetails("mask", QgsProject.instance(), "mask")
    details.setPostProcessor(StyleLayerPostProcessor.create("change_mask.qml"))
    context.addLayerToLoadOnCompletion(str(path), details)
    del details
    gc.collect()

    layer = QgsRasterLayer(str(path), "mask")
    before = layer.renderer().type()
    context.layerToLoadOnCompletionDetails(str(path)).postProcessor().postProcessLayer(
        layer, context, QgsProcessingFeedback()
    )
    after = layer.renderer().type()
    del layer, context  # QGIS deletes the post-processor with the context
    gc.collect()
    assert (before, after) == ("singlebandgray", "paletted")


def test_can_execute_here(algorithm: QgsProcessingAlgorithm) -> None:
    assert missing_dependencies() == []
    ok, message = algorithm.canExecute()
    assert ok, message


def test_missing_torch_keeps_the_algorithm_listed_and_explains(algorithm, monkeypatch, tmp_path, norcia) -> None:
    """Without torch the provider still loads, canExecute() says what to install, run() fails clearly."""
    import processing

    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when torch is not installed
    assert missing_dependencies() == ["torch"]
    assert QgsApplication.processingRegistry().algorithmById(ALGORITHM_ID) is not None
    ok, message = algorithm.canExecute()
    assert not ok
    assert "torch" in message and "pip install" in message
    assert "Install engine" in message  # the dock's button is the first way out

    out = tmp_path / "change.tif"
    with pytest.raises(QgsProcessingException, match="pip install torch"):
        processing.run(ALGORITHM_ID, {"BEFORE": str(norcia.before), "AFTER": str(norcia.after), "OUTPUT": str(out)})
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None), ("  ", None), (None, None), ("3,2,1", (3, 2, 1)), (" 1 , 2,3 ", (1, 2, 3)), ("4", (4,))],
)
def test_parse_band_list(text, expected) -> None:
    assert parse_band_list(text, "BANDS_BEFORE") == expected


@pytest.mark.parametrize("text", ["a,b,c", "0,1,2", "1,,2", "-1"])
def test_parse_band_list_rejects_bad_input(text) -> None:
    with pytest.raises(QgsProcessingException, match="BANDS_AFTER"):
        parse_band_list(text, "BANDS_AFTER")
