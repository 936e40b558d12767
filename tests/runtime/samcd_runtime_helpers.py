"""Helpers for the runtime tests: a wheel built here, requirements files, tmpfs mounts."""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

PROBE = "samcd_probe"


def build_wheel(folder: Path, version: str, payload_bytes: int = 0, name: str = "samcd-probe",
                modules: dict[str, str] | None = None) -> Path:
    """A pure-Python wheel ``<name>-<version>``: by default the module ``samcd_probe`` with
    ``__version__``, and ``payload_bytes`` of random data in ``samcd_probe/payload.bin`` to make it
    big; ``modules`` gives other files (path in the wheel → text)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_")
    dist_info = f"{stem}-{version}.dist-info"
    files: dict[str, str | bytes] = dict(modules or {f"{PROBE}/__init__.py": f'__version__ = "{version}"\n'})
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: sam-cd tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if payload_bytes:
        files[f"{PROBE}/payload.bin"] = os.urandom(payload_bytes)
    record = []
    for path, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, content in files.items():
            z.writestr(path, content)
    return wheel


def requirements_file(path: Path, *lines: str) -> Path:
    path.write_text("# test requirements\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def mounted(target: Path, *options: str):
    """``mount <options> <target>`` for the block (skips the test when this machine refuses mounts)."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)
