"""Every failure of an engine call as one user-facing :class:`SamCdError` (never a traceback)."""
from __future__ import annotations

from ..core import errors
from ..core.errors import DependencyError, EngineError, SamCdError

__all__ = ["error_from_kind", "user_error"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:400] if text else type(exc).__name__)


def user_error(exc: BaseException, action: str) -> SamCdError:
    """``exc`` as a :class:`SamCdError` that says what failed during ``action`` and what to try."""
    if isinstance(exc, SamCdError):
        return exc
    detail = _first_line(exc)
    if isinstance(exc, ImportError):
        return DependencyError(f"{action} needs the Python package '{exc.name or detail}', which the "
                               "engine's Python cannot import. Reinstall the engine (dock: Install "
                               "engine) or run `python -m sam_cd_plugin runtime diagnostics`.")
    if isinstance(exc, MemoryError) or "out of memory" in detail.lower():
        return EngineError(f"{action} ran out of memory ({detail}). Use a smaller tile size, the CPU, "
                           "or close other programs, and try again.")
    if isinstance(exc, RuntimeError) and ("CUDA" in detail or "cuDNN" in detail or "device" in detail):
        return EngineError(f"{action} failed on the GPU ({detail}). Try again with device 'cpu'; if "
                           "it keeps happening, update the NVIDIA driver.")
    if isinstance(exc, OSError):
        name = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return EngineError(f"{action} failed reading or writing a file{name}: {exc.strerror or detail}. "
                           "Check that the file exists, the folder is writable and the disk is not full.")
    return EngineError(f"{action} failed: {type(exc).__name__}: {detail}. If the input looks right, "
                       "report it with the Diagnostics report.")


def error_from_kind(kind: str, message: str) -> SamCdError:
    """The :class:`SamCdError` subclass named ``kind`` (as the worker reports it) with ``message``."""
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, SamCdError)):
        cls = EngineError
    return cls(message)
