"""Run an installer command (venv, pip) with its output streamed, cancel and classified failure.

Every output line goes to ``log`` as it comes; ``is_cancelled`` is polled several times a
second, also while pip is silent during a long download, and a cancel stops the whole
process group. A non-zero exit becomes a :class:`~.errors.RuntimeInstallError` whose kind
is read from the output (:func:`~.errors.classify_output`).
"""
from __future__ import annotations

import os
import queue
import signal
# Runs the runtime's own interpreters with argument lists.
import subprocess  # nosec B404
import sys
import threading
from collections import deque
from typing import Callable, Sequence

from .errors import HEADLINES, RuntimeInstallError, advice_for, classify_output, evidence

__all__ = ["child_environment", "run_streamed"]

#: How much output a failure keeps for classification and the message.
TAIL_LINES = 400
POLL_SECONDS = 0.2
GRACE_SECONDS = 5.0


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for interpreters other than QGIS's own.

    ``PYTHONHOME`` / ``PYTHONPATH`` (OSGeo4W's QGIS sets them) would point another interpreter
    at QGIS's library folders, so they are dropped.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env.update({"PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env.update(extra or {})
    return env


def _stop(proc: subprocess.Popen) -> None:
    try:
        if sys.platform.startswith("win"):
            proc.terminate()
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        if sys.platform.startswith("win"):
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def run_streamed(cmd: Sequence[str], what: str, log: Callable[[str], None],
                 is_cancelled: Callable[[], bool], env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; return its output; raise ``RuntimeInstallError`` on failure or cancel."""
    log(f"$ {' '.join(cmd)}")
    popen_extra = {} if sys.platform.startswith("win") else {"start_new_session": True}
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # nosec B603
                                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                env=env if env is not None else child_environment(), **popen_extra)
    except OSError as exc:
        raise RuntimeInstallError("failed", f"Could not start {what} ({exc}).") from exc
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None  # nosec B101
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, name="sam-cd-install-output", daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    while True:
        if is_cancelled():
            _stop(proc)
            reader.join(GRACE_SECONDS)
            log(f"cancelled: {what} stopped")
            raise RuntimeInstallError("cancelled", f"The install was cancelled during {what}.")
        try:
            line = lines.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        if line is None:
            break
        tail.append(line)
        log(line)
    code = proc.wait()
    output = "\n".join(tail)
    if code != 0:
        kind = classify_output(output)
        if kind in HEADLINES:
            message = f"{what.capitalize()} failed: {HEADLINES[kind]} ({evidence(output, kind)})."
        else:
            errors = [ln.strip() for ln in tail if ln.lstrip().startswith("ERROR")] or list(tail)[-3:]
            message = f"{what.capitalize()} failed (exit code {code}): {' '.join(errors)[-600:]}"
        raise RuntimeInstallError(kind, message, advice_for(kind))
    return output
