"""The dock and the engine's runtime, as a user meets them: opening the dock keeps QGIS free of
torch and of weights files, the first-run banner, and the Diagnostics dialog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_qgis.utils import process_events, wait_until
from qgis.core import Qgis, QgsRasterLayer
from qgis.PyQt.QtCore import qVersion
from qgis.PyQt.QtGui import QGuiApplication

from sam_cd_plugin.gui.checkpoint_table import COLUMNS
from sam_cd_plugin.gui.runtime_banner import INSTALL_PROMPT
from sam_cd_plugin.gui.settings import SamCdSettings
from sam_cd_plugin.gui.weights_download import OFFICIAL_WEIGHTS
from sam_cd_plugin.runtime.location import LOCK_NAME
from sam_cd_plugin.runtime.lock import InstallLock
from sam_cd_plugin.paths import default_checkpoint
from samcd_qgis_helpers import checkpoint_with_meta

PROBE = Path(__file__).with_name("open_dock_probe.py")
TIMEOUT_MS = 180_000


def weights_files(folder: Path, fastsam_s_file: Path) -> dict[str, str]:
    """A real FastSAM-s file and, for every other encoder, a file of the official size that is not
    weights (sparse: costs no disk, but reading it would show)."""
    folder.mkdir()
    files = {"fastsam-s": str(fastsam_s_file)}
    for item in OFFICIAL_WEIGHTS:
        if item.key != "fastsam-s":
            path = folder / item.filename
            with path.open("wb") as handle:
                handle.truncate(item.approx_mb * 1024 ** 2)
            files[item.key] = str(path)
    return files


def test_opening_the_dock_reads_no_weights_file_and_imports_no_torch(tmp_path: Path, fastsam_s_file: Path,
                                                                    tiny_checkpoint: Path) -> None:
    """A fresh QGIS process (its own profile) whose user chose every weights file earlier."""
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    checkpoint_with_meta(tiny_checkpoint, checkpoints / "tiny_d03.pt", metrics={"val": {"f1": 0.61, "iou": 0.44}})
    setup = {"weights": weights_files(tmp_path / "weights", fastsam_s_file), "checkpoint_folder": str(checkpoints)}
    home = tmp_path / "home"
    home.mkdir()
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]), "HOME": str(home), "SAM_CD_ENGINE": "worker", "SAM_CD_ENGINE_PYTHON": sys.executable,
           "SAM_CD_RUNTIME_DIR": str(tmp_path / "runtime"), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("XDG_DATA_HOME", None)
    done = subprocess.run([sys.executable, str(PROBE), json.dumps(setup)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=repo, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"GUI thread: import {report['import_s']:.3f} s, build+show {report['open_s']:.3f} s, "
          f"longest event-loop stall until filled in {report['longest_stall_s']:.3f} s")

    assert report["modules"] == []  # no torch, ultralytics or open_clip in the QGIS process
    assert [o for o in report["weights_opens"] if o["gui_thread"]] == []
    assert report["weights_opens"] == []  # the engine worker read them, not QGIS
    assert set(report["rows_while_checking"]) == {"checking…"}
    assert report["settled"]
    rows = {row["File"]: row for row in report["rows"]}
    assert rows["tiny_d03.pt"]["Method"] == "sam-cem-cd" and rows["tiny_d03.pt"]["F1"] == "0.610"
    assert rows[default_checkpoint().name]["Method"] == "sam-cem-cd (demo)"
    assert report["weights"]["fastsam-s"] == "found"
    assert {report["weights"][k] for k in setup["weights"] if k != "fastsam-s"} == {"wrong model"}
    assert report["device"].startswith(("CPU", "CUDA", "⚠"))
    assert not report["banner_visible"]  # a registered engine Python is ready


@pytest.fixture
def no_runtime(tmp_path: Path, monkeypatch):
    """A user who has installed nothing: an empty runtime folder, no registered Python."""
    monkeypatch.delenv("SAM_CD_ENGINE_PYTHON", raising=False)
    monkeypatch.setenv("SAM_CD_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path / "runtime"


def test_banner_offers_the_install_until_the_engine_is_ready(make_dock, no_runtime, fastsam_s_file, qgis_iface,
                                                            qgis_new_project, norcia, tmp_path, monkeypatch) -> None:
    """A QGIS whose own Python has no torch: the engine can only run in a worker, and there is none yet."""
    monkeypatch.setenv("SAM_CD_ENGINE", "worker")
    for path in (norcia.before, norcia.after):
        layer = QgsRasterLayer(str(path), path.stem)
        qgis_new_project.addMapLayer(layer)
        del layer
    weights = tmp_path / "FastSAM-s.pt"  # a file this QGIS session has not checked yet
    shutil.copyfile(fastsam_s_file, weights)
    SamCdSettings().set_weights_path("fastsam-s", str(weights))
    dock = make_dock()
    banner = dock.banner
    assert not banner.isHidden()
    assert INSTALL_PROMPT in banner.prompt.text() and "≈ 1 GB CPU / 3 GB CUDA" in INSTALL_PROMPT
    assert banner.install_button.isEnabled() and banner.install_button.text() == "Install engine"
    assert "not installed" in banner.summary.text()  # the runtime's own sentence
    # what needs the engine says so, without an error colour
    bundled = dock.checkpoint_model.entries()[0]
    row = dock.checkpoint_model.row_of(bundled.path)
    assert dock.checkpoint_model.index(row, 0).data() == "needs the engine"
    assert "Install engine" in dock.checkpoint_model.index(row, len(COLUMNS) - 1).data()
    assert dock.weights_panel.status("fastsam-s").state.value == "not checked"
    assert dock.device_label.text().startswith("⚠")
    dock.detect_button.click()
    assert dock.run is None
    warnings = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Warning)
    assert any("cannot be used" in m and "Install engine" in m for m in warnings), warnings

    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)  # an existing environment with torch, registered
    again = make_dock()
    assert again.banner.isHidden()
    assert again.checkpoint_model.entries()[0].ok
    assert again.weights_panel.status("fastsam-s").state.value == "found"
    qgis_new_project.clear()


def critical_messages(iface) -> list[str]:
    return iface.messageBar().get_messages(Qgis.MessageLevel.Critical)


def test_install_engine_while_another_install_runs_says_what_to_do(make_dock, no_runtime, qgis_iface) -> None:
    no_runtime.mkdir(parents=True)
    with InstallLock(no_runtime / LOCK_NAME):  # e.g. `runtime install` in a terminal, or a second QGIS
        dock = make_dock()
        banner = dock.banner
        assert not banner.isHidden() and "being installed" in banner.summary.text()
        banner.install_button.click()
        assert not banner.install_button.isEnabled() and not banner.progress.isHidden()
        assert not banner.log.isHidden() and not banner.cancel_button.isHidden()
        assert wait_until(lambda: not banner.installing, timeout_milliseconds=TIMEOUT_MS)
    assert not banner.error.isHidden()
    assert "Another engine install is running" in banner.error.text()
    assert "Wait for the other install to finish" in banner.error.text()  # the advice of its kind
    assert [m for m in critical_messages(qgis_iface) if "Another engine install is running" in m]
    assert not [m for m in critical_messages(qgis_iface) if "Traceback" in m]
    assert banner.install_button.isEnabled() and banner.progress.isHidden() and banner.cancel_button.isHidden()


def test_cancelling_the_install_keeps_nothing(make_dock, no_runtime, qgis_iface) -> None:
    dock = make_dock()
    banner = dock.banner
    banner.install_button.click()
    banner.cancel_button.click()
    assert wait_until(lambda: not banner.installing, timeout_milliseconds=TIMEOUT_MS)
    assert "cancelled" in banner.log.toPlainText()
    info = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Info)
    assert any("cancelled" in m for m in info) and not critical_messages(qgis_iface)
    assert not banner.isHidden() and banner.error.isHidden()
    assert [p.name for p in no_runtime.glob("cp*")] == []  # no half-made runtime


def test_diagnostics_dialog_shows_a_copyable_report(make_dock, no_runtime) -> None:  # noqa: ARG001
    dock = make_dock()
    dock.diagnostics_button.click()
    dialog = dock.diagnostics_dialog
    assert dialog is not None and dialog.isVisible()
    assert wait_until(lambda: dialog.report(), timeout_milliseconds=TIMEOUT_MS)
    report = dialog.report()
    assert Qgis.version() in report and qVersion() in report
    assert sys.version.split()[0] in report  # the Python
    assert dialog.copy_button.isEnabled()
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == report
    dialog.close()
    process_events()
    assert dock.diagnostics_dialog is None
