"""Install failures, classified by cause, each with what to do (:class:`RuntimeInstallError`).

:func:`classify_output` reads pip's output (the causes pip reports in words), :func:`classify_os_error`
our own file operations' ``OSError``. ``str(error)`` is the whole user-facing message.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path

from ..core.errors import SamCdError

__all__ = ["RuntimeInstallError", "KINDS", "HEADLINES", "classify_output", "evidence", "classify_os_error",
           "advice_for"]

KINDS = ("network", "proxy", "ssl", "disk_full", "no_write", "unsupported_python", "busy",
         "cancelled", "failed")

# Checked in this order: a proxy or certificate failure also reads as a failed connection. Within
# a kind, the alternatives go from the most readable phrase to the least (see :func:`evidence`).
_CAUSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("disk_full", (r"No space left on device", r"not enough space on the disk", r"\[Errno 28\]",
                   r"\[WinError 112\]", r"Disk quota exceeded", r"\[Errno 122\]")),
    ("no_write", (r"Permission denied", r"Access is denied", r"Read-only file system", r"\[Errno 13\]",
                  r"\[WinError 5\]", r"\[Errno 30\]")),
    ("proxy", (r"Tunnel connection failed", r"407 Proxy Authentication", r"Cannot connect to proxy", r"ProxyError")),
    ("ssl", (r"certificate verify failed", r"CERTIFICATE_VERIFY_FAILED", r"SSLError", r"SSL: ")),
    ("network", (r"Failed to establish a new connection", r"Name or service not known",
                 r"Temporary failure in name resolution", r"nodename nor servname provided",
                 r"Network is unreachable", r"No route to host", r"getaddrinfo failed", r"actively refused",
                 r"Connection refused", r"Read timed out", r"ConnectTimeoutError",
                 r"ReadTimeoutError", r"Connection reset", r"NewConnectionError", r"Max retries exceeded",
                 r"Could not fetch URL")),
    ("unsupported_python", (r"(No matching distribution found|Could not find a version that satisfies "
                            r"the requirement) (for )?torch\b",)),
)
_PATTERNS = tuple((kind, re.compile("|".join(alts), re.IGNORECASE)) for kind, alts in _CAUSES)


def advice_for(kind: str, root: Path | None = None, log: Path | None = None) -> str:
    """What the user can do about a failure of ``kind``."""
    where = f" ({root})" if root else ""
    return {
        "network": "Check the internet connection: the install downloads the packages from pip's configured "
                   "index (and torch from PyTorch's wheel index on some machines). Behind a company proxy set "
                   "HTTPS_PROXY (or pip's 'proxy' setting) and try again; an offline machine can register "
                   "an existing environment that has torch: 'python -m sam_cd_plugin runtime use PATH'.",
        "proxy": "The proxy refused the connection or asked for credentials (407 Proxy Authentication "
                 "Required): set HTTPS_PROXY=http://user:password@proxy-host:port (or pip's 'proxy' "
                 "setting) and try again.",
        "ssl": "A server certificate could not be verified, usually because a company firewall inspects "
               "HTTPS: point pip at the company's root certificate (PIP_CERT=/path/to/company-ca.pem, or "
               "pip's 'cert' setting) and try again.",
        "disk_full": f"The disk holding the runtime folder{where} is full: free about 1 GB (CPU build) or "
                     f"3 GB (CUDA build), or set SAM_CD_RUNTIME_DIR to a folder on a larger disk, and try again.",
        "no_write": f"The runtime folder{where} cannot be written: fix its permissions, or set "
                    f"SAM_CD_RUNTIME_DIR to a folder you can write, and try again.",
        "unsupported_python": "Install the Python of QGIS's own version with its venv module beside QGIS "
                              "(Debian/Ubuntu: sudo apt install python3-venv), or register an existing "
                              "environment that has torch: 'python -m sam_cd_plugin runtime use PATH'.",
        "busy": "Wait for the other install to finish (the dock or 'runtime status' shows when it is done).",
        "cancelled": "Nothing of the unfinished install was kept; start it again whenever you want.",
        "failed": f"The log{' ' + str(log) if log else ''} says what pip reported; 'python -m sam_cd_plugin "
                  f"runtime diagnostics' gives a report to attach when asking for help.",
    }[kind]


class RuntimeInstallError(SamCdError):
    """A failed or cancelled install: ``kind`` (one of :data:`KINDS`), ``advice``, ``str()`` = both."""

    def __init__(self, kind: str, message: str, advice: str | None = None, log: Path | None = None):
        self.kind, self.message = kind, message
        self.advice = advice if advice is not None else advice_for(kind, log=log)
        self.log = log
        super().__init__(f"{message} {self.advice}".strip())


#: What went wrong, in words, for the kinds read from pip's output.
HEADLINES = {
    "network": "the package index could not be reached",
    "proxy": "the proxy refused the connection",
    "ssl": "a server certificate could not be verified",
    "disk_full": "the disk is full",
    "no_write": "a file could not be written",
    "unsupported_python": "there is no torch for this Python",
}


def classify_output(output: str) -> str:
    """The kind of failure pip's ``output`` reports (``failed`` when no known cause shows)."""
    for kind, pattern in _PATTERNS:
        if pattern.search(output):
            return kind
    return "failed"


def evidence(output: str, kind: str, limit: int = 200) -> str:
    """The phrase of ``output`` that shows ``kind``'s cause, up to the next quote (``limit`` characters)."""
    for alternative in dict(_CAUSES).get(kind, ()):
        m = re.search(alternative, output, re.IGNORECASE)
        if m:
            phrase = re.split(r"['\"\n]", output[m.start():], maxsplit=1)[0].strip()
            return phrase if len(phrase) <= limit else phrase[:limit - 1] + "…"
    return ""


def classify_os_error(exc: OSError) -> str:
    """The kind of one of our own file operations' failures."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return "disk_full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(exc, PermissionError):
        return "no_write"
    return "failed"
