"""Processing provider ``sam_cd`` ("SAM change detection").

Registers its algorithms whether or not torch/ultralytics are installed; algorithms report
missing dependencies through ``canExecute()`` and a clear ``QgsProcessingException``.
Importing this module must stay light (no torch). ``load()`` also adds the provider's options
page (checkpoint folder, default device; see :mod:`.options`).
"""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..engine.service import set_transport_setting
from ..paths import resource_path
from .detect_changes import DetectChangesAlgorithm
from .evaluate_changes import EvaluateChangesAlgorithm
from .options import engine_transport, register_options, unregister_options
from .train_from_layers import TrainFromLayersAlgorithm
from .train_model import TrainModelAlgorithm

__all__ = ["PROVIDER_ID", "SamCdProvider"]

PROVIDER_ID = "sam_cd"


class SamCdProvider(QgsProcessingProvider):
    """Provider holding the SAM change-detection algorithms."""

    def __init__(self) -> None:
        super().__init__()
        self._options: list[str] = []

    def load(self) -> bool:
        """Register the options page, then the algorithms."""
        self._options = register_options(self.name())
        set_transport_setting(engine_transport)  # env SAM_CD_ENGINE still wins
        return super().load()

    def unload(self) -> None:
        set_transport_setting(None)
        unregister_options(self._options)
        self._options = []
        super().unload()

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
        for algorithm in (DetectChangesAlgorithm(), EvaluateChangesAlgorithm(), TrainModelAlgorithm(),
                          TrainFromLayersAlgorithm()):
            self.addAlgorithm(algorithm)

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"
