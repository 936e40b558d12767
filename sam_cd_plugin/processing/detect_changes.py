"""Processing algorithm ``sam_cd:detectchanges``: before/after rasters -> change mask GeoTIFF.

The algorithm is a thin adapter: it turns Processing parameters into a ``DetectRequest`` and
runs it on the engine service (:mod:`..engine.service`: in the engine worker process or in
QGIS's own Python) with Processing's progress, cancel and log, mapping every failure to one
``QgsProcessingException``. This module never imports torch.

The id ``sam_cd:detectchanges`` and the parameter names are public API (models, scripts,
``qgis_process``): never rename them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProviderRegistry,
    QgsRasterLayer,
)

from .algorithm_base import SamCdAlgorithm
from ..paths import BUNDLED
from ..core.errors import InputError
from ..core.normalisation import NORMALISATIONS
from ..core.prompts import parse_prompts
from ..engine.options import DetectionOptions
from ..engine.requests import DetectRequest
from ..core.validation import check_raster_file
from ..core.writers import PROBABILITY_FORMATS
from .compat import FILE_BEHAVIOR_FILE, FLAG_ADVANCED, NUMBER_DOUBLE, NUMBER_INTEGER, VECTOR_POLYGON
from .options import DEVICE_CHOICES
from .styling import (
    CHANGE_MASK_STYLE,
    PROBABILITY_STYLE,
    StyleLayerPostProcessor,
    write_sidecar_style,
)

__all__ = ["DetectChangesAlgorithm", "parse_band_list"]

GEOTIFF_SUFFIXES = (".tif", ".tiff")


def parse_band_list(text: str | None, parameter: str) -> tuple[int, ...] | None:
    """``"3,2,1"`` -> ``(3, 2, 1)``; empty -> ``None`` (engine default: first three bands).

    Raises QgsProcessingException naming ``parameter`` for anything but 1-based integers.
    """
    if text is None or not str(text).strip():
        return None
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    try:
        bands = tuple(int(p) for p in parts)
    except ValueError:
        bands = ()
    if not bands or any(b < 1 for b in bands):
        raise QgsProcessingException(
            f"{parameter} must be a comma-separated list of 1-based band numbers such as "
            f"'3,2,1' (or empty for the first three bands); got '{text}'."
        )
    return bands


class DetectChangesAlgorithm(SamCdAlgorithm):
    """Detect changes between a before and an after raster with a SAM-CD checkpoint."""

    BEFORE = "BEFORE"
    AFTER = "AFTER"
    CHECKPOINT = "CHECKPOINT"
    THRESHOLD = "THRESHOLD"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    BANDS_BEFORE = "BANDS_BEFORE"
    BANDS_AFTER = "BANDS_AFTER"
    OUTPUT = "OUTPUT"
    OUTPUT_PROBABILITY = "OUTPUT_PROBABILITY"
    PROBABILITY_FORMAT = "PROBABILITY_FORMAT"
    COG = "COG"
    OUTPUT_POLYGONS = "OUTPUT_POLYGONS"
    MIN_AREA = "MIN_AREA"
    PROMPTS = "PROMPTS"
    CLIP_WEIGHTS = "CLIP_WEIGHTS"
    POLYGON_COUNT = "POLYGON_COUNT"
    CHANGED_PIXELS = "CHANGED_PIXELS"
    VALID_PIXELS = "VALID_PIXELS"
    DEVICE_USED = "DEVICE_USED"
    NORMALISATION = "NORMALISATION"

    # -- identity -------------------------------------------------------------------------
    NAME = "detectchanges"
    DISPLAY_NAME = "Detect changes"
    GROUP = "Change detection"
    GROUP_ID = "changedetection"
    TAGS = "change,detection,change detection,before,after,bitemporal,sam,fastsam,segment anything,deep learning,ai,torch"

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "<p>Finds where the landscape changed between a <b>before</b> and an <b>after</b> "
            "raster with a SAM-guided change-detection model (SAM-CEM-CD).</p>"
            "<p>The output is a GeoTIFF on the before raster's grid (CRS, pixel size, extent): "
            "<b>1</b> = change, <b>0</b> = no change, <b>255</b> = no data (no data in either "
            "input or outside the after raster). The after raster is resampled onto that grid "
            "when the two differ. A style is applied when the layer is loaded and written next "
            "to the file (<i>.qml</i>).</p>"
            "<p><b>Checkpoint</b>: a trained model (.pt); <i>bundled</i> (or empty) uses the one "
            "shipped with the plugin, wherever the plugin is installed. "
            "<b>Threshold</b>: change probability above which a pixel counts as change "
            "(lower finds more change). <b>Device</b>: auto uses a CUDA GPU when available. "
            "<b>Bands</b>: three 1-based band numbers in red,green,blue order, e.g. 3,2,1 for "
            "a raster stored as blue,green,red; empty uses the first three (a single-band "
            "raster is repeated). <b>Tile size</b> 0 uses the checkpoint's input "
            "size; <b>overlap</b> is the number of pixels shared by neighbouring tiles. "
            "<b>Normalisation</b>: <i>joint</i> (default) stretches both dates with one 2–98 % "
            "range taken from the pixels valid in both, so unchanged ground looks the same in "
            "both; <i>per-date</i> stretches each raster on its own (dates from different "
            "sensors). 8-bit bands are used as 0..255.</p>"
            "<p>The optional <b>probability</b> output is a GeoTIFF of the change probability: "
            "float32 0..1, or uint8 percent 0..100 (<b>probability format</b>). Overlapping "
            "tiles are blended smoothly and the mask is that probability thresholded, so the two "
            "always agree. <b>Cloud Optimized GeoTIFF</b> writes both rasters as COGs.</p>"
            "<p>The optional <b>change polygons</b> output is a GeoPackage (layer <i>changes</i>) "
            "with the area (map units²), mean probability, method, δ, prompts and both source "
            "names of each changed region; regions smaller than the <b>minimum polygon area</b> "
            "are dropped.</p>"
            "<p><b>Category prompts</b> (e.g. <i>building, road</i>) steer SAM-CD checkpoints to "
            "those categories; they need the CLIP weights file. Left <b>empty</b>, the checkpoint's "
            "own prompts are used; <b>none</b> (or <b>-</b>) runs without a semantic prior (no "
            "CLIP file needed; a checkpoint trained with prompts warns that it may be less "
            "accurate). Other methods find changes of any kind and ignore prompts.</p>"
            "<p><b>The bundled model is a demonstration model</b>: trained on a few LEVIR-CD "
            "tiles (0.5 m aerial photos) from random initialisation, it shows the pipeline working "
            "but is not accurate; every run with it says so in the log. For real use, train a "
            "model on your own imagery (<i>Train a change-detection model</i>) or pick a "
            "trained one; the dock's checkpoint table marks demonstration models.</p>"
            "<p>Cancelling stops after the current batch of tiles and leaves no output file. "
            "Runs in the detection engine (dock: <i>Install engine</i>).</p>"
        )

    # -- parameters -----------------------------------------------------------------------
    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802, ARG002
        self.addParameter(QgsProcessingParameterRasterLayer(self.BEFORE, self.tr("Before raster")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.AFTER, self.tr("After raster")))

        checkpoint = QgsProcessingParameterFile(
            self.CHECKPOINT,
            self.tr("Checkpoint (bundled or empty: the bundled SAM-CEM-CD FastSAM-s)"),
            behavior=FILE_BEHAVIOR_FILE,
            defaultValue=BUNDLED,
            optional=True,
            fileFilter=self.tr("SAM-CD checkpoints (*.pt *.PT);;All files (*)"),
        )
        self.addParameter(checkpoint)

        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD,
                self.tr("Change probability threshold"),
                type=NUMBER_DOUBLE,
                defaultValue=0.5,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.DEVICE,
                self.tr("Device"),
                options=list(DEVICE_CHOICES),
                defaultValue="auto",
                usesStaticStrings=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.PROMPTS,
                self.tr("Category prompts, comma-separated (SAM-CD only; empty: the checkpoint's; "
                        "'none': no semantic prior)"),
                defaultValue="",
                optional=True,
            )
        )

        advanced = [
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                self.tr("Tile size in pixels (0: the checkpoint's input size)"),
                type=NUMBER_INTEGER,
                defaultValue=0,
                minValue=0,
            ),
            QgsProcessingParameterNumber(
                self.OVERLAP,
                self.tr("Tile overlap in pixels"),
                type=NUMBER_INTEGER,
                defaultValue=64,
                minValue=0,
            ),
            QgsProcessingParameterString(
                self.BANDS_BEFORE,
                self.tr("Before bands as R,G,B (e.g. 3,2,1; empty: first three)"),
                defaultValue="",
                optional=True,
            ),
            QgsProcessingParameterString(
                self.BANDS_AFTER,
                self.tr("After bands as R,G,B (e.g. 3,2,1; empty: first three)"),
                defaultValue="",
                optional=True,
            ),
        ]
        advanced += [
            QgsProcessingParameterFile(
                self.CLIP_WEIGHTS,
                self.tr("CLIP weights file (SAM-CD with prompts, e.g. ViT-B-32.pt)"),
                behavior=FILE_BEHAVIOR_FILE,
                optional=True,
                fileFilter=self.tr("CLIP weights (*.pt *.bin *.safetensors);;All files (*)"),
            ),
            QgsProcessingParameterEnum(
                self.PROBABILITY_FORMAT,
                self.tr("Probability format (float32 0..1 or uint8 percent)"),
                options=list(PROBABILITY_FORMATS),
                defaultValue=PROBABILITY_FORMATS[0],
                usesStaticStrings=True,
            ),
            QgsProcessingParameterBoolean(
                self.COG, self.tr("Write Cloud Optimized GeoTIFFs"), defaultValue=False
            ),
            QgsProcessingParameterNumber(
                self.MIN_AREA,
                self.tr("Minimum change polygon area (map units²)"),
                type=NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=0.0,
            ),
        ]
        for param in advanced:
            param.setFlags(param.flags() | FLAG_ADVANCED)
            self.addParameter(param)

        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Change mask"))
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_PROBABILITY,
                self.tr("Change probability"),
                optional=True,
                createByDefault=False,
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_POLYGONS,
                self.tr("Change polygons"),
                type=VECTOR_POLYGON,
                optional=True,
                createByDefault=False,
            )
        )
        # added last, so the order of the older parameters is unchanged
        normalisation = QgsProcessingParameterEnum(
            self.NORMALISATION,
            self.tr("Normalisation (joint: one stretch for both dates; per-date: different sensors)"),
            options=list(NORMALISATIONS),
            defaultValue=NORMALISATIONS[0],
            usesStaticStrings=True,
        )
        normalisation.setFlags(normalisation.flags() | FLAG_ADVANCED)
        self.addParameter(normalisation)
        self.addOutput(QgsProcessingOutputNumber(self.POLYGON_COUNT, self.tr("Change polygons written")))
        self.addOutput(QgsProcessingOutputNumber(self.CHANGED_PIXELS, self.tr("Changed pixels")))
        self.addOutput(QgsProcessingOutputNumber(self.VALID_PIXELS, self.tr("Valid (not no-data) pixels")))
        self.addOutput(QgsProcessingOutputString(self.DEVICE_USED, self.tr("Device used")))

    # -- execution ------------------------------------------------------------------------
    def checkParameterValues(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[bool, str]:
        """QGIS' checks, except that before/after files are checked without loading them as QGIS
        layers (which writes .aux.xml statistics next to the user's files) and with messages
        that say what is wrong; also reject malformed band lists before the run starts."""
        files = {name: self._file_path(parameters, name, context) for name in (self.BEFORE, self.AFTER)}
        for param in self.parameterDefinitions():
            name, value = param.name(), parameters.get(param.name())
            if files.get(name) is not None:
                try:
                    check_raster_file(files[name])
                except InputError as exc:
                    return False, f"{name}: {exc}"
            elif not param.checkValueIsAcceptable(value, context):
                return False, self._invalid_value_message(param, value)
        for name in (self.BANDS_BEFORE, self.BANDS_AFTER):
            try:
                parse_band_list(self.parameterAsString(parameters, name, context), name)
            except QgsProcessingException as exc:
                return False, str(exc)
        return True, ""

    @staticmethod
    def _file_path(parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> str | None:
        """The value of raster parameter ``name`` when it is a file path rather than a project
        layer (id or name) or a layer object; ``None`` otherwise."""
        value = parameters.get(name)
        if not isinstance(value, str) or not value.strip():
            return None
        project = context.project()
        if project is not None and (project.mapLayer(value) or project.mapLayersByName(value)):
            return None
        path = Path(value)
        return value if path.exists() or path.is_absolute() or len(path.parts) > 1 else None

    @staticmethod
    def _invalid_value_message(param: Any, value: Any) -> str:
        """QGIS' "Incorrect parameter value" plus the accepted range of numbers."""
        message = f"Incorrect parameter value for {param.description()} ({param.name()}): {value!r}."
        if isinstance(param, QgsProcessingParameterNumber):
            low, high = param.minimum(), param.maximum()
            message += (f" Use a number from {low:g} to {high:g}." if abs(high) < 1e300
                        else f" Use a number of at least {low:g}.")
        return message

    def _raster_source(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> str:
        """File path (or GDAL dataset string) of raster parameter ``name``.

        Raises QgsProcessingException for unreadable layers and non-GDAL providers (WMS, XYZ,
        WCS, PostGIS rasters, ...), which the engine cannot read.
        """
        path = self._file_path(parameters, name, context)
        if path is not None:
            try:
                return str(check_raster_file(path))
            except InputError as exc:
                raise QgsProcessingException(f"{name}: {exc}") from exc
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        provider = layer.providerType()
        if provider != "gdal":
            raise QgsProcessingException(
                f"{name}: layer '{layer.name()}' comes from the '{provider}' data provider "
                f"(e.g. a web or database layer); only file-based rasters can be used. Save it "
                f"as a GeoTIFF first (right-click the layer > Export > Save As...) and use that file."
            )
        return self._gdal_source(layer)

    @staticmethod
    def _gdal_source(layer: QgsRasterLayer) -> str:
        source = layer.source()
        parts = QgsProviderRegistry.instance().decodeUri("gdal", source)
        path = parts.get("path") or ""
        if path and not parts.get("layerName") and Path(path).is_file():
            return path
        return source  # GDAL connection string (subdataset, /vsi..., GPKG table): pass through

    @staticmethod
    def _geotiff_path(path: str, name: str) -> str:
        if not path.lower().endswith(GEOTIFF_SUFFIXES):
            raise QgsProcessingException(
                f"{name}: outputs are written as GeoTIFF; choose a file name ending in .tif (got '{path}')."
            )
        return path

    def processAlgorithm(  # noqa: N802
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        before = self._raster_source(parameters, self.BEFORE, context)
        after = self._raster_source(parameters, self.AFTER, context)
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context) or BUNDLED
        threshold = self.parameterAsDouble(parameters, self.THRESHOLD, context)
        device = self.parameterAsEnumString(parameters, self.DEVICE, context) or "auto"
        tile_size = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        bands_before = parse_band_list(
            self.parameterAsString(parameters, self.BANDS_BEFORE, context), self.BANDS_BEFORE
        )
        bands_after = parse_band_list(
            self.parameterAsString(parameters, self.BANDS_AFTER, context), self.BANDS_AFTER
        )
        out_path = self._geotiff_path(
            self.parameterAsOutputLayer(parameters, self.OUTPUT, context), self.OUTPUT
        )
        prob_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_PROBABILITY, context) or None
        if prob_path:
            self._geotiff_path(prob_path, self.OUTPUT_PROBABILITY)
        polygons_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_POLYGONS, context) or None
        if polygons_path and not polygons_path.lower().endswith(".gpkg"):
            raise QgsProcessingException(
                f"{self.OUTPUT_POLYGONS}: change polygons are written as a GeoPackage; choose a file "
                f"name ending in .gpkg (got '{polygons_path}')."
            )

        prompts = parse_prompts(self.parameterAsString(parameters, self.PROMPTS, context))
        clip_weights = self.parameterAsFile(parameters, self.CLIP_WEIGHTS, context) or None

        options = DetectionOptions(
            threshold=threshold,
            tile_size=tile_size,
            overlap=overlap,
            bands_before=bands_before,
            bands_after=bands_after,
            probability_path=prob_path,
            probability_format=self.parameterAsEnumString(parameters, self.PROBABILITY_FORMAT, context)
            or PROBABILITY_FORMATS[0],
            polygons_path=polygons_path,
            min_area=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            cog=self.parameterAsBoolean(parameters, self.COG, context),
            normalisation=self.parameterAsEnumString(parameters, self.NORMALISATION, context)
            or NORMALISATIONS[0],
        )
        request = DetectRequest(before, after, out_path, checkpoint=checkpoint, device=device,
                                clip_weights=clip_weights, prompts=prompts, options=options)
        result = self.run_engine("detect", request, feedback)

        mask_path = str(result["out_path"])
        self._style_output(mask_path, CHANGE_MASK_STYLE, context, feedback)
        results: dict[str, Any] = {
            self.OUTPUT: mask_path,
            self.CHANGED_PIXELS: int(result["changed_pixels"]),
            self.VALID_PIXELS: int(result["valid_pixels"]),
            self.DEVICE_USED: result["device"],
        }
        if result["probability_path"] is not None:
            results[self.OUTPUT_PROBABILITY] = str(result["probability_path"])
            self._style_output(str(result["probability_path"]), PROBABILITY_STYLE, context, feedback)
        results[self.POLYGON_COUNT] = int(result["polygon_count"])
        if result["polygons_path"] is not None:
            results[self.OUTPUT_POLYGONS] = str(result["polygons_path"])
            feedback.pushInfo(f"{result['polygon_count']} change polygons written to {result['polygons_path']}.")

        changed, valid = result["changed_pixels"], result["valid_pixels"]
        share = 100.0 * changed / valid if valid else 0.0
        feedback.pushInfo(
            f"{changed} of {valid} valid pixels changed ({share:.2f} %), {result['width']}x"
            f"{result['height']} pixels in {result['seconds']:.1f} s on {result['device']}."
        )
        return results

    @staticmethod
    def _style_output(
        path: str, style_name: str, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        """Write the sidecar .qml and attach the post-processor if the layer will be loaded."""
        try:
            write_sidecar_style(path, style_name)
        except OSError as exc:
            feedback.pushWarning(f"Could not write the style file next to {path}: {exc}")
        if context.willLoadLayerOnCompletion(path):
            details = context.layerToLoadOnCompletionDetails(path)
            details.setPostProcessor(StyleLayerPostProcessor.create(style_name))
