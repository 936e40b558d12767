"""QGIS plugin entry object: registers the Processing provider and the GUI entry points.

``initProcessing`` is all that ``qgis_process`` calls; the desktop calls ``initGui``, which
registers the provider too and adds two actions to the Plugins menu and the toolbar: the dock
toggle (plugin icon) and *Detect changes…* (the Processing dialog). ``unload`` removes
everything this object added, including the dock and its running task, and stops the engine
worker. The engine's runtime lives in ``<QGIS profile>/sam_cd/runtime`` (outside the plugin
folder, which plugin updates replace).
"""

from __future__ import annotations

import logging

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon

try:  # Qt6 moved QAction to QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5
    from qgis.PyQt.QtWidgets import QAction

from . import runtime
from .engine.service import shutdown_engine
from .gui.settings import user_data_dir
from .paths import resource_path
from .processing.provider import SamCdProvider

__all__ = ["ALGORITHM_ID", "MENU_NAME", "SamCdPlugin"]

LOGGER = logging.getLogger(__name__)

ALGORITHM_ID = "sam_cd:detectchanges"
MENU_NAME = "SAM Change Detection"
ACTION_OBJECT_NAME = "samCdDetectChangesAction"
DOCK_ACTION_OBJECT_NAME = "samCdDockAction"


def tr(text: str) -> str:
    return QCoreApplication.translate("SamCdPlugin", text)


class SamCdPlugin:
    """Plugin object returned by ``classFactory``."""

    def __init__(self, iface) -> None:  # type: ignore[no-untyped-def]
        self.iface = iface
        self.provider: SamCdProvider | None = None
        self.action: QAction | None = None
        self.dock_action: QAction | None = None
        self.dock = None  # SamCdDockWidget, built the first time it is shown
        self._dialog = None

    # -- Processing -----------------------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802
        """Point the runtime at the QGIS profile and register the ``sam_cd`` provider (once)."""
        runtime.set_runtime_root(user_data_dir() / "runtime")
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

        dock_action = QAction(QIcon(str(resource_path("icon.png"))), tr("SAM change detection panel"),
                              self.iface.mainWindow())
        dock_action.setObjectName(DOCK_ACTION_OBJECT_NAME)
        dock_action.setCheckable(True)
        dock_action.setToolTip(tr("Show or hide the SAM change detection panel (one-click detection)"))
        dock_action.toggled.connect(self.set_dock_visible)
        self.iface.addPluginToMenu(MENU_NAME, dock_action)
        self.iface.addToolBarIcon(dock_action)
        self.dock_action = dock_action

    def set_dock_visible(self, visible: bool) -> None:
        """Show (building it the first time) or hide the dock; slot of the toggle action."""
        if not visible:
            if self.dock is not None:
                self.dock.hide()
            return
        if self.dock is None:
            try:
                from .gui.dock_widget import SamCdDockWidget

                self.dock = SamCdDockWidget(self.iface, self.iface.mainWindow())
            except Exception as exc:  # noqa: BLE001 (a slot must not raise into Qt)
                LOGGER.exception("Could not build the SAM change detection panel")
                self.iface.messageBar().pushCritical(MENU_NAME, tr("Could not open the panel: {}").format(exc))
                if self.dock_action is not None:
                    self.dock_action.setChecked(False)
                return
            self.dock.visibilityChanged.connect(self._dock_visibility_changed)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.show()
        self.dock.raise_()

    def _dock_visibility_changed(self, visible: bool) -> None:
        """Keep the toggle in step when the user closes the dock with its own X."""
        if self.dock_action is not None and self.dock_action.isChecked() != visible:
            self.dock_action.blockSignals(True)
            self.dock_action.setChecked(visible)
            self.dock_action.blockSignals(False)

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

    def _remove_dock(self) -> None:
        if self.dock is None:
            return
        self.dock.shutdown()  # cancels its running task and download, closes its dialog
        self.dock.visibilityChanged.disconnect(self._dock_visibility_changed)
        self.iface.removeDockWidget(self.dock)
        self.dock.hide()
        self.dock.setParent(None)
        self.dock.deleteLater()
        self.dock = None

    def _remove_action(self, action: QAction | None, slot) -> None:  # type: ignore[no-untyped-def]
        if action is None:
            return
        self.iface.removePluginMenu(MENU_NAME, action)
        self.iface.removeToolBarIcon(action)
        (action.toggled if action.isCheckable() else action.triggered).disconnect(slot)
        action.deleteLater()

    def unload(self) -> None:
        """Remove the dock (cancelling its task), menu entries, toolbar buttons, dialog and provider;
        stop the engine worker."""
        self._close_dialog()
        self._remove_dock()
        self._remove_action(self.action, self.open_detect_dialog)
        self._remove_action(self.dock_action, self.set_dock_visible)
        self.action = None
        self.dock_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        shutdown_engine()
