"""Progress of a long CLI command: a tqdm bar on a terminal, plain lines otherwise (logs, CI)."""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Callable, Iterator, TextIO

PLAIN_STEP = 10  # percent between two plain lines


@contextlib.contextmanager
def progress_bar(label: str, stream: TextIO | None = None) -> Iterator[Callable[[float], None]]:
    """A ``progress(percent)`` callback for the duration of the block."""
    stream = stream or sys.stderr
    if stream.isatty():
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with ultralytics
            tqdm = None
        if tqdm is not None:
            with tqdm(total=100.0, desc=label, unit="%", file=stream, dynamic_ncols=True,
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}") as bar:
                def update(percent: float) -> None:
                    bar.update(max(0.0, min(100.0, percent)) - bar.n)
                yield update
            return
    shown = [-PLAIN_STEP]

    def plain(percent: float) -> None:
        step = int(percent // PLAIN_STEP) * PLAIN_STEP
        if step > shown[0]:
            shown[0] = step
            print(f"{label}: {step} %", file=stream, flush=True)
    yield plain


def engine_log(transport: str) -> Callable[[str, str], None] | None:
    """The engine's log sink for a CLI: ``None`` in-process (records reach the root logger
    already), else the worker's lines through :mod:`logging`."""
    if transport == "inprocess":
        return None
    logger = logging.getLogger("sam_cd_plugin.engine.worker")
    levels = {"debug": logging.DEBUG, "warning": logging.WARNING, "error": logging.ERROR}

    def log(level: str, message: str) -> None:
        logger.log(levels.get(level, logging.INFO), "%s", message)
    return log
