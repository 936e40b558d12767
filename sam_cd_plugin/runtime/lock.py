"""A lock file against two installs at once (across processes: QGIS, the CLI, a second QGIS).

The operating system releases the lock when the holder dies, so a crashed install never
leaves a stale lock. The holder's process id is written into the file for the message.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

__all__ = ["InstallLock", "LockBusy", "install_running"]


class LockBusy(Exception):
    """Another process holds the lock; ``holder`` is its process id as written in the file."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by process {holder or '?'}")
        self.holder = holder


def _try_lock(fd: int) -> bool:
    if sys.platform.startswith("win"):
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    if sys.platform.startswith("win"):
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class InstallLock:
    """``with InstallLock(path):`` holds the lock or raises :class:`LockBusy` after ``wait`` seconds."""

    def __init__(self, path: Path, wait: float = 1.0):
        self.path, self.wait, self._fd = Path(path), wait, None

    def acquire(self) -> "InstallLock":
        """Take the lock, waiting up to ``wait`` seconds; raises :class:`LockBusy` or ``OSError``."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                try:
                    holder = os.read(fd, 32).decode("ascii", "replace").strip()
                except OSError:  # Windows: the locked byte cannot be read
                    holder = ""
                os.close(fd)
                raise LockBusy(self.path, holder)
            time.sleep(0.1)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:  # the pid is only for the message
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "InstallLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def install_running(path: Path) -> bool:
    """Whether some process holds the lock now (a cheap, non-blocking probe)."""
    if not Path(path).exists():
        return False
    try:
        with InstallLock(path, wait=0):
            return False
    except LockBusy:
        return True
    except OSError:
        return False
