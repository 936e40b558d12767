"""What every sam-cd Processing algorithm shares: identity, translation, icon, help link.

Subclasses set ``NAME``, ``DISPLAY_NAME``, ``GROUP``, ``GROUP_ID`` and ``TAGS`` (comma-separated)
and implement parameters, help and ``processAlgorithm``.
"""
from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..dependencies import install_hint, missing_dependencies
from ..paths import resource_path

HELP_URL = "https://github.com/sam-cd/sam-cd#readme"


class SamCdAlgorithm(QgsProcessingAlgorithm):
    """Base of the sam-cd algorithms (identity from class attributes)."""

    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    TAGS = ""
    #: Whether the algorithm runs the torch engine (then it cannot execute without torch/ultralytics).
    NEEDS_ENGINE = True

    def tr(self, text: str) -> str:
        return QCoreApplication.translate(type(self).__name__, text)

    def createInstance(self) -> "SamCdAlgorithm":  # noqa: N802
        return type(self)()

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        return self.tr(self.GROUP)

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP_ID

    def tags(self) -> list[str]:
        return self.tr(self.TAGS).split(",")

    def icon(self) -> QIcon:
        return QIcon(str(resource_path("icon.png")))

    def helpUrl(self) -> str:  # noqa: N802
        return HELP_URL

    def canExecute(self) -> tuple[bool, str]:  # noqa: N802
        """False with an install hint when the engine's packages (torch, ultralytics) are missing."""
        missing = missing_dependencies() if self.NEEDS_ENGINE else []
        return (False, install_hint(missing)) if missing else (True, "")
