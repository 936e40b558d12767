"""Exception types shared by every sam-cd layer.

Every exception derives from :class:`SamCdError`; ``str(error)`` is a user-facing message that
says what went wrong *and* what to do about it, so front ends can show it unchanged.
"""

from __future__ import annotations

__all__ = [
    "SamCdError",
    "InputError",
    "CheckpointError",
    "WeightsError",
    "DependencyError",
    "OutputError",
    "CancelledError",
    "EngineError",
]


class SamCdError(Exception):
    """Base class of all user-facing sam-cd failures."""


class InputError(SamCdError):
    """An input raster or parameter cannot be used (missing, unreadable, incompatible)."""


class CheckpointError(SamCdError):
    """A model checkpoint is missing, corrupt or incompatible."""


class WeightsError(CheckpointError):
    """Encoder weights are missing, corrupt or do not match the encoder."""


class DependencyError(SamCdError):
    """A required Python package or system component is missing or too old."""


class OutputError(SamCdError):
    """An output file cannot be written (folder missing, not writable, same as an input...)."""


class CancelledError(SamCdError):
    """The user cancelled the operation; no output file is left behind."""


class EngineError(SamCdError):
    """The detection engine failed (device/torch error, file-system error, or its worker process
    stopped); the message says what happened and what to try."""
