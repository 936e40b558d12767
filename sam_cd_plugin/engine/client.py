"""The worker transport: :class:`WorkerEngine` runs engine calls in the engine worker process.

The worker (``python -m sam_cd_plugin.engine.worker``) is started on first use with the engine
Python (:func:`~.service.engine_python`), with this plugin's parent folder first on its
``PYTHONPATH`` so it runs the same sam-cd code. It stays alive between calls. Cancel is
cooperative (the worker stops after the current batch); a worker that has not answered
``SAM_CD_ENGINE_CANCEL_GRACE_S`` seconds (default 10) after a cancel is killed. A worker that
dies (segfault, out-of-memory kill, ``SIGKILL``) becomes one :class:`EngineError` with the last
lines of its log; the temporary files of the abandoned run are removed and the next call starts
a fresh worker. This module imports no torch.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import subprocess  # nosec B404 - starts the engine worker: our own module, no shell
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ..core.errors import CancelledError, EngineError
from .failures import error_from_kind
from .protocol import (Cancel, Error, Hello, Log, Progress, ProtocolError, Request, Result, Shutdown,
                       decode, encode)
from .requests import DetectRequest
from .service import Engine

log = logging.getLogger(__name__)

__all__ = ["WorkerEngine"]

PLUGIN_PARENT = Path(__file__).absolute().parents[2]
RUNS = ("detect", "evaluate", "train", "train_area")
START_TIMEOUT_S = float(os.environ.get("SAM_CD_ENGINE_START_S", "120"))
CANCEL_GRACE_S = float(os.environ.get("SAM_CD_ENGINE_CANCEL_GRACE_S", "10"))
LOG_TAIL_LINES = 20
POLL_S = 0.1
_STOPPED = object()


def _how_it_ended(returncode: int | None) -> str:
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class _WorkerProcess:
    """One running worker: the child process, its reader threads and the calls waiting on it."""

    def __init__(self, python: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_PARENT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        torch = sys.modules.get("torch")  # loaded here only when this process also runs in-process
        if torch is not None:
            # The worker gets this process's intra-op thread count, for OpenMP and the BLAS alike,
            # so both transports compute identical pixels (float sums depend on the thread count).
            # os.environ cannot be trusted for this: importing ultralytics sets OMP_NUM_THREADS=1
            # and a Dask LocalCluster sets MKL/OPENBLAS_NUM_THREADS=1 in the parent.
            threads = str(torch.get_num_threads())
            env.update({var: threads for var in THREAD_VARIABLES})
        if Path(python) != Path(sys.executable):
            env.pop("PYTHONHOME", None)  # QGIS's own Python home would break another interpreter
        try:
            self.proc = subprocess.Popen(  # nosec B603 - argv list, no shell, the engine's Python
                [str(python), "-m", "sam_cd_plugin.engine.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                errors="replace", bufsize=1, env=env, cwd=str(PLUGIN_PARENT),
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0)
        except OSError as exc:
            raise EngineError(f"Cannot start the detection engine with {python} ({exc}). Reinstall the "
                              "engine (dock: Install engine) or fix SAM_CD_ENGINE_PYTHON.") from exc
        self.log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.dead = False
        self._hello: queue.Queue = queue.Queue()
        self._calls: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read_answers, name="samcd-worker-out", daemon=True).start()
        threading.Thread(target=self._read_log, name="samcd-worker-err", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_answers(self) -> None:
        for line in self.proc.stdout:
            try:
                message = decode(line)
            except ProtocolError as exc:
                self._hello.put(exc)
                self.log_tail.append(line.rstrip())
                continue
            if isinstance(message, Hello):
                self._hello.put(message)
                continue
            with self._lock:
                waiting = self._calls.get(getattr(message, "id", ""))
            if waiting is not None:
                waiting.put(message)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with self._lock:
            self.dead = True
            waiting_calls = list(self._calls.values())
        self._hello.put(_STOPPED)
        for waiting in waiting_calls:
            waiting.put(_STOPPED)

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            self.log_tail.append(line.rstrip())
            log.debug("engine: %s", line.rstrip())

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> Hello:
        try:
            first = self._hello.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise EngineError(f"The detection engine did not start within {timeout:.0f} s. "
                              f"{self.log_text()}") from None
        if isinstance(first, ProtocolError):
            self.kill()
            raise first
        if first is _STOPPED:
            raise self.stopped_error()
        return first

    def register(self, call_id: str) -> queue.Queue:
        answers: queue.Queue = queue.Queue()
        with self._lock:
            self._calls[call_id] = answers
            if self.dead:
                answers.put(_STOPPED)
        return answers

    def unregister(self, call_id: str) -> None:
        with self._lock:
            self._calls.pop(call_id, None)

    def send(self, message: Any) -> bool:
        """False when the worker can no longer be written to (it died)."""
        try:
            with self._send_lock:
                self.proc.stdin.write(encode(message) + "\n")
                self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def log_text(self) -> str:
        lines = [line for line in self.log_tail if line.strip()]
        return ("Last lines of the engine's log:\n  " + "\n  ".join(lines)) if lines else \
            "The engine wrote no log."

    def stopped_error(self) -> EngineError:
        return EngineError(
            f"The detection engine stopped ({_how_it_ended(self.proc.poll())}): out of memory? The "
            "run was abandoned and no output was written; the next run starts a fresh engine. Try a "
            f"smaller tile size or the CPU if it happens again. {self.log_text()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self.dead = True

    def close(self) -> None:
        if self.proc.poll() is None and self.send(Shutdown()):
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


class WorkerEngine(Engine):
    """Engine calls answered by the engine worker process running ``python``."""

    transport = "worker"

    def __init__(self, python: Path) -> None:
        self.python = Path(python)
        self._process: _WorkerProcess | None = None
        self._lock = threading.Lock()

    def _worker(self) -> _WorkerProcess:
        with self._lock:
            if self._process is not None and (self._process.dead or self._process.proc.poll() is not None):
                self._process.close()
                self._process = None
            if self._process is None:
                process = _WorkerProcess(self.python)
                process.wait_ready()
                self._process = process
            return self._process

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None before the first call or after it died)."""
        process = self._process
        return process.pid if process is not None and not process.dead else None

    def _call(self, method: str, payload: Any, progress: Callable[[float], None] | None = None,
              is_cancelled: Callable[[], bool] | None = None,
              log: Callable[[str, str], None] | None = None) -> Any:
        params = {"request": payload.to_dict()} if method in RUNS else dict(payload)
        leftovers = payload.leftovers if isinstance(payload, DetectRequest) else list
        process = self._worker()
        call_id = uuid.uuid4().hex
        answers = process.register(call_id)
        try:
            if not process.send(Request(call_id, method, params)):
                answers.put(_STOPPED)
            return self._answer(process, call_id, answers, progress, is_cancelled, log)
        except BaseException:
            for path in leftovers():  # a killed run cannot clean up after itself
                path.unlink(missing_ok=True)
            raise
        finally:
            process.unregister(call_id)

    def _answer(self, process: _WorkerProcess, call_id: str, answers: queue.Queue,
                progress, is_cancelled, log) -> Any:
        cancel_sent: float | None = None
        while True:
            try:
                message = answers.get(timeout=POLL_S)
            except queue.Empty:
                if is_cancelled is not None and cancel_sent is None and is_cancelled():
                    process.send(Cancel(call_id))
                    cancel_sent = time.monotonic()
                elif cancel_sent is not None and time.monotonic() - cancel_sent > CANCEL_GRACE_S:
                    process.kill()
                    raise CancelledError(f"Cancelled; the engine did not stop within {CANCEL_GRACE_S:.0f} s "
                                         "and was restarted. No output was written.") from None
                continue
            if message is _STOPPED:
                raise process.stopped_error()
            if isinstance(message, Progress):
                if progress is not None:
                    progress(message.value)
            elif isinstance(message, Log):
                if log is not None:
                    log(message.level, message.message)
            elif isinstance(message, Result):
                return message.value
            elif isinstance(message, Error):
                raise error_from_kind(message.kind, message.message)

    def close(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.close()
