"""The Diagnostics dialog: the runtime's Markdown report (QGIS, Qt, Python, OS, GPU, engine
runtime and its packages, last install log), with a Copy button for bug reports.

The report is collected in a background task (it may ask ``nvidia-smi`` and the runtime's Python),
so the dialog opens at once and says "collecting…" until it arrives.
"""

from __future__ import annotations

from qgis.core import Qgis
from qgis.PyQt.QtCore import PYQT_VERSION_STR, qVersion
from qgis.PyQt.QtGui import QFont, QGuiApplication
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from .. import runtime
from .background import BackgroundCall, run_in_background

__all__ = ["DiagnosticsDialog", "host_facts"]

COLLECTING = "Collecting the diagnostics…"


def host_facts() -> dict[str, str]:
    """What only the QGIS process knows, for :func:`runtime.diagnostics_report`."""
    return {"QGIS": Qgis.version(), "Qt": qVersion(), "PyQt": PYQT_VERSION_STR}


class DiagnosticsDialog(QDialog):
    """Read-only Markdown report with Copy and Close."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("samCdDiagnostics")
        self.setWindowTitle("sam-cd diagnostics")
        layout = QVBoxLayout(self)
        hint = QLabel("Paste this report into a bug report; it holds no project data.", self)
        layout.addWidget(hint)
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("diagnosticsText")
        self.text.setReadOnly(True)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.TypeWriter)
        self.text.setFont(font)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setPlainText(COLLECTING)
        layout.addWidget(self.text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setObjectName("diagnosticsCopy")
        self.copy_button.setEnabled(False)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.copy_button.clicked.connect(self.copy)
        layout.addWidget(buttons)
        self.resize(640, 520)
        host = host_facts()
        self.task: BackgroundCall | None = run_in_background(
            "sam-cd: collecting diagnostics", lambda _task: runtime.diagnostics_report(host), self._collected)

    def report(self) -> str:
        """The report shown ('' while it is being collected)."""
        return "" if self.task is not None else self.text.toPlainText()

    def _collected(self, report: str | None, error: BaseException | None) -> None:
        self.task = None
        self.text.setPlainText(report if error is None and report else f"Could not collect the diagnostics: {error}")
        self.copy_button.setEnabled(error is None)

    def copy(self) -> None:
        """Put the report on the clipboard."""
        QGuiApplication.clipboard().setText(self.text.toPlainText())

    def done(self, result: int) -> None:  # noqa: N802 (Qt API)
        if self.task is not None:
            self.task.forget()
            self.task = None
        super().done(result)
