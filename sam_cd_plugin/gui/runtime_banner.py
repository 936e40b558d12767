"""First-run banner of the dock: shown while the detection engine's runtime is not ready.

*Install engine* runs :func:`runtime.install_runtime` in a background task with its log,
progress and Cancel in the banner; a failure shows the runtime's classified message (what went
wrong and what to do) in the banner and the message bar. *Diagnostics…* opens the report.
"""

from __future__ import annotations

import logging

from qgis.core import Qgis
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .. import runtime
from ..core.errors import CancelledError
from ..engine.service import shutdown_engine
from .background import BackgroundCall, run_in_background

__all__ = ["INSTALL_PROMPT", "RuntimeBanner"]

LOGGER = logging.getLogger(__name__)
INSTALL_PROMPT = "Install the detection engine (≈ 1 GB CPU / 3 GB CUDA)…"

_STYLE = ("QFrame#runtimeBanner { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 4px; }"
          "QLabel#runtimeError { color: #b42318; }")


class RuntimeBanner(QFrame):
    """The banner; ``ready`` fires when an install made the runtime ready."""

    ready = pyqtSignal()
    message = pyqtSignal(str, object)  # text, Qgis.MessageLevel (for the message bar)
    diagnosticsRequested = pyqtSignal()  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runtimeBanner")
        self.setStyleSheet(_STYLE)
        self.task: BackgroundCall | None = None
        layout = QVBoxLayout(self)
        self.prompt = QLabel(f"<b>{INSTALL_PROMPT}</b>", self)
        self.prompt.setToolTip("It goes into its own folder outside the plugin: plugin updates keep it, and QGIS's "
                               "own Python is not changed.")
        self.prompt.setObjectName("runtimePrompt")
        self.prompt.setWordWrap(True)
        self.summary = QLabel(self)
        self.summary.setObjectName("runtimeSummary")
        self.summary.setWordWrap(True)
        layout.addWidget(self.prompt)
        layout.addWidget(self.summary)
        buttons = QHBoxLayout()
        self.install_button = QPushButton("Install engine", self)
        self.install_button.setObjectName("installEngine")
        self.diagnostics_button = QPushButton("Diagnostics…", self)
        self.diagnostics_button.setObjectName("bannerDiagnostics")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("cancelInstall")
        self.cancel_button.setVisible(False)
        buttons.addWidget(self.install_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.diagnostics_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar(self)
        self.progress.setObjectName("installProgress")
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.log = QPlainTextEdit(self)
        self.log.setObjectName("installLog")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMaximumHeight(140)
        self.log.setVisible(False)
        layout.addWidget(self.log)
        self.error = QLabel(self)
        self.error.setObjectName("runtimeError")
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        layout.addWidget(self.error)
        self.install_button.clicked.connect(self.install)
        self.cancel_button.clicked.connect(self.cancel)
        self.diagnostics_button.clicked.connect(self.diagnosticsRequested)
        self.refresh()

    @property
    def installing(self) -> bool:
        return self.task is not None

    def refresh(self) -> runtime.RuntimeStatus:
        """Show the banner unless the runtime is ready (or an install is running)."""
        status = runtime.runtime_status()
        self.summary.setText(status.summary)
        self.setVisible(self.installing or not status.ready)
        return status

    def install(self) -> None:
        """Start installing the runtime in the background (slot of *Install engine*)."""
        if self.installing:
            return
        options = runtime.InstallOptions()
        self.log.clear()
        self.log.setVisible(True)
        self.error.setVisible(False)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.cancel_button.setVisible(True)
        self.task = run_in_background(
            "sam-cd: installing the detection engine",
            lambda task: runtime.install_runtime(options, task.log.emit, lambda fraction: task.setProgress(100 * fraction),
                                                 task.isCanceled),
            self._installed,
        )
        self.task.log.connect(self.log.appendPlainText)
        self.task.progressChanged.connect(lambda percent: self.progress.setValue(int(percent)))

    def cancel(self) -> None:
        """Ask the install to stop (it stops at its next step and removes what it half-made)."""
        if self.task is not None:
            self.cancel_button.setEnabled(False)
            self.log.appendPlainText("Cancelling…")
            self.task.cancel()

    def _installed(self, status: runtime.RuntimeStatus | None, error: BaseException | None) -> None:
        self.task = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.install_button.setEnabled(True)
        if error is None:
            shutdown_engine()  # an engine started before the install must not outlive it
            self.log.appendPlainText(status.summary if status is not None else "Installed.")
            if self.refresh().ready:
                self.message.emit("The detection engine is installed.", Qgis.MessageLevel.Success)
                self.ready.emit()
            return
        if isinstance(error, CancelledError) or getattr(error, "kind", "") == "cancelled":
            self.log.appendPlainText("Install cancelled.")
            self.message.emit("Installing the detection engine was cancelled.", Qgis.MessageLevel.Info)
            return
        if isinstance(error, runtime.RuntimeInstallError):
            text = str(error)  # the runtime's classified message: what went wrong and what to do
        else:
            LOGGER.error("Installing the detection engine failed", exc_info=error)
            text = (f"Installing the detection engine failed unexpectedly: {error}. Open Diagnostics… and attach "
                    "its report to a bug report.")
        self.error.setText(text)
        self.error.setVisible(True)
        self.message.emit(text, Qgis.MessageLevel.Critical)

    def shutdown(self) -> None:
        """Cancel a running install (the dock is closing)."""
        if self.task is not None:
            self.task.forget()
            self.task.cancel()
            self.task = None
