"""Screenshots for the README: the dock, its first-run banner, the Diagnostics dialog, and a
detection result on a map.

Rendered offscreen into a temporary folder; with ``SAMCD_SCREENSHOTS=1`` they are written to
``docs/dock.png``, ``docs/dock_install_engine.png``, ``docs/diagnostics.png`` and
``docs/result_map.png`` (how the README images are refreshed).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import processing
import pytest
from pytest_qgis.utils import process_events, wait_until
from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

from sam_cd_plugin.gui.dock_widget import SamCdDockWidget
from sam_cd_plugin.paths import default_checkpoint
from sam_cd_plugin.processing.styling import CHANGE_MASK_STYLE, style_path
from samcd_qgis_helpers import REPO, checkpoint_with_meta

pytestmark = pytest.mark.usefixtures("sam_cd_provider")
TILE = "train_36_0512_0512.png"  # a LEVIR-CD tile the bundled checkpoint was trained on


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    return REPO / "docs" if os.environ.get("SAMCD_SCREENSHOTS") == "1" else tmp_path


def image_array(image: QImage) -> np.ndarray:
    """(H, W, 4) uint8 BGRA copy of ``image``."""
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    pointer = image.constBits()
    pointer.setsize(image.sizeInBytes())
    return np.frombuffer(pointer, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width()].copy()


def grab_dock(qgis_iface, project, norcia, target: Path, height: int = 860, then=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Open the dock on the Norcia pair, wait for its checks, run ``then(dock)``, save its picture."""
    for path, name in ((norcia.before, "Norcia 2015 (Sentinel-2)"), (norcia.after, "Norcia 2017 (Sentinel-2)")):
        layer = QgsRasterLayer(str(path), name)
        project.addMapLayer(layer)
        del layer
    dock = SamCdDockWidget(qgis_iface)
    try:
        assert wait_until(lambda: not dock.checking(), timeout_milliseconds=180_000)
        dock.select_checkpoint(default_checkpoint())
        dock.device_combo.setCurrentText("auto")
        assert wait_until(lambda: not dock.checking(), timeout_milliseconds=180_000)
        dock.resize(520, height)
        dock.show()
        if then is not None:
            then(dock)
        process_events()
        assert dock.grab().save(str(target))
    finally:
        dock.shutdown()
        dock.deleteLater()
        process_events()
        project.clear()
    pixels = image_array(QImage(str(target)))
    assert pixels.shape[:2] == (height, 520)
    assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 50  # text, table and widgets, not a blank grab
    return pixels


def test_dock_screenshot(qgis_iface, qgis_new_project, norcia, tiny_checkpoint, clean_samcd_settings,
                         screenshot_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)  # an engine is installed: no banner
    checkpoint_with_meta(tiny_checkpoint, clean_samcd_settings / "tiny_random_init.pt")
    grab_dock(qgis_iface, qgis_new_project, norcia, screenshot_dir / "dock.png")


