"""The engine worker's wire protocol: one JSON object per line over the worker's stdin/stdout.

Client → worker: :class:`Request` (``method`` and JSON ``params``), :class:`Cancel`,
:class:`Shutdown`. Worker → client: :class:`Hello` once at start, then per request any number of
:class:`Progress` and :class:`Log` and finally one :class:`Result` or :class:`Error`. Every line
carries ``"v"`` (:data:`PROTOCOL_VERSION`) and ``"type"``; a line of another version is a
:class:`ProtocolError`, so a plugin and a worker of different versions fail clearly at start.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Union

from ..core.errors import EngineError

__all__ = ["PROTOCOL_VERSION", "Cancel", "Error", "Hello", "Log", "Message", "Progress",
           "ProtocolError", "Request", "Result", "Shutdown", "decode", "encode"]

PROTOCOL_VERSION = 1


class ProtocolError(EngineError):
    """A line from the other side could not be understood (another version, or not the protocol)."""


@dataclass
class Hello:
    pid: int
    python: str


@dataclass
class Request:
    id: str
    method: str
    params: dict


@dataclass
class Cancel:
    id: str


@dataclass
class Shutdown:
    pass


@dataclass
class Progress:
    id: str
    value: float


@dataclass
class Log:
    id: str
    level: str
    message: str


@dataclass
class Result:
    id: str
    value: Any


@dataclass
class Error:
    id: str
    kind: str
    message: str


Message = Union[Hello, Request, Cancel, Shutdown, Progress, Log, Result, Error]
_TYPES: dict[str, type] = {cls.__name__.lower(): cls for cls in
                           (Hello, Request, Cancel, Shutdown, Progress, Log, Result, Error)}


def encode(message: Message) -> str:
    """One line (without the newline) for ``message``."""
    return json.dumps({"v": PROTOCOL_VERSION, "type": type(message).__name__.lower(),
                       **asdict(message)}, ensure_ascii=False)


def decode(line: str) -> Message:
    """The message of one line; :class:`ProtocolError` for another version or a foreign line."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"The detection engine sent a line that is not part of its protocol: "
                            f"{line.strip()[:200]!r}.") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"The detection engine sent {line.strip()[:200]!r}, not a message.")
    version = data.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"The detection engine speaks protocol version {version}, this plugin version "
            f"{PROTOCOL_VERSION}: the engine runs another sam-cd version than the plugin. Restart "
            "QGIS; if it persists, reinstall the engine (dock: Install engine).")
    cls = _TYPES.get(str(data.pop("type", "")))
    names = {f.name for f in fields(cls)} if cls else set()
    if cls is None or set(data) != names:
        raise ProtocolError(f"The detection engine sent an unknown message: {line.strip()[:200]!r}.")
    return cls(**data)
