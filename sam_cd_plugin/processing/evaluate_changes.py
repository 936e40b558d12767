"""Processing algorithm ``sam_cd:evaluate``: a change raster scored against a reference raster.

Outputs the change-class metrics (precision, recall, F1, IoU, overall accuracy, kappa) and the
two-class means some papers report (mF1, mIoU) as numbers a model can chain, plus an HTML report.
Counting is done by :func:`compare_rasters` (GDAL + ``core``, no qgis), window by window.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from .algorithm_base import SamCdAlgorithm
from ..core.alignment import same_grid
from ..core.errors import CancelledError, InputError
from ..core.metrics import ConfusionMatrix
from ..core.raster import info_from_dataset, open_raster

__all__ = ["METRICS", "EvaluateChangesAlgorithm", "compare_rasters"]

#: Output name -> (ConfusionMatrix attribute, label)
METRICS: dict[str, tuple[str, str]] = {
    "PRECISION": ("precision", "Precision"),
    "RECALL": ("recall", "Recall"),
    "F1": ("f1", "F1"),
    "IOU": ("iou", "IoU"),
    "OA": ("oa", "Overall accuracy"),
    "KAPPA": ("kappa", "Kappa"),
    "MF1": ("mf1", "mF1 (two-class mean)"),
    "MIOU": ("miou", "mIoU (two-class mean)"),
}
COUNTS = ("TP", "FP", "FN", "TN")
ROWS_PER_BLOCK = 512


def _reference_on_grid(
    reference: gdal.Dataset, change: gdal.Dataset, band: int, path: str
) -> tuple[gdal.Dataset, int, list]:
    """``(dataset, band, keep)``: the reference on the change raster's grid.

    Nearest-neighbour resampling (labels must not be blended); an alpha band marks the pixels
    outside the reference, which are not counted. ``keep`` holds the in-memory VRTs (paths and
    datasets) to release after reading; it is empty when nothing was warped.
    """
    change_info, ref_info = info_from_dataset(change, "change"), info_from_dataset(reference, path)
    if same_grid(change_info, ref_info):
        return reference, band, []
    if not change_info.has_crs or not ref_info.has_crs:
        raise InputError(
            f"The reference raster {path} is not on the change raster's grid and one of them has no "
            "coordinate reference system, so they cannot be aligned. Georeference both rasters."
        )
    token = uuid.uuid4().hex
    subset_path, target = f"/vsimem/samcd_eval_{token}_band.vrt", f"/vsimem/samcd_eval_{token}.vrt"
    xmin, ymin, xmax, ymax = change_info.extent
    try:  # one band first: gdalwarp's band selection needs GDAL 3.7
        subset = gdal.Translate(subset_path, reference, format="VRT", bandList=[band])
        warped = gdal.Warp(
            target, subset, format="VRT", outputBounds=(xmin, ymin, xmax, ymax),
            width=change_info.width, height=change_info.height, dstSRS=change_info.crs_wkt,
            resampleAlg="near", dstAlpha=True,
        )
    except RuntimeError as exc:
        for vsi in (target, subset_path):
            gdal.Unlink(vsi)
        raise InputError(f"Cannot resample the reference {path} onto the change raster's grid ({exc}).") from exc
    return warped, 1, [subset, target, subset_path]


def compare_rasters(
    change_path: str,
    reference_path: str,
    change_band: int = 1,
    reference_band: int = 1,
    progress: Callable[[float], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> ConfusionMatrix:
    """Confusion matrix of a change raster (1 = change, 0 = none) against a reference.

    Reference values 0/1 or 0/255 (any nonzero value is change). Pixels that are no data in
    either raster (band no-data value, or outside the reference) are not counted. The reference
    is resampled (nearest) onto the change raster's grid when the grids differ.
    Raises InputError for unreadable or non-overlapping rasters, CancelledError when cancelled.
    """
    change = open_raster(change_path)
    reference = open_raster(reference_path)
    for ds, band, name in ((change, change_band, change_path), (reference, reference_band, reference_path)):
        if not 1 <= band <= ds.RasterCount:
            raise InputError(f"Band {band} does not exist in {name}, which has {ds.RasterCount} band(s).")
    ref_ds, ref_band_index, keep = _reference_on_grid(reference, change, reference_band, reference_path)
    try:
        c_band, r_band = change.GetRasterBand(change_band), ref_ds.GetRasterBand(ref_band_index)
        alpha = ref_ds.GetRasterBand(ref_ds.RasterCount) if keep else None
        c_nodata, r_nodata = c_band.GetNoDataValue(), r_band.GetNoDataValue()
        width, height = change.RasterXSize, change.RasterYSize
        matrix = ConfusionMatrix()
        for y in range(0, height, ROWS_PER_BLOCK):
            if is_cancelled is not None and is_cancelled():
                raise CancelledError("Evaluation cancelled.")
            rows = min(ROWS_PER_BLOCK, height - y)
            pred = c_band.ReadAsArray(0, y, width, rows)
            label = r_band.ReadAsArray(0, y, width, rows)
            valid = np.ones(pred.shape, dtype=bool)
            if c_nodata is not None:
                valid &= pred != c_nodata
            if r_nodata is not None:
                valid &= label != r_nodata
            if alpha is not None:
                valid &= alpha.ReadAsArray(0, y, width, rows) > 0
            matrix.update(pred == 1, label != 0, valid)
            if progress is not None:
                progress(100.0 * (y + rows) / height)
        return matrix
    finally:
        c_band = r_band = alpha = ref_ds = None  # noqa: F841 (GDAL handles go before their files)
        paths = [k for k in keep if isinstance(k, str)]
        keep.clear()
        for vsi in paths:
            gdal.Unlink(vsi)


def html_report(matrix: ConfusionMatrix, change: str, reference: str) -> str:
    """A small self-contained HTML page with the metrics and the confusion matrix."""
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{getattr(matrix, attr):.4f}</td></tr>" for attr, label in METRICS.values()
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Change detection accuracy</title>"
        "<style>body{font-family:sans-serif} td,th{padding:2px 10px;border-bottom:1px solid #ddd}"
        "td:last-child{text-align:right}</style></head><body>"
        "<h2>Change detection accuracy</h2>"
        f"<p>Change raster: {html.escape(change)}<br>Reference: {html.escape(reference)}</p>"
        f"<table><tr><th>Metric (change class)</th><th>Value</th></tr>{rows}</table>"
        "<h3>Confusion matrix (pixels)</h3><table>"
        "<tr><th></th><th>reference: change</th><th>reference: no change</th></tr>"
        f"<tr><th>detected: change</th><td>{matrix.tp}</td><td>{matrix.fp}</td></tr>"
        f"<tr><th>detected: no change</th><td>{matrix.fn}</td><td>{matrix.tn}</td></tr></table>"
        f"<p>{matrix.total} pixels compared; no-data pixels of either raster are not counted. "
        "mF1/mIoU average the change and no-change classes.</p></body></html>"
    )


class EvaluateChangesAlgorithm(SamCdAlgorithm):
    """Score a change raster against a reference raster."""

    CHANGE = "CHANGE"
    CHANGE_BAND = "CHANGE_BAND"
    REFERENCE = "REFERENCE"
    REFERENCE_BAND = "REFERENCE_BAND"
    OUTPUT_HTML_FILE = "OUTPUT_HTML_FILE"

    NAME = "evaluate"
    DISPLAY_NAME = "Evaluate a change map"
    GROUP = "Change detection"
    GROUP_ID = "changedetection"
    TAGS = "accuracy,evaluation,f1,iou,kappa,precision,recall,reference,ground truth,change"
    NEEDS_ENGINE = False  # numpy + GDAL only

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "<p>Compares a <b>change raster</b> (1 = change, 0 = no change, e.g. the output of "
            "<i>Detect changes</i>) with a <b>reference raster</b> (ground truth: 0 = no change, "
            "any other value such as 1 or 255 = change).</p>"
            "<p>Pixels that are no data in either raster are not counted. When the reference is on "
            "another grid it is resampled onto the change raster's grid (nearest neighbour); "
            "pixels outside it are not counted.</p>"
            "<p>Outputs, for the change class: precision, recall, F1, IoU, overall accuracy and "
            "Cohen's kappa; mF1 and mIoU average the change and no-change classes (as some papers "
            "report); the pixel counts TP/FP/FN/TN; and an HTML report.</p>"
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802, ARG002
        # Band parameters are optional so that QGIS 3.22 accepts a run that leaves them out (band 1).
        self.addParameter(QgsProcessingParameterRasterLayer(self.CHANGE, self.tr("Change raster (1 = change)")))
        self.addParameter(QgsProcessingParameterBand(self.CHANGE_BAND, self.tr("Change band"), 1, self.CHANGE, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr("Reference raster (ground truth)")))
        self.addParameter(QgsProcessingParameterBand(self.REFERENCE_BAND, self.tr("Reference band"), 1, self.REFERENCE,
                                                     optional=True))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_HTML_FILE, self.tr("Accuracy report"), self.tr("HTML files (*.html)"), optional=True
            )
        )
        for name, (_attr, label) in METRICS.items():
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))
        for name in COUNTS:
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(f"{name} pixels")))

    def _path(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(f"{name}: '{layer.name()}' is not a file-based raster; save it as a GeoTIFF first.")
        return layer.source()

    def processAlgorithm(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        change = self._path(parameters, self.CHANGE, context)
        reference = self._path(parameters, self.REFERENCE, context)
        try:
            matrix = compare_rasters(
                change, reference,
                self.parameterAsInt(parameters, self.CHANGE_BAND, context) or 1,
                self.parameterAsInt(parameters, self.REFERENCE_BAND, context) or 1,
                progress=feedback.setProgress, is_cancelled=feedback.isCanceled,
            )
        except CancelledError as exc:
            raise QgsProcessingException("Cancelled by the user.") from exc
        except InputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        results: dict[str, Any] = {name: float(getattr(matrix, attr)) for name, (attr, _label) in METRICS.items()}
        results.update({name: int(getattr(matrix, name.lower())) for name in COUNTS})
        for name, (_attr, label) in METRICS.items():
            feedback.pushInfo(f"{label}: {results[name]:.4f}")
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML_FILE, context)
        if report:
            Path(report).write_text(html_report(matrix, change, reference), encoding="utf-8")
            results[self.OUTPUT_HTML_FILE] = report
        return results
