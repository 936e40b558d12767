"""The engine service: the one API every front end (Processing, dock, CLI) calls.

``get_engine()`` returns an :class:`Engine` whose methods run either in this process
(:class:`InProcessEngine`, needs torch here) or in the engine worker process
(:class:`~.client.WorkerEngine`, runs the runtime's Python; this process never imports torch).
The transport comes from env ``SAM_CD_ENGINE`` (``worker`` | ``inprocess`` | ``auto``), else from
the setting registered with :func:`set_transport_setting` (the Processing option), else ``auto``:
the worker when an engine Python is known (env ``SAM_CD_ENGINE_PYTHON`` or the managed runtime),
else in-process. Both give the same pixels. Every method raises only :class:`SamCdError`
subclasses, whose message is meant for the user.

Importing this module imports neither torch nor qgis.
"""
from __future__ import annotations

import abc
import os
import threading
from pathlib import Path
from typing import Any, Callable

from ..core.errors import DependencyError, InputError, SamCdError
from .requests import AreaTrainRequest, DetectRequest, EvaluateRequest, TrainRequest

__all__ = ["AreaTrainRequest", "DetectRequest", "Engine", "EvaluateRequest", "InProcessEngine", "TRANSPORTS",
           "TrainRequest", "chosen_transport", "engine_python", "get_engine", "set_transport_setting",
           "shutdown_engine"]

TRANSPORTS = ("auto", "worker", "inprocess")
ProgressFn = Callable[[float], None]
CancelFn = Callable[[], bool]
LogFn = Callable[[str, str], None]

NO_ENGINE = ("The detection engine is not installed: open the SAM change detection dock and click "
             "'Install engine' (or run `python -m sam_cd_plugin runtime install`), then run again.")


class Engine(abc.ABC):
    """Detection, evaluation and training, and the small queries the dock needs."""

    transport = ""

    @abc.abstractmethod
    def _call(self, method: str, payload: Any, progress: ProgressFn | None = None,
              is_cancelled: CancelFn | None = None, log: LogFn | None = None) -> Any:
        """Run ``method`` with ``payload`` (a request for runs, keyword arguments for queries)."""

    def detect(self, request: DetectRequest, progress: ProgressFn | None = None,
               is_cancelled: CancelFn | None = None, log: LogFn | None = None) -> dict:
        """Write the outputs of ``request``; a dict mirroring ``DetectionResult`` (paths as text).
        Cancel stops after the current batch (``CancelledError``); no output is left then."""
        return self._call("detect", request, progress, is_cancelled, log)

    def evaluate(self, request: EvaluateRequest, progress: ProgressFn | None = None,
                 is_cancelled: CancelFn | None = None, log: LogFn | None = None) -> dict:
        """``{"checkpoint", "metadata", "pairs", "total", "per_pair"}`` (metrics as dicts)."""
        return self._call("evaluate", request, progress, is_cancelled, log)

    def train(self, request: TrainRequest, progress: ProgressFn | None = None,
              is_cancelled: CancelFn | None = None, log: LogFn | None = None) -> dict:
        """``{"path", "device", "metadata"}`` of the checkpoint written."""
        return self._call("train", request, progress, is_cancelled, log)

    def train_area(self, request: AreaTrainRequest, progress: ProgressFn | None = None,
                   is_cancelled: CancelFn | None = None, log: LogFn | None = None) -> dict:
        """Train on one area (``engine.area_training``): ``{"path", "device", "metadata"}``.
        Cancel raises ``CancelledError`` and leaves no checkpoint."""
        return self._call("train_area", request, progress, is_cancelled, log)

    def checkpoint_metadata(self, path: str) -> dict:
        """The checkpoint's metadata, or ``{"error": message}``."""
        return self._call("checkpoint_metadata", {"path": str(path)})

    def describe_device(self, choice: str) -> str:
        """The device line of the dock for a device choice (auto / cpu / cuda)."""
        return self._call("describe_device", {"choice": choice})

    def check_weights(self, encoder: str, path: str) -> dict:
        """``{"ok": bool, "message": str}`` for a weights file of ``encoder``."""
        return self._call("check_weights", {"encoder": encoder, "path": str(path)})

    def stats(self) -> dict:
        """``{"model_loads", "models", "pid"}`` of the process running the engine."""
        return self._call("stats", {})

    def free_models(self) -> None:
        """Drop the cached models now."""
        self._call("free_models", {})

    def close(self) -> None:
        """Release what the engine holds (models; for the worker, the process)."""


class InProcessEngine(Engine):
    """Runs the engine in this process (needs torch here). Models stay cached until :meth:`close`."""

    transport = "inprocess"

    def __init__(self) -> None:
        self._session = None
        self._lock = threading.Lock()

    def _session_or_raise(self):
        with self._lock:
            if self._session is None:
                try:
                    from .runner import EngineSession
                except ImportError as exc:
                    raise DependencyError(f"{NO_ENGINE} (This Python cannot import "
                                          f"{exc.name or exc}.)") from exc
                self._session = EngineSession()
            return self._session

    def _call(self, method, payload, progress=None, is_cancelled=None, log=None):
        return self._session_or_raise().call(method, payload, progress, is_cancelled, log)

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.free_models()


# ---------------------------------------------------------------------- choosing the transport
_transport_setting: Callable[[], str] | None = None
_engine: Engine | None = None
_engine_lock = threading.Lock()


def set_transport_setting(reader: Callable[[], str] | None) -> None:
    """Register where the user's transport choice is read (the Processing option); ``None``: none."""
    global _transport_setting
    _transport_setting = reader


def engine_python() -> Path | None:
    """The Python of the engine worker: env ``SAM_CD_ENGINE_PYTHON``, else the runtime's, else None."""
    value = os.environ.get("SAM_CD_ENGINE_PYTHON", "").strip()
    if value:
        return Path(value)
    try:
        from ..runtime import engine_python as runtime_python
    except ImportError:  # the runtime package is not part of this build
        return None
    return runtime_python()


def chosen_transport() -> str:
    """``"worker"`` or ``"inprocess"``, from env ``SAM_CD_ENGINE``, the setting, else automatic."""
    value = os.environ.get("SAM_CD_ENGINE", "").strip().lower()
    if not value and _transport_setting is not None:
        value = (_transport_setting() or "").strip().lower()
    if value in ("", "auto"):
        if engine_python() is not None:
            return "worker"
        return "inprocess"
    if value not in TRANSPORTS:
        raise InputError(f"SAM_CD_ENGINE={value!r} is not one of {', '.join(TRANSPORTS)}.")
    return value


def get_engine() -> Engine:
    """The engine of the chosen transport (one per process, replaced when the choice changes)."""
    global _engine
    transport = chosen_transport()
    python = engine_python() if transport == "worker" else None
    with _engine_lock:
        if _engine is not None and _engine.transport == transport and \
                getattr(_engine, "python", None) == python:
            return _engine
        if _engine is not None:
            _engine.close()
            _engine = None
        if transport == "worker":
            if python is None:
                raise DependencyError(f"The engine worker was chosen but no engine Python is known. "
                                      f"{NO_ENGINE}")
            from .client import WorkerEngine

            _engine = WorkerEngine(python)
        else:
            _engine = InProcessEngine()
        return _engine


def shutdown_engine() -> None:
    """Stop the engine (the worker process, cached models); the next call starts afresh."""
    global _engine
    with _engine_lock:
        engine, _engine = _engine, None
    if engine is not None:
        try:
            engine.close()
        except SamCdError:
            pass