def test_install_engine_banner_screenshot(qgis_iface, qgis_new_project, norcia, clean_samcd_settings,
                                          screenshot_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The dock of a user who has not installed the engine yet."""
    monkeypatch.delenv("SAM_CD_ENGINE_PYTHON", raising=False)
    monkeypatch.setenv("SAM_CD_RUNTIME_DIR", str(tmp_path / "runtime"))
    pixels = grab_dock(qgis_iface, qgis_new_project, norcia, screenshot_dir / "dock_install_engine.png", 620)
    b, g, r = (pixels[:120, :, k].astype(int) for k in range(3))
    assert ((r > 240) & (g > 230) & (b < 215)).mean() > 0.2  # the yellow banner on top


def test_diagnostics_screenshot(qgis_iface, screenshot_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from sam_cd_plugin.gui.diagnostics_dialog import DiagnosticsDialog

    monkeypatch.setenv("SAM_CD_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)
    dialog = DiagnosticsDialog()
    try:
        dialog.resize(720, 640)
        dialog.show()
        assert wait_until(lambda: dialog.report(), timeout_milliseconds=180_000)
        process_events()
        target = screenshot_dir / "diagnostics.png"
        assert dialog.grab().save(str(target))
    finally:
        dialog.close()
        dialog.deleteLater()
        process_events()
    assert len(np.unique(image_array(QImage(str(target))).reshape(-1, 4), axis=0)) > 20


def render(layers: list, size: int) -> QImage:
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setExtent(layers[-1].extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def test_result_map_screenshot(shared_data: Path, screenshot_dir: Path, tmp_path: Path) -> None:
    levir = tmp_path / "levir"  # copies: QGIS writes .aux.xml next to the rasters it loads
    for date in ("A", "B"):
        (levir / date).mkdir(parents=True)
        shutil.copyfile(shared_data / "LEVIR-CD" / date / TILE, levir / date / TILE)
    change = tmp_path / "change.tif"
    processing.run("sam_cd:detectchanges", {"BEFORE": str(levir / "A" / TILE), "AFTER": str(levir / "B" / TILE),
                                            "DEVICE": "cpu", "OUTPUT": str(change)})
    before = QgsRasterLayer(str(levir / "A" / TILE), "before")
    after = QgsRasterLayer(str(levir / "B" / TILE), "after")
    mask = QgsRasterLayer(str(change), "change")
    assert mask.loadNamedStyle(str(style_path(CHANGE_MASK_STYLE)))[1]
    size, gap = 512, 8
    panels = [render([before], size), render([after], size), render([mask, after], size)]
    del before, after, mask
    QgsProject.instance().clear()

    out = QImage(3 * size + 2 * gap, size + 28, QImage.Format.Format_ARGB32)
    out.fill(QColor("white"))
    painter = QPainter(out)
    painter.setFont(QFont("Sans", 12))
    for i, (panel, title) in enumerate(zip(panels, ("before", "after", "after + detected change (red)"))):
        x = i * (size + gap)
        painter.drawText(x, 0, size, 26, int(Qt.AlignmentFlag.AlignCenter), title)
        painter.drawImage(x, 28, panel)
    painter.end()
    target = screenshot_dir / "result_map.png"
    assert out.save(str(target))

    right = image_array(QImage(str(target)))[28:, 2 * (size + gap):]
    b, g, r = (right[..., k].astype(int) for k in range(3))
    red = (r > 150) & (g < 90) & (b < 90)
    assert 0.01 < red.mean() < 0.6  # the buildings that appeared are marked, the rest is not


def test_dock_with_a_freshly_trained_area_model_screenshot(qgis_iface, qgis_new_project, norcia, rio,
                                                           clean_samcd_settings, screenshot_dir: Path,
                                                           tmp_path: Path, monkeypatch) -> None:
    """The table after "Train on this area…": the area model (training data "area: <name>", its
    hold-out F1) beside the bundled one; written to ``docs/dock_area_model.png``."""
    from samcd_qgis_helpers import polygonise_label

    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)
    changes = polygonise_label(rio.label, tmp_path / "Rio changes.gpkg")
    trained = clean_samcd_settings / "area_rio.pt"
    processing.run("sam_cd:trainfromlayers", {
        "BEFORE": str(rio.before), "AFTER": str(rio.after), "CHANGES": str(changes), "AREA_NAME": "Rio (OSCD)",
        "DEVICE": "cpu", "EPOCHS": 4, "INPUT_SIZE": 64, "FREEZE_ENCODER": True, "LR": 0.003, "DELTA": 0.5,
        "OUTPUT": str(trained)})

    def select_area_model(dock) -> None:  # type: ignore[no-untyped-def]
        assert dock.select_checkpoint(trained)
        assert dock.selected_entry().training_data == ("area: Rio (OSCD)",)

    grab_dock(qgis_iface, qgis_new_project, norcia, screenshot_dir / "dock_area_model.png", then=select_area_model)
