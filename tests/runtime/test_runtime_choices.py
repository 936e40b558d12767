"""The pure rules of the runtime: where it lives, which Python it is made from, which torch build."""
from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

import pytest

from sam_cd_plugin.runtime.base_python import python_candidates, version_problem
from sam_cd_plugin.runtime.location import default_root, python_tag, venv_python
from sam_cd_plugin.runtime.requirements import ENGINE_REQUIREMENTS, requirements_hash, torch_lines
from sam_cd_plugin.runtime.torch_build import PYTORCH_INDEX, build_for_variant, choose_torch_build

SMI_H200 = "NVIDIA H200, 570.133.20, 143771 MiB\n"
SMI_NEW = "NVIDIA GeForce RTX 4090, 581.15, 24564 MiB\n"


@pytest.mark.parametrize("platform, smi, variant, index", [
    ("linux", None, "cpu", f"{PYTORCH_INDEX}/cpu"),                      # PyPI's Linux torch is CUDA
    ("win32", None, "cpu", None),                                          # PyPI's Windows torch is CPU
    ("linux", SMI_NEW, "cu130", None),                                    # PyPI's Linux torch is cu130
    ("win32", SMI_NEW, "cu130", f"{PYTORCH_INDEX}/cu130"),                # Windows CUDA: PyTorch's index
    ("linux", SMI_H200, "cu126", f"{PYTORCH_INDEX}/cu126"),               # 570 < 580.65.06
    ("win32", "NVIDIA T1000, 560.76, 4096 MiB", "cu126", f"{PYTORCH_INDEX}/cu126"),
    ("linux", "Tesla T4, 535.183.01, 15360 MiB", "cpu", f"{PYTORCH_INDEX}/cpu"),  # driver too old
    ("linux", "NVIDIA-SMI has failed because it couldn't communicate with the driver", "cpu",
     f"{PYTORCH_INDEX}/cpu"),
    ("darwin", None, "default", None),
])
def test_torch_build_follows_os_and_driver(platform, smi, variant, index):
    build = choose_torch_build(platform, smi)
    assert (build.variant, build.index_url) == (variant, index)
    assert build.reason


def test_old_driver_says_to_update_it():
    build = choose_torch_build("linux", "Tesla T4, 535.183.01, 15360 MiB")
    assert "update the NVIDIA driver" in build.reason and "535.183.01" in build.reason


def test_forced_builds():
    assert build_for_variant("win32", "cpu").index_url is None
    assert build_for_variant("linux", "cu126").index_url == f"{PYTORCH_INDEX}/cu126"
    with pytest.raises(ValueError, match="unknown torch build"):
        build_for_variant("darwin", "cu126")


def test_default_root_is_inside_the_default_qgis_profile():
    assert default_root("linux", {}, PurePosixPath("/home/ann")) == PurePosixPath(
        "/home/ann/.local/share/QGIS/QGIS3/profiles/default/sam_cd/runtime")
    assert default_root("win32", {"APPDATA": r"C:\Users\ann\AppData\Roaming"}, PureWindowsPath(r"C:\Users\ann")) == \
        PureWindowsPath(r"C:\Users\ann\AppData\Roaming\QGIS\QGIS3\profiles\default\sam_cd\runtime")
    assert default_root("darwin", {}, PurePosixPath("/Users/ann")) == PurePosixPath(
        "/Users/ann/Library/Application Support/QGIS/QGIS3/profiles/default/sam_cd/runtime")


def test_venv_python_and_tag():
    assert venv_python(PureWindowsPath(r"C:\rt\cp312-x"), "win32") == PureWindowsPath(r"C:\rt\cp312-x\Scripts\python.exe")
    assert venv_python(PurePosixPath("/rt/cp311-x"), "linux") == PurePosixPath("/rt/cp311-x/bin/python")
    assert python_tag((3, 12)) == "cp312"


def test_linux_qgis_finds_the_system_python():
    found = python_candidates("linux", "/usr/bin/qgis", "/usr", (3, 11))
    assert found[:2] == [PurePosixPath("/usr/bin/python3.11"), PurePosixPath("/usr/bin/python3")]


