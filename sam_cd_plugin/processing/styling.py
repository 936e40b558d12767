"""Styling of the algorithm's outputs: .qml resources, sidecar files, layer post-processor.

Two routes make sure an output looks right wherever it is opened:

* a sidecar ``<output>.qml`` next to the GeoTIFF, which QGIS loads as the layer's default
  style (also for outputs of batch runs, models and ``qgis_process``);
* a ``QgsProcessingLayerPostProcessorInterface`` that applies the bundled style when
  Processing loads the output into a project.

Nothing here touches ``iface``; it runs fine headless and in background threads.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from qgis.core import (
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
)
from qgis.PyQt import sip

from ..paths import resource_path

__all__ = [
    "CHANGE_MASK_STYLE",
    "PROBABILITY_STYLE",
    "StyleLayerPostProcessor",
    "sidecar_style_path",
    "write_sidecar_style",
]

LOGGER = logging.getLogger(__name__)

CHANGE_MASK_STYLE = "change_mask.qml"
PROBABILITY_STYLE = "change_probability.qml"


def style_path(name: str) -> Path:
    """Path of a bundled style in ``resources/styles``."""
    return resource_path("styles", name)


def apply_style(layer: QgsMapLayer, qml_path: str | Path) -> str | None:
    """Load the style at ``qml_path`` into ``layer``; None on success, else why it failed."""
    message, ok = layer.loadNamedStyle(str(qml_path))
    if ok:
        layer.triggerRepaint()
        return None
    return f"Could not apply the style {qml_path} to {layer.name()}: {message}"


def sidecar_style_path(raster_path: str | Path) -> Path:
    """The ``.qml`` QGIS loads by default for ``raster_path`` (same folder, same base name)."""
    return Path(raster_path).with_suffix(".qml")


def write_sidecar_style(raster_path: str | Path, style_name: str) -> Path:
    """Copy the bundled style ``style_name`` next to ``raster_path``; returns the .qml path.

    Raises OSError if the style cannot be copied (missing resource, read-only folder).
    """
    target = sidecar_style_path(raster_path)
    shutil.copyfile(style_path(style_name), target)
    return target


class StyleLayerPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies one bundled .qml style to a layer that Processing loads into a project.

    Build instances with ``create``: QGIS takes ownership of a post-processor handed to
    ``LayerDetails.setPostProcessor`` and deletes it with the processing context, while
    PyQGIS would otherwise garbage-collect the Python half as soon as the caller drops its
    reference (the well-known sip pitfall). ``create`` therefore keeps a Python reference to
    every instance until QGIS has deleted its C++ side.
    """

    _alive: list[StyleLayerPostProcessor] = []
    _lock = threading.Lock()

    def __init__(self, qml_path: str | Path) -> None:
        super().__init__()
        self.qml_path = str(qml_path)

    @classmethod
    def create(cls, style_name: str) -> StyleLayerPostProcessor:
        """A new post-processor applying ``resources/styles/<style_name>``, kept alive for QGIS."""
        instance = cls(style_path(style_name))
        with cls._lock:
            cls._alive = [p for p in cls._alive if not sip.isdeleted(p)]
            cls._alive.append(instance)
        return instance

    def postProcessLayer(  # noqa: N802 (QGIS API)
        self,
        layer: QgsMapLayer,
        context: QgsProcessingContext,  # noqa: ARG002
        feedback: QgsProcessingFeedback,
    ) -> None:
        """Load the style into ``layer``; a failure is reported, never raised."""
        if layer is None or not layer.isValid():
            return
        problem = apply_style(layer, self.qml_path)
        if problem:
            LOGGER.warning(problem)
            if feedback is not None:
                feedback.pushWarning(problem)
