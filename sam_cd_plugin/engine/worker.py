"""``python -m sam_cd_plugin.engine.worker``: the engine worker process.

Speaks :mod:`.protocol` over stdin/stdout (stdout carries only protocol lines: anything else
printed by libraries goes to stderr, which the client keeps as the log tail). Stays alive
between runs and keeps the last models loaded (:class:`~.runner.EngineSession`); frees them when
idle for ``SAM_CD_ENGINE_IDLE_S`` seconds (default 600) and exits on :class:`Shutdown` or when
stdin closes (its parent is gone). Runs one detection/evaluation/training at a time; queries
(checkpoint metadata, device line, weights check) are answered meanwhile. Process-wide tuning
(the allocator's mmap threshold, :mod:`.memory`) is applied here and never in QGIS's process.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

from ..core.errors import SamCdError
from .failures import user_error
from .memory import allow_pinning
from .protocol import (Cancel, Error, Hello, Log, Progress, ProtocolError, Request, Result, Shutdown,
                       decode, encode)
from .requests import AreaTrainRequest, DetectRequest, EvaluateRequest, TrainRequest
from .runner import ACTIONS, RUNS, EngineSession

log = logging.getLogger(__name__)

IDLE_S = float(os.environ.get("SAM_CD_ENGINE_IDLE_S", "600"))
REQUEST_TYPES = {"detect": DetectRequest, "evaluate": EvaluateRequest, "train": TrainRequest,
                 "train_area": AreaTrainRequest}


def payload_of(request: Request) -> Any:
    """The request object (runs) or keyword arguments (queries) carried by ``request``."""
    if request.method in REQUEST_TYPES:
        return REQUEST_TYPES[request.method].from_dict(request.params["request"])
    return dict(request.params)


class Worker:
    """The worker loop: reads messages, runs requests in threads, writes their answers."""

    def __init__(self, out: TextIO, idle_s: float = IDLE_S) -> None:
        self.out = out
        self.idle_s = idle_s
        self.session = EngineSession()
        self._send_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._cancels: dict[str, threading.Event] = {}
        self._busy = 0
        self._last_activity = time.monotonic()

    def send(self, message: Any) -> None:
        line = encode(message)
        with self._send_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def serve(self, lines: TextIO) -> None:
        self.send(Hello(os.getpid(), sys.executable))
        threading.Thread(target=self._free_when_idle, name="samcd-idle", daemon=True).start()
        for line in lines:
            if not line.strip():
                continue
            try:
                message = decode(line)
            except ProtocolError as exc:
                log.error("%s", exc)
                continue
            self._last_activity = time.monotonic()
            if isinstance(message, Shutdown):
                break
            if isinstance(message, Cancel):
                event = self._cancels.get(message.id)
                if event is not None:
                    event.set()
            elif isinstance(message, Request):
                self._cancels[message.id] = threading.Event()
                threading.Thread(target=self._handle, args=(message,), name=f"samcd-{message.method}",
                                 daemon=True).start()
        self.session.free_models()

    def _handle(self, request: Request) -> None:
        cancel = self._cancels[request.id]
        self._busy += 1
        try:
            payload = payload_of(request)
            if request.method in RUNS:
                with self._run_lock:
                    value = self.session.call(
                        request.method, payload,
                        progress=lambda v: self.send(Progress(request.id, float(v))),
                        is_cancelled=cancel.is_set,
                        sink=lambda level, text: self.send(Log(request.id, level, text)))
            else:
                value = self.session.call(request.method, payload)
            self.send(Result(request.id, value))
        except Exception as exc:  # noqa: BLE001 (the client shows it as one message)
            error = exc if isinstance(exc, SamCdError) else user_error(exc, ACTIONS.get(request.method, "The engine"))
            self.send(Error(request.id, type(error).__name__, str(error)))
        finally:
            self._cancels.pop(request.id, None)
            self._busy -= 1
            self._last_activity = time.monotonic()

    def _free_when_idle(self) -> None:
        while True:
            time.sleep(max(0.05, min(self.idle_s / 4, 5.0)))
            if self._busy == 0 and time.monotonic() - self._last_activity >= self.idle_s:
                if self.session.free_models()["freed"]:
                    log.info("Idle for %.0f s: cached models freed", self.idle_s)
                self._last_activity = time.monotonic()


def main() -> int:
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # whatever libraries print must not corrupt the protocol
    sys.stdout = sys.stderr
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(encoding="utf-8")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    allow_pinning()  # peak memory flat in the raster's width, for wide rasters (see .memory)
    log.info("sam-cd engine worker %d started (%s)", os.getpid(), sys.executable)
    Worker(protocol_out).serve(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
