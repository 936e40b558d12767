"""Processing provider ``sam_cd`` ("SAM change detection").

Registers its algorithms whether or not torch/ultralytics are installed; algorithms report
missing dependencies through ``canExecute()`` and a clear ``QgsProcessingException``.
Importing this module must stay light (no torch).
"""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..paths import resource_path
from .detect_changes import DetectChangesAlgorithm

__all__ = ["PROVIDER_ID", "SamCdProvider"]

PROVIDER_ID = "sam_cd"


class SamCdProvider(QgsProcessingProvider):
    """Provider holding the SAM change-detection algorithms."""

    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return "SAM change detection"

    def longName(self) -> str:  # noqa: N802
        return "SAM change detection (sam-cd)"

    def icon(self) -> QIcon:
        return QIcon(str(resource_path("icon.png")))

    def svgIconPath(self) -> str:  # noqa: N802
        svg = resource_path("icon.svg")
        return str(svg) if svg.is_file() else super().svgIconPath()

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(DetectChangesAlgorithm())

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"
