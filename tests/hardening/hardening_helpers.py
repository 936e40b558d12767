"""Plain helpers of the hardening suite (fixtures live in conftest.py)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from osgeo import gdal

gdal.UseExceptions()

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

#: Size of the real-imagery crops most cases start from (one 128 px tile of the tiny model).
CROP = (100, 90)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """{relative name: sha256} of every file below ``folder`` (also catches new sidecar files)."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


class Workspace:
    """An inputs folder (checksummed) and a separate, initially empty outputs folder."""

    def __init__(self, root: Path, crops: dict[str, Path]) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.outputs = root / "outputs"
        self.inputs.mkdir()
        self.outputs.mkdir()
        self._crops = crops

    def copy(self, which: str, name: str | None = None) -> Path:
        """A fresh copy of the real ``before`` or ``after`` crop in the inputs folder."""
        target = self.inputs / (name or f"{which}.tif")
        shutil.copyfile(self._crops[which], target)
        return target

    def translate(self, which: str, name: str, **options) -> Path:
        """``gdal.Translate`` of a real crop into the inputs folder (no sidecar files kept)."""
        target = self.inputs / name
        gdal.Translate(str(target), str(self._crops[which]), **options)
        aux = target.with_name(target.name + ".aux.xml")
        if aux.exists():
            aux.unlink()
        return target


def _mount(*args: str) -> bool:
    if not IS_ROOT or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def open_files_under(folder: Path) -> list[str]:
    """Files below ``folder`` that this process still has open (Linux ``/proc``)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(folder)):
                found.append(target)
    return found


def _unmount(folder: Path) -> None:
    """Unmount ``folder``; if something keeps it busy, detach it anyway and report what."""
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode == 0:
        return
    still_open = open_files_under(folder)
    subprocess.run(["umount", "-l", str(folder)], check=True)
    raise AssertionError(f"files left open after the run, keeping {folder} busy: {still_open}")


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """``folder`` made read-only: chmod for normal users, a read-only bind mount for root."""
    folder.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if not _mount("--bind", "-o", "ro", str(folder), str(folder)):
        pytest.skip("running as root without permission to bind-mount a read-only folder")
    try:
        yield folder
    finally:
        _unmount(folder)


@contextlib.contextmanager
def full_disk(folder: Path, free_bytes: int = 8 * 1024) -> Iterator[Path]:
    """A tiny tmpfs at ``folder`` with only ``free_bytes`` left: real ENOSPC on write."""
    folder.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)):
        pytest.skip("cannot mount a tmpfs here (needs root); the patched-writer case covers ENOSPC")
    try:
        stat = os.statvfs(folder)
        (folder / ".filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - free_bytes))
        yield folder
    finally:
        _unmount(folder)
