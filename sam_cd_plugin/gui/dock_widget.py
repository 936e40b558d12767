"""The sam-cd dock: pick two rasters and a δ-trained checkpoint, click Detect.

Opening it never blocks QGIS: what needs the engine (checkpoint metadata, weights checks, the
device line; each may import torch or read a large file) runs in background tasks, and the
widgets say "checking…" until the answers arrive. A banner offers to install the engine's
runtime while it is missing. Detect builds the parameters of ``sam_cd:detectchanges`` and runs that algorithm as a
background task (:class:`~.detection_task.AlgorithmRun`), so a dock run is exactly a toolbox
run. "Advanced…" opens the algorithm's Processing dialog prefilled with the same parameters;
"Train on this area…" opens ``sam_cd:trainfromlayers`` prefilled with the dock's layers, the selected
checkpoint as the start and an output in the checkpoint folder, and refreshes the table when it ends.
Every problem ends up in the message bar; nothing here raises into Qt.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsDoubleSpinBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QItemSelectionModel, Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import SamCdError
from ..core.prompts import format_prompts
from ..engine.service import get_engine
from .background import BackgroundCall, run_in_background
from .checkpoint_table import (
    COLUMNS,
    ENTRY_ROLE,
    CheckpointEntry,
    CheckpointTableModel,
    bundled_checkpoint_folder,
    checkpoint_proxy,
    read_entries,
    scan_checkpoints,
)
from .detection_task import AlgorithmRun, add_outputs_to_project
from .diagnostics_dialog import DiagnosticsDialog
from .prompts_editor import PromptsEditor
from .runtime_banner import RuntimeBanner
from .settings import DEVICE_CHOICES, SamCdSettings
from .weights_panel import WeightsPanel

__all__ = ["DETECT_ALGORITHM", "TRAIN_AREA_ALGORITHM", "DOCK_OBJECT_NAME", "SamCdDockWidget", "describe_device_choice"]

LOGGER = logging.getLogger(__name__)

DETECT_ALGORITHM = "sam_cd:detectchanges"
TRAIN_AREA_ALGORITHM = "sam_cd:trainfromlayers"
DOCK_OBJECT_NAME = "SamCdDock"
TITLE = "SAM change detection"
PROMPTS_DISABLED_TIP = (
    "Category prompts are used only by SAM-CD checkpoints (method 'sam-cd'); the selected "
    "checkpoint's method ({method}) finds changes of any kind and ignores prompts."
)


#: Raster-only filter of layer combo boxes (``Qgis.LayerFilter`` since QGIS 3.34; the old enum is
#: deprecated there and gone in QGIS 4).
RASTER_FILTER = (Qgis.LayerFilter.RasterLayer if hasattr(Qgis, "LayerFilter")
                 else QgsMapLayerProxyModel.Filter.RasterLayer)


def describe_device_choice(choice: str) -> tuple[str, bool]:
    """``(text, is_warning)`` for the device line: GPU name or "CPU (N threads)", from the engine.

    Starts the engine (torch): call it from a background task.
    """
    try:
        text = get_engine().describe_device(choice)
    except (SamCdError, ImportError) as exc:
        return f"The detection engine cannot run: {exc}", True
    return text, choice == "cuda" and not text.startswith("CUDA")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "layer"


class SamCdDockWidget(QgsDockWidget):
    """The dock panel. ``iface`` is used for the message bar only."""

    def __init__(self, iface, parent: QWidget | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(TITLE, parent)
        self.setObjectName(DOCK_OBJECT_NAME)
        self.iface = iface
        self.settings = SamCdSettings()
        self.run: AlgorithmRun | None = None
        self.advanced_dialog = None
        self._user_picked_layers = False
        self._setting_defaults = False
        self._group_name = ""
        self.diagnostics_dialog: DiagnosticsDialog | None = None
        self._table_task: BackgroundCall | None = None
        self._device_task: BackgroundCall | None = None
        self._detect_when_read = False  # Detect was clicked while the selected row said "checking…"
        self._picked = ""  # checkpoint picked while the table was being filled in
        self._refilling = False
        self._build()
        self._connect()
        self.refresh_checkpoints()
        self._default_layers()
        self.update_device_line()

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)

        form = QFormLayout()
        self.before_combo = self._layer_combo("beforeLayer")
        self.after_combo = self._layer_combo("afterLayer")
        form.addRow("Before", self.before_combo)
        form.addRow("After", self.after_combo)
        layout.addLayout(form)

        checkpoints = QgsCollapsibleGroupBox("Checkpoint (δ-trained models)", body)
        box = QVBoxLayout(checkpoints)
        self.checkpoint_model = CheckpointTableModel(parent=self)
        self.checkpoint_proxy = checkpoint_proxy(self.checkpoint_model, self)
        self.checkpoint_view = QTableView(checkpoints)
        self.checkpoint_view.setObjectName("checkpointTable")
        self.checkpoint_view.setModel(self.checkpoint_proxy)
        self.checkpoint_view.setSortingEnabled(True)
        self.checkpoint_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.checkpoint_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.checkpoint_view.verticalHeader().setVisible(False)
        self.checkpoint_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.checkpoint_view.horizontalHeader().setStretchLastSection(True)
        self.checkpoint_view.setMinimumHeight(110)
        box.addWidget(self.checkpoint_view)
        row = QHBoxLayout()
        self.folder_widget = QgsFileWidget(checkpoints)
        self.folder_widget.setObjectName("checkpointFolder")
        self.folder_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder_widget.setDialogTitle("Folder with your checkpoints (*.pt)")
        self.folder_widget.setToolTip("Your checkpoint folder (also the Processing option 'Checkpoint folder')")
        self.folder_widget.setFilePath(str(self.settings.checkpoint_folder()))
        self.add_checkpoint_button = QPushButton("Add checkpoint…", checkpoints)
        self.add_checkpoint_button.setObjectName("addCheckpoint")
        row.addWidget(QLabel("Folder", checkpoints))
        row.addWidget(self.folder_widget, 1)
        row.addWidget(self.add_checkpoint_button)
        box.addLayout(row)
        layout.addWidget(checkpoints)

        self.prompts_box = QgsCollapsibleGroupBox("Category prompts", body)
        prompts_layout = QVBoxLayout(self.prompts_box)
        self.prompts_editor = PromptsEditor(self.settings.prompts(), self.prompts_box)
        prompts_layout.addWidget(self.prompts_editor)
        layout.addWidget(self.prompts_box)

        weights_box = QgsCollapsibleGroupBox("Encoder weights", body)
        weights_box.setObjectName("weightsBox")
        weights_layout = QVBoxLayout(weights_box)
        self.weights_panel = WeightsPanel(self.settings, weights_box)
        weights_layout.addWidget(self.weights_panel)
        note = QLabel("A trained checkpoint already holds its encoder weights; these files are for "
                      "training (sam_cd:train) and CLIP for SAM-CD prompts.", weights_box)
        note.setWordWrap(True)
        weights_layout.addWidget(note)
        weights_box.setCollapsed(True)
        layout.addWidget(weights_box)

        run_form = QFormLayout()
        self.device_combo = QComboBox(body)
        self.device_combo.setObjectName("device")
        self.device_combo.addItems(list(DEVICE_CHOICES))
        self.device_combo.setCurrentText(self.settings.device())
        self.device_label = QLabel(body)
        self.device_label.setObjectName("deviceLine")
        self.device_label.setWordWrap(True)
        self.threshold_spin = QgsDoubleSpinBox(body)
        self.threshold_spin.setObjectName("threshold")
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setClearValue(0.5)
        self.threshold_spin.setValue(self.settings.threshold())
        self.threshold_spin.setToolTip("Change probability above which a pixel counts as change (lower finds more)")
        self.polygons_check = QCheckBox("Also write change polygons", body)
        self.polygons_check.setObjectName("polygons")
        self.output_widget = QgsFileWidget(body)
        self.output_widget.setObjectName("outputFolder")
        self.output_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.output_widget.setFilePath(self.settings.output_folder())
        self.output_widget.lineEdit().setPlaceholderText("temporary folder")
        self.diagnostics_button = QPushButton("Diagnostics…", body)
        self.diagnostics_button.setObjectName("diagnostics")
        self.diagnostics_button.setToolTip("A report of QGIS, Python, GPU and the detection engine, to copy into a bug report")
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo, 1)
        device_row.addWidget(self.diagnostics_button)
        run_form.addRow("Device", device_row)
        run_form.addRow("", self.device_label)
        run_form.addRow("Threshold", self.threshold_spin)
        run_form.addRow("Output folder", self.output_widget)
        run_form.addRow("", self.polygons_check)
        layout.addLayout(run_form)

        buttons = QHBoxLayout()
        self.advanced_button = QPushButton("Advanced…", body)
        self.advanced_button.setObjectName("advanced")
        self.advanced_button.setToolTip("Open the Processing dialog of Detect changes with these settings")
        self.detect_button = QPushButton("Detect", body)
        self.detect_button.setObjectName("detect")
        self.detect_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setObjectName("cancel")
        self.cancel_button.setEnabled(False)
        self.train_button = QPushButton("Train on this area…", body)
        self.train_button.setObjectName("trainArea")
        self.train_button.setToolTip("Fine-tune the selected checkpoint on change polygons you digitised over "
                                     "these two rasters (opens the Processing dialog)")
        buttons.addWidget(self.advanced_button)
        buttons.addWidget(self.train_button)
        buttons.addStretch(1)
        buttons.addWidget(self.detect_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress_bar = QProgressBar(body)
        self.progress_bar.setObjectName("progress")
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(False)
        layout.addWidget(self.progress_bar)
        layout.addStretch(1)

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        outer = QWidget(self)  # the banner stays above the scrolled part, as wide as the dock
        outer_layout = QVBoxLayout(outer)
        outer_layout.setContentsMargins(0, 0, 0, 0)
        self.banner = RuntimeBanner(outer)
        outer_layout.addWidget(self.banner)
        outer_layout.addWidget(scroll, 1)
        self.setWidget(outer)
        self._update_polygons_option()

    def _layer_combo(self, name: str) -> QgsMapLayerComboBox:
        combo = QgsMapLayerComboBox(self)
        combo.setObjectName(name)
        combo.setFilters(RASTER_FILTER)
        combo.setAllowEmptyLayer(True)
        return combo

    def _connect(self) -> None:
        self.before_combo.layerChanged.connect(self._layer_picked)
        self.after_combo.layerChanged.connect(self._layer_picked)
        QgsProject.instance().legendLayersAdded.connect(self._layers_added)  # after the tree got them
        self.checkpoint_view.selectionModel().selectionChanged.connect(self._checkpoint_selected)
        self.folder_widget.fileChanged.connect(self._folder_changed)
        self.add_checkpoint_button.clicked.connect(self._ask_checkpoint_file)
        self.prompts_editor.promptsChanged.connect(self.settings.set_prompts)
        self.weights_panel.message.connect(self._weights_message)
        self.device_combo.currentTextChanged.connect(self._device_changed)
        self.threshold_spin.valueChanged.connect(self.settings.set_threshold)
        self.output_widget.fileChanged.connect(self.settings.set_output_folder)
        self.polygons_check.toggled.connect(self.settings.set_polygons)
        self.detect_button.clicked.connect(self.detect)
        self.cancel_button.clicked.connect(self.cancel)
        self.advanced_button.clicked.connect(self.open_advanced_dialog)
        self.train_button.clicked.connect(self.open_train_dialog)
        self.diagnostics_button.clicked.connect(self.open_diagnostics)
        self.banner.diagnosticsRequested.connect(self.open_diagnostics)
        self.banner.message.connect(lambda text, level: self._message(text, level, 0 if level == Qgis.MessageLevel.Critical else 10))
        self.banner.ready.connect(self.recheck)

    # -- layers ----------------------------------------------------------------------------------
    def _default_layers(self) -> None:
        """Newest raster → after, the one before it → before (newest = top of the layer tree)."""
        rasters = [
            node.layer() for node in QgsProject.instance().layerTreeRoot().findLayers()
            if isinstance(node.layer(), QgsRasterLayer)
        ]
        self._setting_defaults = True
        if len(rasters) >= 2:
            self.after_combo.setLayer(rasters[0])
            self.before_combo.setLayer(rasters[1])
        elif rasters:
            self.before_combo.setLayer(rasters[0])
        self._setting_defaults = False

    def _layer_picked(self, _layer) -> None:  # type: ignore[no-untyped-def]
        if not self._setting_defaults:
            self._user_picked_layers = True

    def _layers_added(self, _layers) -> None:  # type: ignore[no-untyped-def]
        if not self._user_picked_layers:
            self._default_layers()

    # -- checkpoints -----------------------------------------------------------------------------
    def refresh_checkpoints(self) -> None:
        """Rebuild the table from the bundled folder, the user folder and added files; the rows say
        "checking…" until their metadata has been read in the background."""
        folders = [(bundled_checkpoint_folder(), "bundled"), (self.settings.checkpoint_folder(), "folder")]
        added = [Path(p) for p in self.settings.added_checkpoints()]
        entries = scan_checkpoints(folders, added)
        if self._table_task is not None:
            self._table_task.forget()
        self._show_entries(entries)
        self._table_task = run_in_background("sam-cd: reading checkpoints", lambda _task: read_entries(entries),
                                             self._entries_read) if any(e.checking for e in entries) else None

    def _entries_read(self, entries: list[CheckpointEntry] | None, error: BaseException | None) -> None:
        pending = self.checkpoint_model.entries()
        self._table_task = None
        if error is not None or entries is None:
            LOGGER.warning("Reading the checkpoints failed: %s", error)
            entries = [replace(e, checking=False, error=f"cannot read checkpoints: {error}") if e.checking else e
                       for e in pending]
        self._show_entries(entries)
        if self._detect_when_read:
            self._detect_when_read = False
            self.detect()

    def _show_entries(self, entries: list[CheckpointEntry]) -> None:
        """Put ``entries`` in the table and select the row picked since (else the remembered, else
        the first usable one)."""
        self._refilling = True
        try:
            self.checkpoint_model.set_entries(entries)
            self.checkpoint_view.sortByColumn(COLUMNS.index("F1"), Qt.SortOrder.DescendingOrder)  # best F1 first
            candidates = (self._picked, self.settings.selected_checkpoint(), self._first_usable())
            if not any(candidate and self.select_checkpoint(candidate) for candidate in candidates):
                self._checkpoint_selected()
        finally:
            self._refilling = False

    def _first_usable(self) -> str:
        """The top usable row as sorted (best F1), else the top one still being read or waiting for
        the engine (so that Detect has a checkpoint, or says what it needs)."""
        proxy = self.checkpoint_proxy
        entries = [proxy.index(row, 0).data(ENTRY_ROLE) for row in range(proxy.rowCount())]
        usable = [e for e in entries if e.ok] or [e for e in entries if e.checking or e.needs_engine]
        return str(usable[0].path) if usable else ""

    def select_checkpoint(self, path: str | Path) -> bool:
        """Select the row of ``path``; False if it is not in the table."""
        row = self.checkpoint_model.row_of(path) if path else -1
        if row < 0:
            self._checkpoint_selected()
            return False
        index = self.checkpoint_proxy.mapFromSource(self.checkpoint_model.index(row, 0))
        self.checkpoint_view.selectionModel().select(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )
        self.checkpoint_view.scrollTo(index)
        return True

    def selected_entry(self) -> CheckpointEntry | None:
        rows = self.checkpoint_view.selectionModel().selectedRows()
        return rows[0].data(ENTRY_ROLE) if rows else None

    def _checkpoint_selected(self, *_args) -> None:  # type: ignore[no-untyped-def]
        entry = self.selected_entry()
        if not self._refilling:  # the user's (or a caller's) pick, kept when the rows are filled in
            self._picked = str(entry.path) if entry is not None else ""
        if entry is not None and entry.ok:
            self.settings.set_selected_checkpoint(entry.path)
        if entry is None or not entry.ok:
            self.prompts_editor.set_usable(False, "Select a usable checkpoint first.")
        elif entry.uses_prompts:
            self.prompts_editor.set_usable(True, "")
            if entry.prompts and not self.prompts_editor.prompts():
                self.prompts_editor.set_prompts(list(entry.prompts))
        else:
            self.prompts_editor.set_usable(False, PROMPTS_DISABLED_TIP.format(method=entry.method))

    def _folder_changed(self, folder: str) -> None:
        self.settings.set_checkpoint_folder(folder)
        self.refresh_checkpoints()

    def add_checkpoint(self, path: str | Path) -> None:
        """Add one checkpoint file to the table (remembered) and select it."""
        added = self.settings.added_checkpoints()
        self.settings.set_added_checkpoints([*added, str(path)])
        self.refresh_checkpoints()
        self.select_checkpoint(path)

    def _ask_checkpoint_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a sam-cd checkpoint", str(self.settings.checkpoint_folder()),
                                              "sam-cd checkpoints (*.pt);;All files (*)")
        if path:
            self.add_checkpoint(path)

    # -- device, messages ------------------------------------------------------------------------
    def _device_changed(self, device: str) -> None:
        self.settings.set_device(device)
        self.update_device_line()

    def update_device_line(self) -> None:
        """Say "checking…" and describe the chosen device once the engine has answered."""
        choice = self.device_combo.currentText()
        self.device_label.setText("checking…")
        self.device_label.setStyleSheet("color: #57606a; font-style: italic;")
        if self._device_task is not None:
            self._device_task.forget()
        self._device_task = run_in_background("sam-cd: checking the device", lambda _task: describe_device_choice(choice),
                                              lambda answer, error: self._device_described(choice, answer, error))

    def _device_described(self, choice: str, answer: tuple[str, bool] | None, error: BaseException | None) -> None:
        self._device_task = None
        if choice != self.device_combo.currentText():
            return
        text, warning = answer if error is None and answer else (f"Cannot check the device: {error}", True)
        self.device_label.setText(("⚠ " if warning else "") + text)
        self.device_label.setStyleSheet("color: #b42318;" if warning else "")

    def checking(self) -> bool:
        """True while the table, a weights file or the device line waits for the engine."""
        return self._table_task is not None or self._device_task is not None or self.weights_panel.checking()

    def recheck(self) -> None:
        """Ask the engine again (after an install): table, weights and device line."""
        self.refresh_checkpoints()
        self.weights_panel.refresh()
        self.update_device_line()

    def open_diagnostics(self) -> None:
        """Open (or raise) the Diagnostics dialog."""
        if self.diagnostics_dialog is None:
            self.diagnostics_dialog = DiagnosticsDialog(self)
            self.diagnostics_dialog.finished.connect(self._diagnostics_closed)
        self.diagnostics_dialog.show()
        self.diagnostics_dialog.raise_()

    def _diagnostics_closed(self, _result: int) -> None:
        if self.diagnostics_dialog is not None:
            self.diagnostics_dialog.deleteLater()
            self.diagnostics_dialog = None

    def _message(self, text: str, level: Qgis.MessageLevel, duration: int = 0) -> None:
        self.iface.messageBar().pushMessage(TITLE, text, level, duration)

    def _weights_message(self, text: str, is_error: bool) -> None:
        self._message(text, Qgis.MessageLevel.Critical if is_error else Qgis.MessageLevel.Success)

    def _update_polygons_option(self) -> None:
        has = self._algorithm_has("OUTPUT_POLYGONS")
        self.polygons_check.setEnabled(has)
        self.polygons_check.setChecked(has and self.settings.polygons())
        self.polygons_check.setToolTip("" if has else "This version of sam_cd:detectchanges has no polygon output.")

    @staticmethod
    def _algorithm_has(parameter: str) -> bool:
        algorithm = QgsApplication.processingRegistry().algorithmById(DETECT_ALGORITHM)
        return algorithm is not None and algorithm.parameterDefinition(parameter) is not None

    # -- running ---------------------------------------------------------------------------------
    def build_parameters(self) -> dict[str, Any]:
        """Parameters of ``sam_cd:detectchanges`` for the current choices; ValueError says what is missing."""
        before, after = self.before_combo.currentLayer(), self.after_combo.currentLayer()
        if before is None or after is None:
            raise ValueError("Choose a before and an after raster layer.")
        if before.id() == after.id():
            raise ValueError("The before and after layers are the same layer; choose two different rasters.")
        entry = self.selected_entry()
        if entry is None:
            raise ValueError("Select a checkpoint in the table.")
        if entry.checking:
            raise ValueError(f"The checkpoint {entry.path.name} is still being read; Detect once its row is filled in.")
        if not entry.ok:
            raise ValueError(f"The checkpoint {entry.path.name} cannot be used: {entry.error}")
        folder = Path(self.output_widget.filePath() or QgsProcessingUtils.tempFolder())
        stem = f"change_{_safe_name(before.name())}_{_safe_name(after.name())}_{time.strftime('%Y%m%d_%H%M%S')}"
        params: dict[str, Any] = {
            "BEFORE": before.source(),
            "AFTER": after.source(),
            "CHECKPOINT": str(entry.path),
            "THRESHOLD": float(self.threshold_spin.value()),
            "DEVICE": self.device_combo.currentText(),
            "OUTPUT": str(folder / f"{stem}.tif"),
        }
        if self.polygons_check.isEnabled() and self.polygons_check.isChecked():
            params["OUTPUT_POLYGONS"] = str(folder / f"{stem}.gpkg")
        if entry.uses_prompts and self._algorithm_has("PROMPTS"):
            params["PROMPTS"] = format_prompts(self.prompts_editor.prompts())  # empty list: no prior
        if entry.uses_prompts and self._algorithm_has("CLIP_WEIGHTS"):
            params["CLIP_WEIGHTS"] = self.weights_panel.path("clip-vit-b-32")
        return params

    def group_name(self) -> str:
        before, after = self.before_combo.currentLayer(), self.after_combo.currentLayer()
        return f"Changes {before.name() if before else '?'} → {after.name() if after else '?'}"

    def detect(self) -> None:
        """Start the background run (slot of Detect)."""
        if self.run is not None and self.run.running:
            self._message("A detection is already running.", Qgis.MessageLevel.Warning, 5)
            return
        waiting = self.selected_entry()
        if waiting is not None and waiting.checking and self._table_task is not None:
            self._detect_when_read = True
            self._message(f"Reading {waiting.path.name} first; the detection starts when its row is filled in.",
                          Qgis.MessageLevel.Info, 5)
            return
        try:
            params = self.build_parameters()
        except ValueError as exc:
            self._message(str(exc), Qgis.MessageLevel.Warning, 10)
            return
        entry = self.selected_entry()
        if entry is not None and entry.uses_prompts and not self._algorithm_has("PROMPTS"):
            self._message(f"This sam_cd:detectchanges takes no prompts; the checkpoint's own prompts "
                          f"({', '.join(entry.prompts) or 'none'}) are used.", Qgis.MessageLevel.Info, 10)
        Path(params["OUTPUT"]).parent.mkdir(parents=True, exist_ok=True)
        self._user_picked_layers = True  # keep this pair when the results (rasters too) are added
        self._group_name = self.group_name()
        run = AlgorithmRun(DETECT_ALGORITHM, params)
        run.progressChanged.connect(self._progress)
        run.finished.connect(self._run_finished)
        self.run = run
        self._set_running(True)
        run.start()

    def _progress(self, value: float) -> None:
        self.progress_bar.setValue(int(value))

    def cancel(self) -> None:
        if self.run is not None and self.run.running:
            self.cancel_button.setEnabled(False)
            self.run.cancel()

    def _set_running(self, running: bool) -> None:
        self.detect_button.setEnabled(not running)
        self.advanced_button.setEnabled(not running)
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(running)

    def _run_finished(self, ok: bool, results: dict, message: str) -> None:
        self._set_running(False)
        if ok:
            added = add_outputs_to_project(results, self._group_name)
            changed, valid = results.get("CHANGED_PIXELS"), results.get("VALID_PIXELS")
            share = f": {int(changed)} of {int(valid)} pixels changed" if changed is not None and valid else ""
            self._message(f"Detection finished{share} ({len(added)} layer(s) added to '{self._group_name}').",
                          Qgis.MessageLevel.Success, 10)
        elif message == "cancelled" and results.get("OUTPUT"):
            self._message(f"Cancelled too late: the run had finished; its outputs are in "
                          f"{Path(str(results['OUTPUT'])).parent} (not added to the project).", Qgis.MessageLevel.Info, 10)
        elif message == "cancelled":
            self._message("Detection cancelled; nothing was written.", Qgis.MessageLevel.Info, 5)
        else:
            self._message(f"Detection failed: {message}", Qgis.MessageLevel.Critical)

    def open_advanced_dialog(self) -> None:
        """Open the Processing dialog of the algorithm prefilled with the dock's parameters."""
        try:
            params = self.build_parameters()
        except ValueError:
            params = {}  # the dialog lets the user fill in what is missing
        self._open_dialog(DETECT_ALGORITHM, params)

    def build_train_parameters(self) -> dict[str, Any]:
        """Parameters of ``sam_cd:trainfromlayers`` the dock can fill in: its layers, device, the
        selected checkpoint as the start, and an output file in the checkpoint folder."""
        before, after = self.before_combo.currentLayer(), self.after_combo.currentLayer()
        entry = self.selected_entry()
        stem = f"area_{_safe_name(before.name()) if before else 'before'}_{time.strftime('%Y%m%d_%H%M%S')}"
        params: dict[str, Any] = {"DEVICE": self.device_combo.currentText(),
                                  "OUTPUT": str(self.settings.checkpoint_folder() / f"{stem}.pt")}
        if before is not None:
            params["BEFORE"] = before.source()
        if after is not None:
            params["AFTER"] = after.source()
        if entry is not None and entry.ok:
            params["CHECKPOINT"] = "bundled" if entry.source == "bundled" else str(entry.path)
        return params

    def open_train_dialog(self) -> None:
        """Open the dialog of ``sam_cd:trainfromlayers`` prefilled (slot of "Train on this area…");
        the table is re-read when the dialog is closed, so the new checkpoint shows up."""
        self.settings.checkpoint_folder().mkdir(parents=True, exist_ok=True)
        dialog = self._open_dialog(TRAIN_AREA_ALGORITHM, self.build_train_parameters())
        if dialog is not None:  # Processing's AlgorithmDialog shadows QDialog.finished with a method
            signals = [dialog.accepted, dialog.rejected, getattr(dialog, "algorithmFinished", None)]
            for signal in filter(None, signals):
                signal.connect(lambda *_args: self.refresh_checkpoints())

    def _open_dialog(self, algorithm: str, params: dict[str, Any]):  # type: ignore[no-untyped-def]
        """Show ``algorithm``'s Processing dialog prefilled with ``params`` (one such dialog at a
        time); None, with a message, when it cannot be opened."""
        try:
            import processing

            dialog = processing.createAlgorithmDialog(algorithm, params)
        except Exception as exc:  # noqa: BLE001 (a slot must not raise into Qt)
            LOGGER.exception("Could not open the dialog of %s", algorithm)
            self._message(f"Could not open the Processing dialog: {exc}", Qgis.MessageLevel.Critical)
            return None
        if dialog is None:
            self._message(f"{algorithm} is not available; is the Processing plugin enabled?",
                          Qgis.MessageLevel.Critical)
            return None
        self.close_advanced_dialog()
        self.advanced_dialog = dialog
        dialog.show()
        return dialog

    def close_advanced_dialog(self) -> None:
        dialog, self.advanced_dialog = self.advanced_dialog, None
        if dialog is not None and not sip.isdeleted(dialog):  # Processing dialogs delete themselves on close
            dialog.close()
            dialog.deleteLater()

    # -- teardown --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel the running task and download, close the dialog, disconnect from the project."""
        if self.run is not None and self.run.running:
            self.run.finished.disconnect(self._run_finished)
            self.run.progressChanged.disconnect(self._progress)
            self.run.cancel()
        self.weights_panel.cancel_download()
        self.weights_panel.forget_checks()
        self.banner.shutdown()
        for task in (self._table_task, self._device_task):
            if task is not None:
                task.forget()
        self._table_task = self._device_task = None
        self._detect_when_read = False
        if self.diagnostics_dialog is not None:
            self.diagnostics_dialog.close()
        self.close_advanced_dialog()
        try:
            QgsProject.instance().legendLayersAdded.disconnect(self._layers_added)
        except TypeError:
            pass
