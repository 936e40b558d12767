"""Work the dock must keep off the GUI thread (engine calls, installs, subprocesses) as QgsTasks.

``run_in_background(description, function, on_done)`` queues ``function(task)`` in QGIS' task
manager; ``on_done(result, error)`` then runs once on the GUI thread with what ``function``
returned or the exception it raised. ``function`` gets the running :class:`BackgroundCall`, so a
long job can report progress (``task.setProgress``), log lines (``task.log.emit``) and poll
``task.isCanceled()``; both are safe from the task's thread.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

__all__ = ["BackgroundCall", "run_in_background", "running_calls"]

LOGGER = logging.getLogger(__name__)
#: Calls queued or running: QGIS owns the C++ task, Python must keep the wrapper alive until it ends.
_RUNNING: set[BackgroundCall] = set()


class BackgroundCall(QgsTask):
    """One call of ``function`` in the task manager; see the module docstring."""

    log = pyqtSignal(str)

    def __init__(self, description: str, function: Callable[[BackgroundCall], Any],
                 on_done: Callable[[Any, BaseException | None], None] | None) -> None:
        super().__init__(description)
        self.function = function
        self.on_done = on_done
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> bool:  # the task's thread
        try:
            self.result = self.function(self)
        except Exception as exc:  # noqa: BLE001 (handed to on_done on the GUI thread)
            self.error = exc
        return True

    def finished(self, ran: bool) -> None:  # noqa: FBT001 (QgsTask API) — the GUI thread
        _RUNNING.discard(self)
        on_done, self.on_done = self.on_done, None
        if on_done is None:
            return
        if not ran and self.error is None:
            from ..core.errors import CancelledError

            self.error = CancelledError(f"{self.description()}: cancelled")
        try:
            on_done(self.result, self.error)
        except RuntimeError as exc:  # the widget waiting for the result was deleted meanwhile
            LOGGER.debug("Result of %s dropped: %s", self.description(), exc)
        except Exception:  # noqa: BLE001 (never raise into Qt)
            LOGGER.exception("Handling the result of %s failed", self.description())

    def forget(self) -> None:
        """Drop the callback (its widget is going away); the call itself runs to its end."""
        self.on_done = None


def run_in_background(description: str, function: Callable[[BackgroundCall], Any],
                      on_done: Callable[[Any, BaseException | None], None] | None) -> BackgroundCall:
    """Queue ``function`` in the task manager; returns the task (to cancel or forget it)."""
    task = BackgroundCall(description, function, on_done)
    _RUNNING.add(task)
    QgsApplication.taskManager().addTask(task)
    return task


def running_calls() -> int:
    """How many background calls have not finished yet (tests wait for zero)."""
    return len(_RUNNING)
