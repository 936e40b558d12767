"""Processing algorithm ``sam_cd:trainfromlayers``: two rasters + digitised change polygons → a checkpoint.

Thin adapter over the engine service's ``train_area`` (:mod:`..engine.area_training`): the polygon
sources (any provider, selection, attribute filter) are written to GeoPackages in Processing's
temporary folder, then the engine rasterises, trains and scores; it receives file paths only.
The written checkpoint is listed in the dock's checkpoint table (:func:`.options.remember_checkpoint`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsFeature,
    QgsFeatureRequest,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExpression,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsVectorFileWriter,
    QgsWkbTypes,
)

from ..core.area_labels import DEFAULT_MARGIN_FRACTION, DEFAULT_MARGIN_PIXELS
from ..engine.requests import AreaTrainRequest
from ..paths import BUNDLED
from .algorithm_base import SamCdAlgorithm
from .detect_changes import parse_band_list
from .compat import (FILE_BEHAVIOR_FILE, FLAG_ADVANCED, GEOMETRY_POLYGON, NUMBER_DOUBLE, NUMBER_INTEGER,
                     VECTOR_POLYGON)
from .options import DEVICE_CHOICES, default_device, remember_checkpoint
from .train_model import ENCODERS, METHODS

__all__ = ["TrainFromLayersAlgorithm"]


class TrainFromLayersAlgorithm(SamCdAlgorithm):
    """Fine-tune (or train) a change-detection checkpoint on one area digitised by the user."""

    BEFORE = "BEFORE"
    AFTER = "AFTER"
    CHANGES = "CHANGES"
    CHANGES_FILTER = "CHANGES_FILTER"
    REVIEWED = "REVIEWED"
    AREA_NAME = "AREA_NAME"
    CHECKPOINT = "CHECKPOINT"
    ENCODER_WEIGHTS = "ENCODER_WEIGHTS"
    METHOD = "METHOD"
    ENCODER = "ENCODER"
    DELTA = "DELTA"
    EPOCHS = "EPOCHS"
    DEVICE = "DEVICE"
    INPUT_SIZE = "INPUT_SIZE"
    BATCH_SIZE = "BATCH_SIZE"
    SAMPLES = "SAMPLES"
    HOLDOUT = "HOLDOUT"
    LR = "LR"
    FREEZE_ENCODER = "FREEZE_ENCODER"
    BANDS_BEFORE = "BANDS_BEFORE"
    BANDS_AFTER = "BANDS_AFTER"
    OUTPUT = "OUTPUT"
    DEVICE_USED = "DEVICE_USED"
    VAL_F1 = "VAL_F1"
    VAL_IOU = "VAL_IOU"

    NAME = "trainfromlayers"
    DISPLAY_NAME = "Train on this area (from layers)"
    GROUP = "Training"
    GROUP_ID = "training"
    TAGS = "train,training,area,polygons,digitise,fine-tune,checkpoint,labels,reviewed"

    def shortHelpString(self) -> str:  # noqa: N802
        margin = f"{DEFAULT_MARGIN_FRACTION:.0%}"
        return self.tr(
            "<p>Trains a change-detection checkpoint (.pt) for <b>your</b> sensor and area: draw "
            "polygons around what changed between the before and after rasters, and the model is "
            "fine-tuned on them. The result appears in the dock's checkpoint table.</p>"
            "<p><b>Change polygons</b>: a polygon layer of the changes (any CRS: it is reprojected); "
            "<b>filter</b> optionally keeps only the features matching an expression (e.g. "
            "<code>\"class\" = 'new building'</code>).</p>"
            "<p><b>Reviewed areas</b> (optional): polygons of where you looked. Inside them, every "
            "pixel not covered by a change polygon is taught as <i>no change</i>; outside them only "
            "the change polygons count, other pixels are ignored. Default: the bounding box of the change polygons grown by "
            f"{margin} of its larger side (at least {DEFAULT_MARGIN_PIXELS} pixels), clipped to the "
            "before raster — so give reviewed areas when you did not digitise every change in "
            "that box.</p>"
            "<p>Labels are rasterised on the before raster's grid; images are read and normalised "
            "exactly as detection reads them. Whole blocks of the area (20 % of the reviewed "
            "pixels, never seen by the loss) are held out: their F1/IoU is stored in the checkpoint "
            "with the area's name and extent, together with the F1 of a plain mean |before − after| "
            "threshold on the same blocks, so you can see whether the model is worth using.</p>"
            "<p><b>Start checkpoint</b>: the model to fine-tune (<i>bundled</i> or empty: the "
            "bundled demonstration model). With <b>encoder weights</b> (e.g. FastSAM-s.pt) a new "
            "model of <b>method</b>/<b>encoder</b> is trained from them instead. Method and encoder "
            "left empty follow the checkpoint. <b>δ</b>: CEM drop ratio (share of no-change pixels "
            "dropped from each batch's loss).</p>"
            "<p><b>Bands</b> (advanced): as in <i>Detect changes</i>; use the same ones when you "
            "detect with the trained model.</p>"
            "<p>Cancelling stops after the current batch and writes nothing; the checkpoint is "
            "written once, at the end.</p>"
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802, ARG002
        self.addParameter(QgsProcessingParameterRasterLayer(self.BEFORE, self.tr("Before raster")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.AFTER, self.tr("After raster")))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.CHANGES, self.tr("Change polygons"), [VECTOR_POLYGON]))
        self.addParameter(QgsProcessingParameterExpression(
            self.CHANGES_FILTER, self.tr("Only change polygons matching (expression)"),
            parentLayerParameterName=self.CHANGES, optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.REVIEWED, self.tr("Reviewed areas (empty: bounding box of the changes + margin)"),
            [VECTOR_POLYGON], optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.AREA_NAME, self.tr("Area name (empty: the change layer's name)"), optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINT, self.tr("Start checkpoint (bundled or empty: the bundled one)"),
            behavior=FILE_BEHAVIOR_FILE, defaultValue=BUNDLED, optional=True,
            fileFilter="SAM-CD checkpoints (*.pt *.PT);;All files (*)"))
        self.addParameter(QgsProcessingParameterFile(
            self.ENCODER_WEIGHTS, self.tr("Or start from encoder weights (e.g. FastSAM-s.pt)"),
            behavior=FILE_BEHAVIOR_FILE, optional=True, fileFilter="PyTorch weights (*.pt *.pth);;All files (*)"))
        self.addParameter(QgsProcessingParameterEnum(
            self.METHOD, self.tr("Method (empty: the checkpoint's)"), options=METHODS, optional=True,
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.ENCODER, self.tr("Encoder (empty: the checkpoint's)"), options=ENCODERS, optional=True,
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterNumber(self.DELTA, self.tr("CEM drop ratio δ"), type=NUMBER_DOUBLE,
                                                       defaultValue=0.3, minValue=0.0, maxValue=0.99))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs"), type=NUMBER_INTEGER,
                                                       defaultValue=10, minValue=1))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"), options=list(DEVICE_CHOICES),
                                                     defaultValue=default_device(), usesStaticStrings=True))
        advanced = [
            QgsProcessingParameterNumber(self.INPUT_SIZE, self.tr("Crop size in pixels (multiple of 32)"),
                                         type=NUMBER_INTEGER, defaultValue=64, minValue=64),
            QgsProcessingParameterNumber(self.BATCH_SIZE, self.tr("Batch size"), type=NUMBER_INTEGER,
                                         defaultValue=8, minValue=1),
            QgsProcessingParameterNumber(self.SAMPLES, self.tr("Training crops per epoch"), type=NUMBER_INTEGER,
                                         defaultValue=64, minValue=1),
            QgsProcessingParameterNumber(self.HOLDOUT, self.tr("Held-out share of the reviewed pixels"),
                                         type=NUMBER_DOUBLE, defaultValue=0.2, minValue=0.05, maxValue=0.5),
            QgsProcessingParameterNumber(self.LR, self.tr("Learning rate (empty: 2e-4 fine-tuning, 1e-3 from encoder weights)"),
                                         type=NUMBER_DOUBLE, optional=True, minValue=0.0, maxValue=1.0),
            QgsProcessingParameterBoolean(self.FREEZE_ENCODER, self.tr("Train the decoder only (quicker on a CPU)"),
                                          defaultValue=False),
            QgsProcessingParameterString(self.BANDS_BEFORE, self.tr("Before bands as R,G,B (e.g. 3,2,1; empty: first three)"),
                                         defaultValue="", optional=True),
            QgsProcessingParameterString(self.BANDS_AFTER, self.tr("After bands as R,G,B (e.g. 3,2,1; empty: first three)"),
                                         defaultValue="", optional=True),
        ]
        for param in advanced:
            param.setFlags(param.flags() | FLAG_ADVANCED)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Trained checkpoint"), self.tr("sam-cd checkpoints (*.pt)")))
        self.addOutput(QgsProcessingOutputString(self.DEVICE_USED, self.tr("Device used")))
        self.addOutput(QgsProcessingOutputNumber(self.VAL_F1, self.tr("Hold-out F1")))
        self.addOutput(QgsProcessingOutputNumber(self.VAL_IOU, self.tr("Hold-out IoU")))

    # -- polygons to files -----------------------------------------------------------------
    def _polygons_file(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext,
                       feedback: QgsProcessingFeedback, expression: str = "") -> tuple[str, str] | None:
        """``(GeoPackage path, layer name)`` holding the polygons of source ``name`` (matching
        ``expression``), in the source's CRS; None for an empty optional source."""
        source = self.parameterAsSource(parameters, name, context)
        what = self.parameterDefinition(name).description()
        if source is None:
            if parameters.get(name) in (None, ""):
                return None
            raise QgsProcessingException(f"{what}: cannot open {parameters.get(name)!r} as a vector layer.")
        if QgsWkbTypes.geometryType(source.wkbType()) != GEOMETRY_POLYGON:
            raise QgsProcessingException(
                f"{what}: '{source.sourceName()}' holds {QgsWkbTypes.displayString(source.wkbType())} "
                "features; draw polygons around the areas instead.")
        request = QgsFeatureRequest()
        if expression:
            request.setFilterExpression(expression)
            if request.filterExpression().hasParserError():
                raise QgsProcessingException(f"{what}: invalid filter expression {expression!r} "
                                             f"({request.filterExpression().parserErrorString()}).")
            request.setExpressionContext(self.createExpressionContext(parameters, context, source))
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.sourceName()).strip("_") or name.lower()
        path = QgsProcessingUtils.generateTempFilename(f"{stem}.gpkg")  # named like the layer in messages
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName, options.layerName = "GPKG", name.lower()
        writer = QgsVectorFileWriter.create(path, QgsFields(), source.wkbType(), source.sourceCrs(),
                                            context.transformContext(), options)
        if writer.hasError():
            raise QgsProcessingException(f"{what}: cannot write {path} ({writer.errorMessage()}).")
        count = 0
        for feature in source.getFeatures(request):
            if feedback.isCanceled():
                raise QgsProcessingException("Cancelled by the user; no checkpoint was written.")
            copy = QgsFeature(QgsFields())
            copy.setGeometry(feature.geometry())
            writer.addFeature(copy)
            count += 1
        del writer
        if expression and not count:
            raise QgsProcessingException(f"{what}: no feature of '{source.sourceName()}' matches the filter "
                                         f"{expression!r}.")
        return path, source.sourceName()

    def processAlgorithm(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not out.lower().endswith(".pt"):
            raise QgsProcessingException(f"{self.OUTPUT}: checkpoints are .pt files; got '{out}'.")
        rasters = {}
        for key in (self.BEFORE, self.AFTER):
            layer = self.parameterAsRasterLayer(parameters, key, context)
            if layer is None:
                raise QgsProcessingException(f"{key}: cannot open {parameters.get(key)!r} as a raster layer.")
            rasters[key] = layer.source()
        expression = self.parameterAsExpression(parameters, self.CHANGES_FILTER, context)
        changes = self._polygons_file(parameters, self.CHANGES, context, feedback, expression)
        reviewed = self._polygons_file(parameters, self.REVIEWED, context, feedback)
        device = self.parameterAsEnumString(parameters, self.DEVICE, context) or "auto"
        config = dict(
            before=rasters[self.BEFORE], after=rasters[self.AFTER], changes=changes[0], out=out,
            reviewed=reviewed[0] if reviewed else None,
            name=self.parameterAsString(parameters, self.AREA_NAME, context).strip() or changes[1],
            checkpoint=self.parameterAsFile(parameters, self.CHECKPOINT, context) or BUNDLED,
            encoder_weights=self.parameterAsFile(parameters, self.ENCODER_WEIGHTS, context) or None,
            method=self.parameterAsEnumString(parameters, self.METHOD, context) or None,
            encoder=self.parameterAsEnumString(parameters, self.ENCODER, context) or None,
            delta=self.parameterAsDouble(parameters, self.DELTA, context),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            input_size=self.parameterAsInt(parameters, self.INPUT_SIZE, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            samples_per_epoch=self.parameterAsInt(parameters, self.SAMPLES, context),
            holdout=self.parameterAsDouble(parameters, self.HOLDOUT, context),
            lr=self.parameterAsDouble(parameters, self.LR, context) or None,
            freeze_encoder=self.parameterAsBoolean(parameters, self.FREEZE_ENCODER, context),
            device=device,
            bands_before=parse_band_list(self.parameterAsString(parameters, self.BANDS_BEFORE, context),
                                         self.BANDS_BEFORE),
            bands_after=parse_band_list(self.parameterAsString(parameters, self.BANDS_AFTER, context),
                                        self.BANDS_AFTER),
        )
        result = self.run_engine("train_area", AreaTrainRequest(config), feedback)
        if device == "cuda" and not result["device"].startswith("CUDA"):
            feedback.pushWarning("CUDA was requested but is not available; training ran on the CPU.")
        metrics = result["metadata"].get("metrics", {})
        val, baseline = metrics.get("val", {}), metrics.get("val_threshold_baseline", {})
        feedback.pushInfo(f"Hold-out F1 {val.get('f1', 0.0):.4f} IoU {val.get('iou', 0.0):.4f}; a plain "
                          f"|before − after| threshold scores F1 {baseline.get('f1', 0.0):.4f} there.")
        if baseline and val.get("f1", 0.0) <= baseline.get("f1", 0.0):
            feedback.pushWarning("The trained model does not beat a plain difference threshold on the "
                                 "held-out blocks: digitise more changes, review a larger area or train longer.")
        remember_checkpoint(Path(result["path"]))
        return {self.OUTPUT: result["path"], self.DEVICE_USED: result["device"],
                self.VAL_F1: val.get("f1"), self.VAL_IOU: val.get("iou")}
