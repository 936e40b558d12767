"""The dock's toggle action, repeated open/close, and unloading the plugin with the dock open."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_qgis.utils import process_events, wait_until
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsTask
from qgis.PyQt.QtWidgets import QDockWidget

try:  # Qt6
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5
    from qgis.PyQt.QtWidgets import QAction

from sam_cd_plugin.gui import detection_task
from sam_cd_plugin.gui.dock_widget import DOCK_OBJECT_NAME
from sam_cd_plugin.plugin import ACTION_OBJECT_NAME, DOCK_ACTION_OBJECT_NAME, SamCdPlugin
from samcd_qgis_helpers import checkpoint_with_meta, upscaled_copy


def our_widgets(main_window) -> tuple[list, list]:
    docks = [d for d in main_window.findChildren(QDockWidget) if d.objectName() == DOCK_OBJECT_NAME]
    actions = [a for a in main_window.findChildren(QAction) if a.objectName() in (ACTION_OBJECT_NAME, DOCK_ACTION_OBJECT_NAME)]
    return docks, actions


def running_tasks() -> list[str]:
    finished = (QgsTask.TaskStatus.Complete, QgsTask.TaskStatus.Terminated)
    return [t.description() for t in QgsApplication.taskManager().tasks() if t.status() not in finished]


@pytest.fixture
def shown_main_window(qgis_iface):
    """The (offscreen) main window shown, so that docks inside it really become visible."""
    window = qgis_iface.mainWindow()
    window.show()
    yield window
    window.hide()


@pytest.fixture
def plugin(qgis_iface, qgis_processing, clean_samcd_settings, shown_main_window):  # noqa: ARG001
    plugin = SamCdPlugin(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()
    process_events()


def test_toggle_opens_and_closes_one_dock(plugin, qgis_iface) -> None:
    main_window = qgis_iface.mainWindow()
    docks, actions = our_widgets(main_window)
    assert docks == [] and len(actions) == 2  # the dock is built on first use
    toggle = plugin.dock_action
    assert toggle.isCheckable() and not toggle.icon().isNull()
    for _ in range(4):
        toggle.trigger()
        process_events()
        assert plugin.dock is not None and plugin.dock.isVisible()
        toggle.trigger()
        process_events()
        assert not plugin.dock.isVisible()
    assert len(our_widgets(main_window)[0]) == 1
    # closing the dock itself unchecks the toggle
    toggle.trigger()
    plugin.dock.close()
    process_events()
    assert not toggle.isChecked()
    del docks, actions, toggle


def test_unload_with_the_dock_open_and_running_leaves_nothing(qgis_iface, qgis_processing, clean_samcd_settings,
                                                              shown_main_window, qgis_new_project, norcia,
                                                              tiny_checkpoint, tmp_path: Path) -> None:
    main_window = qgis_iface.mainWindow()
    checkpoint_with_meta(tiny_checkpoint, clean_samcd_settings / "tiny.pt")
    for name, source in (("big before", norcia.before), ("big after", norcia.after)):
        layer = QgsRasterLayer(str(upscaled_copy(source, tmp_path / f"{name.replace(' ', '_')}.tif", 4)), name)
        qgis_new_project.addMapLayer(layer)
        del layer
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    plugin = SamCdPlugin(qgis_iface)
    plugin.initGui()
    try:
        plugin.dock_action.trigger()
        dock = plugin.dock
        assert dock.isVisible()
        assert wait_until(lambda: not dock.checking(), timeout_milliseconds=120_000)  # the table is filled in
        dock.select_checkpoint(clean_samcd_settings / "tiny.pt")
        dock.device_combo.setCurrentText("cpu")
        dock.output_widget.setFilePath(str(out_dir))
        dock.detect_button.click()
        assert wait_until(lambda: dock.progress_bar.value() > 0, timeout_milliseconds=120_000)
        assert running_tasks()
        del dock
    finally:
        plugin.unload()
    process_events()
    assert wait_until(lambda: not running_tasks() and not detection_task._ACTIVE, timeout_milliseconds=120_000)
    process_events()
    assert our_widgets(main_window) == ([], [])
    assert QgsApplication.processingRegistry().providerById("sam_cd") is None
    assert plugin.dock is None and plugin.dock_action is None
    assert sorted(out_dir.iterdir()) == []  # the cancelled run wrote nothing
    QgsProject.instance().clear()


def test_the_plugin_keeps_its_engine_in_the_profile_and_stops_it_on_unload(qgis_iface, qgis_processing,
                                                                            clean_samcd_settings, shown_main_window,
                                                                            monkeypatch) -> None:
    import os
    import sys

    from sam_cd_plugin import runtime
    from sam_cd_plugin.engine.service import get_engine

    monkeypatch.delenv("SAM_CD_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("SAM_CD_ENGINE", "worker")
    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)  # an engine environment, registered
    plugin = SamCdPlugin(qgis_iface)
    plugin.initGui()
    try:
        assert runtime.runtime_root() == Path(QgsApplication.qgisSettingsDirPath()) / "sam_cd" / "runtime"
        plugin.dock_action.trigger()
        assert wait_until(lambda: not plugin.dock.checking(), timeout_milliseconds=120_000)
        worker = get_engine().stats()["pid"]  # the worker that answered the dock's checks
        assert worker != os.getpid()
    finally:
        plugin.unload()
        runtime.set_runtime_root(None)
    process_events()
    assert wait_until(lambda: not Path(f"/proc/{worker}").exists() or
                      Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z", timeout_milliseconds=30_000)
