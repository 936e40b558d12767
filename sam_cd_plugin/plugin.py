"""QGIS plugin entry object: registers the Processing provider and the GUI entry points.

``initProcessing`` is all that ``qgis_process`` calls; the desktop calls ``initGui``, which
registers the provider too. ``unload`` removes everything this object added.
"""

from __future__ import annotations

import logging

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

try:  # Qt6 moved QAction to QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5
    from qgis.PyQt.QtWidgets import QAction

from .paths import resource_path
from .processing.provider import SamCdProvider

__all__ = ["ALGORITHM_ID", "MENU_NAME", "SamCdPlugin"]

LOGGER = logging.getLogger(__name__)

ALGORITHM_ID = "sam_cd:detectchanges"
MENU_NAME = "SAM Change Detection"
ACTION_OBJECT_NAME = "samCdDetectChangesAction"


def tr(text: str) -> str:
    return QCoreApplication.translate("SamCdPlugin", text)


class SamCdPlugin:
    """Plugin object returned by ``classFactory``."""

    def __init__(self, iface) -> None:  # type: ignore[no-untyped-def]
        self.iface = iface
        self.provider: SamCdProvider | None = None
        self.action: QAction | None = None
        self._dialog = None

    # -- Processing -----------------------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802
        """Register the ``sam_cd`` provider (once)."""
        if self.provider is not None:
            return
        provider = SamCdProvider()
        if QgsApplication.processingRegistry().addProvider(provider):
            self.provider = provider
        else:
            LOGGER.error("Could not register the Processing provider '%s' (already registered?)", provider.id())

    # -- GUI ------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802
        """Register the provider and add a Plugins-menu entry and toolbar button."""
        self.initProcessing()
        action = QAction(QIcon(str(resource_path("icon.png"))), tr("Detect changes…"), self.iface.mainWindow())
        action.setObjectName(ACTION_OBJECT_NAME)
        action.setToolTip(tr("Detect changes between a before and an after raster (SAM change detection)"))
        action.triggered.connect(self.open_detect_dialog)
        self.iface.addPluginToMenu(MENU_NAME, action)
        self.iface.addToolBarIcon(action)
        self.action = action

    def open_detect_dialog(self) -> None:
        """Open (or raise) the Processing dialog of ``sam_cd:detectchanges``.

        Slot of a QAction: errors are shown in the message bar, never raised into Qt.
        """
        if self._dialog is not None and self._dialog.isVisible():
            self._dialog.raise_()
            self._dialog.activateWindow()
            return
        try:
            import processing  # QGIS's Processing plugin; imported late, it needs a running QGIS

            dialog = processing.createAlgorithmDialog(ALGORITHM_ID, {})
        except Exception as exc:  # noqa: BLE001 (a slot must not raise into Qt)
            LOGGER.exception("Could not open the dialog of %s", ALGORITHM_ID)
            self.iface.messageBar().pushCritical(MENU_NAME, tr("Could not open the dialog: {}").format(exc))
            return
        if dialog is None:
            self.iface.messageBar().pushCritical(
                MENU_NAME, tr("The algorithm {} is not available; is the Processing plugin enabled?").format(ALGORITHM_ID)
            )
            return
        self._close_dialog()
        self._dialog = dialog
        dialog.show()

    def _close_dialog(self) -> None:
        if self._dialog is not None:
            self._dialog.close()
            self._dialog.deleteLater()
            self._dialog = None

    def unload(self) -> None:
        """Remove the menu entry, toolbar button, open dialog and the provider."""
        self._close_dialog()
        if self.action is not None:
            self.iface.removePluginMenu(MENU_NAME, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.triggered.disconnect(self.open_detect_dialog)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
