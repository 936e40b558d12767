"""Running a Processing algorithm of the dock as a background task, and loading its outputs.

:class:`AlgorithmRun` wraps ``QgsProcessingAlgRunnerTask``: the algorithm runs in QGIS' task
manager (QGIS stays responsive, the task also shows in the status bar), progress and cancel go
through a ``QgsProcessingFeedback``, and the result arrives on the GUI thread as
``finished(ok, results, message)``. The dock therefore runs exactly what the toolbox, batch
mode, models and ``qgis_process`` run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..processing.styling import CHANGE_MASK_STYLE, PROBABILITY_STYLE, apply_style, style_path

__all__ = ["AlgorithmRun", "ErrorCollectingFeedback", "add_outputs_to_project"]

LOGGER = logging.getLogger(__name__)
#: Runs whose task has not finished yet. The task holds raw pointers to the run's context and
#: feedback, so they must outlive it even when the dock that started the run is deleted.
_ACTIVE: set[AlgorithmRun] = set()


class ErrorCollectingFeedback(QgsProcessingFeedback):
    """Feedback that remembers the error messages of the run (reported from the worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.errors.append(error)
        super().reportError(error, fatalError)


class AlgorithmRun(QObject):
    """One background run of a Processing algorithm.

    Signals: ``progressChanged(percent)`` and, exactly once, ``finished(ok, results, message)``
    where ``message`` says what went wrong (empty on success, "cancelled" after :meth:`cancel`;
    then ``results`` is empty unless the algorithm had already finished writing).
    """

    progressChanged = pyqtSignal(float)  # noqa: N815
    finished = pyqtSignal(bool, dict, str)

    def __init__(self, algorithm_id: str, parameters: dict[str, Any], project: QgsProject | None = None) -> None:
        super().__init__()  # no parent: a run must outlive the widget that started it
        self.algorithm_id = algorithm_id
        self.parameters = dict(parameters)
        self.project = project or QgsProject.instance()
        self.context = QgsProcessingContext()
        self.context.setProject(self.project)
        self.feedback = ErrorCollectingFeedback()
        self.task: QgsProcessingAlgRunnerTask | None = None
        self._cancelled = False
        self._done = False

    @property
    def running(self) -> bool:
        return self.task is not None and not self._done

    def start(self) -> None:
        """Queue the task; ``finished`` reports errors found before the start too (never raises)."""
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(self.algorithm_id)
        if algorithm is None:
            self._finish(False, {}, f"The Processing algorithm {self.algorithm_id} is not available; "
                                    "is the Processing plugin enabled?")
            return
        ok, message = algorithm.checkParameterValues(self.parameters, self.context)
        if not ok:
            self._finish(False, {}, message or "Invalid parameters.")
            return
        self.feedback.progressChanged.connect(self.progressChanged)
        self.task = QgsProcessingAlgRunnerTask(algorithm, self.parameters, self.context, self.feedback)
        self.task.executed.connect(self._executed)
        _ACTIVE.add(self)
        QgsApplication.taskManager().addTask(self.task)
        LOGGER.info("Started %s in the background", self.algorithm_id)

    def cancel(self) -> None:
        """Ask the algorithm to stop (it stops after the current tile and leaves no output)."""
        self._cancelled = True
        self.feedback.cancel()
        if self.task is not None and not self._done:
            self.task.cancel()

    def _executed(self, ok: bool, results: dict) -> None:
        if self._cancelled:  # results survive only when the run had ended before the cancel reached it
            self._finish(False, dict(results or {}), "cancelled")
        elif ok:
            self._finish(True, dict(results), "")
        else:
            errors = [e for e in self.feedback.errors if e.strip()]
            self._finish(False, {}, errors[-1] if errors else f"{self.algorithm_id} failed (see the log).")

    def _finish(self, ok: bool, results: dict, message: str) -> None:
        if self._done:
            return
        self._done = True
        self.task = None  # the task manager owns and deletes the task
        _ACTIVE.discard(self)
        self.finished.emit(ok, results, message)


def _style(layer: QgsMapLayer, style_name: str | None) -> None:
    problem = apply_style(layer, style_path(style_name)) if style_name else None
    if problem:
        LOGGER.warning(problem)


def _group(project: QgsProject, name: str) -> QgsLayerTreeGroup:
    root = project.layerTreeRoot()
    group = root.findGroup(name)
    return group if group is not None else root.insertGroup(0, name)


def add_outputs_to_project(results: dict[str, Any], group_name: str, project: QgsProject | None = None) -> list[str]:
    """Add the change mask, probability and polygons of ``results`` into group ``group_name``.

    Each layer gets its bundled style. Returns the ids of the added layers (no Python reference
    to a layer is kept here).
    """
    project = project or QgsProject.instance()
    outputs: list[tuple[str, str, str | None, bool]] = [
        ("OUTPUT", "Change mask", CHANGE_MASK_STYLE, True),
        ("OUTPUT_PROBABILITY", "Change probability", PROBABILITY_STYLE, True),
        ("OUTPUT_POLYGONS", "Change polygons", None, False),  # QGIS' default fill
    ]
    added: list[str] = []
    group = None
    for key, title, style_name, is_raster in outputs:
        source = results.get(key)
        if not source or not isinstance(source, str):
            continue
        name = f"{title} ({Path(source.split('|')[0]).stem})"
        layer: QgsMapLayer = QgsRasterLayer(source, name, "gdal") if is_raster else QgsVectorLayer(source, name, "ogr")
        if not layer.isValid():
            LOGGER.warning("Output %s (%s) could not be opened", key, source)
            continue
        _style(layer, style_name)
        if group is None:
            group = _group(project, group_name)
        project.addMapLayer(layer, False)
        group.insertLayer(0 if key == "OUTPUT_POLYGONS" else len(group.children()), layer)
        added.append(layer.id())
    return added
