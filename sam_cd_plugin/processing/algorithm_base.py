"""What every sam-cd Processing algorithm shares: identity, translation, icon, help link.

Subclasses set ``NAME``, ``DISPLAY_NAME``, ``GROUP``, ``GROUP_ID`` and ``TAGS`` (comma-separated)
and implement parameters, help and ``processAlgorithm``.
"""
from __future__ import annotations

from typing import Any, Callable

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.errors import CancelledError, SamCdError
from ..dependencies import install_hint, missing_dependencies
from ..engine.service import NO_ENGINE, chosen_transport, engine_python, get_engine
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
        """False, pointing to the dock's *Install engine*, when no engine can run."""
        reason = engine_unavailable() if self.NEEDS_ENGINE else ""
        return (False, reason) if reason else (True, "")

    @staticmethod
    def run_engine(method: str, request: Any, feedback: QgsProcessingFeedback,
                   cancelled_message: str = "Cancelled by the user; no output was written.") -> dict:
        """``get_engine().<method>(request)`` with Processing's progress, cancel and log; every
        failure (engine, device, file system, a stopped worker) as one QgsProcessingException."""
        reason = engine_unavailable()
        if reason:
            raise QgsProcessingException(reason)
        try:
            engine = get_engine()
            return getattr(engine, method)(request, progress=feedback.setProgress,
                                           is_cancelled=feedback.isCanceled, log=feedback_log(feedback))
        except CancelledError as exc:
            raise QgsProcessingException(cancelled_message if method == "detect" else str(exc)) from exc
        except SamCdError as exc:
            raise QgsProcessingException(str(exc)) from exc


def feedback_log(feedback: QgsProcessingFeedback) -> Callable[[str, str], None]:
    """The engine's ``log(level, message)`` written to ``feedback``."""
    def log(level: str, message: str) -> None:
        if level in ("warning", "error", "critical"):
            feedback.pushWarning(message)
        elif level == "debug":
            feedback.pushDebugInfo(message)
        else:
            feedback.pushInfo(message)
    return log


def engine_unavailable() -> str:
    """Why no engine can run here (a message pointing to *Install engine*), or ``""``."""
    try:
        transport = chosen_transport()
    except SamCdError as exc:
        return str(exc)
    if transport == "worker":
        return "" if engine_python() is not None else NO_ENGINE
    missing = missing_dependencies()
    if not missing:
        return ""
    return f"{_runtime_summary()}{NO_ENGINE} To use QGIS's own Python instead: {install_hint(missing)}"


def _runtime_summary() -> str:
    try:
        from ..runtime import runtime_status
    except ImportError:  # the runtime package is not part of this build
        return ""
    try:
        return runtime_status().summary.rstrip() + " "
    except Exception:  # noqa: BLE001 (the status line is a courtesy; the advice stands)
        return ""