def test_osgeo4w_qgis_finds_the_python_beside_it():
    found = python_candidates("win32", r"C:\OSGeo4W\bin\qgis-bin.exe", r"C:\OSGeo4W\apps\Python312", (3, 12))
    assert found[0] == PureWindowsPath(r"C:\OSGeo4W\bin\python3.exe")
    assert PureWindowsPath(r"C:\OSGeo4W\apps\Python312\python.exe") in found


def test_standalone_windows_qgis():
    found = python_candidates("win32", r"C:\Program Files\QGIS 3.40.5\bin\qgis-ltr-bin.exe",
                              r"C:\Program Files\QGIS 3.40.5\apps\Python312", (3, 12))
    assert found[0] == PureWindowsPath(r"C:\Program Files\QGIS 3.40.5\bin\python3.exe")


def test_macos_bundle_finds_its_own_python():
    exe = "/Applications/QGIS-LTR.app/Contents/MacOS/QGIS"
    prefix = "/Applications/QGIS-LTR.app/Contents/Frameworks/Python.framework/Versions/3.12"
    found = python_candidates("darwin", exe, prefix, (3, 12))
    assert found[0] == PurePosixPath("/Applications/QGIS-LTR.app/Contents/MacOS/bin/python3.12")
    assert PurePosixPath(prefix + "/bin/python3.12") in found
    assert all(not str(p).startswith("/usr/bin") for p in found)


def test_a_venv_points_at_its_base():
    found = python_candidates("linux", "/work/.venv/bin/python", "/usr", (3, 11), "/usr/bin/python3.11")
    assert found[0] == PurePosixPath("/usr/bin/python3.11")


def test_version_rules():
    assert version_problem((3, 11, 2), (3, 11)) is None
    assert "minor version" in version_problem((3, 12, 1), (3, 11))
    assert "no torch wheels" in version_problem((3, 8, 18), (3, 8))


def test_hash_ignores_comments_but_not_pins(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("torch==2.14.1\nultralytics==8.4.190\n")
    b = tmp_path / "b.txt"
    b.write_text("# a comment\ntorch==2.14.1   # inline\n\nultralytics==8.4.190\n")
    c = tmp_path / "c.txt"
    c.write_text("torch==2.14.2\nultralytics==8.4.190\n")
    assert requirements_hash(a) == requirements_hash(b) != requirements_hash(c)
    assert torch_lines(b) == ["torch==2.14.1"]


def test_engine_requirements_pin_torch_and_torchvision():
    assert sorted(line.split("==")[0] for line in torch_lines(ENGINE_REQUIREMENTS)) == ["torch", "torchvision"]


def test_runtime_package_imports_only_the_standard_library():
    import subprocess
    import sys

    code = ("import sys; import sam_cd_plugin.runtime, sam_cd_plugin.cli.runtime\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'qgis', 'numpy', 'osgeo', 'PyQt5', 'tqdm'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__import__("pathlib").Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("output, kind", [
    ("ERROR: Could not install packages due to an OSError: [WinError 112] There is not enough space on the disk", "disk_full"),
    ("ERROR: Could not install packages due to an OSError: [WinError 5] Access is denied: 'C:\\rt\\x'", "no_write"),
    ("Retrying ... 'NewConnectionError(... [WinError 10061] No connection could be made because the target "
     "machine actively refused it')", "network"),
    ("Retrying ... NewConnectionError(... [Errno 8] nodename nor servname provided, or not known)", "network"),
    ("Retrying ... 'NewConnectionError(...: Failed to establish a new connection: [Errno -3] Temporary failure "
     "in name resolution')", "network"),
    ("ERROR: No matching distribution found for torch==2.14.1", "unsupported_python"),
    ("ERROR: No matching distribution found for samcd-probe==9", "failed"),
])
def test_pip_failures_are_classified(output, kind):
    from sam_cd_plugin.runtime.errors import classify_output

    assert classify_output(output) == kind
