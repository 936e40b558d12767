"""A real runtime install into a fresh folder (a small requirements set: a wheel built here),
the marker and its hash, the lock, cancel, and ``runtime use``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from samcd_runtime_helpers import build_wheel, requirements_file
from sam_cd_plugin.runtime import (InstallOptions, RuntimeInstallError, diagnostics_report, engine_python,
                                   install_runtime, runtime_status)
from sam_cd_plugin.runtime.location import LOCK_NAME, LOG_NAME
from sam_cd_plugin.runtime.records import read_record

REPO = Path(__file__).resolve().parents[2]


def small_set(tmp_path: Path, wheels: Path, version: str) -> InstallOptions:
    req = requirements_file(tmp_path / f"req-{version}.txt", "--no-index", f"--find-links {wheels}",
                            f"samcd-probe=={version}")
    return InstallOptions(requirements=req, verify_imports=("samcd_probe",))


def install(options: InstallOptions, cancel_when: str | None = None):
    lines, fractions = [], []
    status = install_runtime(options, lines.append, fractions.append,
                             lambda: cancel_when is not None and any(cancel_when in ln for ln in lines))
    return status, lines, fractions


def test_install_then_changed_pin_reinstalls(runtime_root, probe_wheels, tmp_path):
    first = small_set(tmp_path, probe_wheels, "1.0")
    assert runtime_status(first.requirements).state == "missing"
    assert engine_python(first.requirements) is None

    status, lines, fractions = install(first)
    assert status.ready and status.state == "ready"
    assert status.packages["samcd_probe"] == "1.0"
    python = engine_python(first.requirements)
    assert python == status.python and python.is_relative_to(runtime_root)
    # the venv is made from this Python's minor version and sees the base's site-packages
    answer = subprocess.run([str(python), "-c", "import sys, samcd_probe, numpy; print(sys.version_info[:2])"],
                            capture_output=True, text=True, check=True).stdout
    assert answer.strip() == str(sys.version_info[:2])
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "Successfully installed samcd-probe-1.0" in (runtime_root / LOG_NAME).read_text()
    assert any("Successfully installed" in ln for ln in lines)
    marker = read_record(python.parents[1] / "sam-cd-runtime.json")
    assert marker["requirements_hash"] in python.parents[1].name
    report = diagnostics_report({"QGIS": "3.40.5-Bratislava", "Qt": "5.15.8"}, first.requirements)
    assert "| QGIS | 3.40.5-Bratislava |" in report and "| Qt | 5.15.8 |" in report
    assert f"| Engine Python | {python} |" in report
    assert "| torch | not importable" in report  # the small set has no torch: said, not hidden
    assert "Successfully installed samcd-probe-1.0" in report.split("## Last install log")[1]

    again, lines, _ = install(first)  # the same pins: nothing to do
    assert again.python == python and any("nothing to do" in ln for ln in lines)

    second = small_set(tmp_path, probe_wheels, "2.0")  # a changed pin
    assert runtime_status(second.requirements).state == "outdated"
    assert engine_python(second.requirements) is None
    status, _, _ = install(second)
    assert status.ready and status.packages["samcd_probe"] == "2.0"
    assert status.python != python and not python.exists()  # the old pins' runtime is removed
    assert [p.name for p in runtime_root.iterdir() if p.is_dir()] == [status.python.parents[1].name]


def test_second_install_is_refused_while_one_holds_the_lock(runtime_root, probe_wheels, tmp_path):
    runtime_root.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from sam_cd_plugin.runtime.lock import InstallLock\n"
         f"with InstallLock(Path({str(runtime_root / LOCK_NAME)!r})):\n    print('held', flush=True); sys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert "being installed" in runtime_status().summary
        with pytest.raises(RuntimeInstallError) as err:
            install(small_set(tmp_path, probe_wheels, "1.0"))
        assert err.value.kind == "busy" and f"process {holder.pid}" in str(err.value)
    finally:
        holder.communicate("")
    assert runtime_status().state == "missing"


def test_cancel_leaves_no_runtime(runtime_root, probe_wheels, tmp_path):
    options = small_set(tmp_path, probe_wheels, "1.0")
    with pytest.raises(RuntimeInstallError) as err:
        install(options, cancel_when="-m venv")
    assert err.value.kind == "cancelled"
    assert [p for p in runtime_root.iterdir() if p.is_dir()] == []
    assert runtime_status(options.requirements).state == "missing"
    assert "cancelled" in (runtime_root / LOG_NAME).read_text()


def test_use_refuses_a_python_without_torch(runtime_root):
    from sam_cd_plugin.runtime.registration import register_python

    with pytest.raises(RuntimeInstallError, match="cannot import torch"):
        register_python("/usr/bin/python3")
    assert runtime_status().state == "missing"


def test_base_without_gdal_gets_the_gdal_wheel(runtime_root, probe_wheels, tmp_path):
    """A base Python of QGIS's minor version without ``osgeo``: the install adds ``gdal-wheel``
    (here a stand-in built by the test, from the requirements' own links)."""
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    bases = [p for p in Path.home().glob(f".pyenv/versions/{minor}.*/bin/python3")
             if subprocess.run([str(p), "-c", "import osgeo"], capture_output=True).returncode != 0]
    if not bases:
        pytest.skip(f"no Python {minor} without GDAL bindings on this machine")
    build_wheel(tmp_path / "gdal", "0.0.1", name="gdal-wheel", modules={
        "osgeo/__init__.py": "", "osgeo/gdal.py": '__version__ = "0.0.1-stand-in"\n'})
    req = requirements_file(tmp_path / "req.txt", "--no-index", f"--find-links {probe_wheels}",
                            f"--find-links {tmp_path / 'gdal'}", "samcd-probe==1.0")
    status, lines, _ = install(InstallOptions(requirements=req, python=bases[0],
                                              verify_imports=("samcd_probe", "osgeo.gdal")))
    assert status.ready and status.packages["gdal"] == "0.0.1-stand-in"
    assert any("GDAL bindings: missing, installing gdal-wheel" in ln for ln in lines)
