"""The plugin as QGIS sees it: metadata, light start-up, load/unload through qgis.utils."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
import qgis.utils
from pytest_qgis.utils import process_events
from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QDialog

try:  # Qt6
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5
    from qgis.PyQt.QtWidgets import QAction

import sam_cd_plugin
from samcd_qgis_helpers import ALGORITHM_ID, REPO

PACKAGE = "sam_cd_plugin"
ACTION_NAME = "samCdDetectChangesAction"


def _metadata() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(REPO / "metadata.txt", encoding="utf-8")
    return parser


def test_metadata_has_what_qgis_and_the_plugin_repository_need(plugin_dir: Path) -> None:
    general = _metadata()["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                "repository", "tracker", "category", "icon", "hasProcessingProvider"):
        assert general.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert general["name"] == "SAM Change Detection (sam-cd)"
    assert general["qgisMinimumVersion"] == "3.22"
    # QGIS 4 (Qt6) is not declared until a QGIS 4 build has run the tests (README "Tested with")
    assert general["qgisMaximumVersion"] == "3.99"
    assert not general.getboolean("supportsQt6", fallback=False)
    assert general["version"] == sam_cd_plugin.__version__
    assert general["hasProcessingProvider"] == "yes"
    assert general.getboolean("experimental") is True
    assert "torch" in general["about"] and "ultralytics" in general["about"]
    # the icon path is relative to the plugin folder of the packaged layout
    assert (plugin_dir / PACKAGE / general["icon"]).is_file()


def test_icon_is_a_64px_image() -> None:
    from qgis.PyQt.QtGui import QImage

    image = QImage(str(REPO / "resources" / "icon.png"))
    assert (image.width(), image.height()) == (64, 64)
    assert image.hasAlphaChannel()


def test_plugin_start_does_not_import_torch() -> None:
    """Loading the plugin and its provider must stay light: torch only when an algorithm runs."""
    code = (
        "import sys\n"
        "import sam_cd_plugin, sam_cd_plugin.plugin, sam_cd_plugin.processing.provider\n"
        "heavy = sorted(m for m in ('torch', 'ultralytics', 'sam_cd_plugin.engine.detector') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.fixture
def qgis_plugin_machinery(plugin_dir: Path):
    """qgis.utils pointed at ``plugin_dir`` with the sam_cd_plugin modules imported afresh from it.

    The modules already imported by other tests are set aside and restored afterwards, so the
    plugin really is imported from the plugin folder, as QGIS does it.
    """
    saved_modules = {k: v for k, v in sys.modules.items() if k == PACKAGE or k.startswith(PACKAGE + ".")}
    for name in saved_modules:
        del sys.modules[name]
    saved = (list(qgis.utils.plugin_paths), list(qgis.utils.available_plugins), dict(qgis.utils.plugins_metadata_parser))
    sys.path.insert(0, str(plugin_dir))
    qgis.utils.plugin_paths[:] = [str(plugin_dir)]
    qgis.utils.updateAvailablePlugins()
    try:
        yield qgis.utils
    finally:
        if qgis.utils.isPluginLoaded(PACKAGE):
            qgis.utils.unloadPlugin(PACKAGE)
        qgis.utils.plugin_paths[:] = saved[0]
        qgis.utils.available_plugins[:] = saved[1]
        qgis.utils.plugins_metadata_parser = saved[2]
        sys.path.remove(str(plugin_dir))
        for name in [k for k in sys.modules if k == PACKAGE or k.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        sys.modules.update(saved_modules)


def _our_actions(main_window) -> list:
    return main_window.findChildren(QAction, ACTION_NAME)


def _algorithm_dialogs(main_window) -> list:
    return [d for d in main_window.findChildren(QDialog) if hasattr(d, "algorithm") and d.isVisible()]


@pytest.fixture
def iface_with_browser_model(qgis_iface, monkeypatch):
    """pytest-qgis' iface stub plus the real browser model the Processing dialog asks for."""
    from qgis.gui import QgsBrowserGuiModel

    model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)
    yield qgis_iface
    del model


def test_plugin_loads_and_unloads_cleanly(
    qgis_plugin_machinery, iface_with_browser_model, qgis_processing, plugin_dir: Path
) -> None:
    utils = qgis_plugin_machinery
    qgis_iface = iface_with_browser_model
    registry = QgsApplication.processingRegistry()
    main_window = qgis_iface.mainWindow()
    assert registry.providerById("sam_cd") is None
    assert PACKAGE in utils.available_plugins
    assert utils.pluginMetadata(PACKAGE, "hasProcessingProvider") == "yes"

    assert utils.loadPlugin(PACKAGE)
    assert Path(sys.modules[PACKAGE].__file__).parent == plugin_dir / PACKAGE  # imported from the plugin folder
    assert utils.startPlugin(PACKAGE)
    assert utils.isPluginLoaded(PACKAGE)

    provider = registry.providerById("sam_cd")
    assert provider is not None
    assert provider.name() == "SAM change detection"
    assert registry.algorithmById(ALGORITHM_ID) is not None
    actions = _our_actions(main_window)
    assert len(actions) == 1
    assert not actions[0].icon().isNull()

    # the menu/toolbar action opens the Processing dialog of the algorithm
    actions[0].trigger()
    process_events()
    dialogs = _algorithm_dialogs(main_window)
    assert [d.algorithm().id() for d in dialogs] == [ALGORITHM_ID]
    del dialogs, actions, provider

    assert utils.unloadPlugin(PACKAGE)
    process_events()  # delivers the deleteLater() of actions and dialogs
    assert registry.providerById("sam_cd") is None
    assert registry.algorithmById(ALGORITHM_ID) is None
    assert _our_actions(main_window) == []
    assert _algorithm_dialogs(main_window) == []
    assert not utils.isPluginLoaded(PACKAGE)


def test_processing_only_start_registers_the_provider(qgis_plugin_machinery, qgis_processing) -> None:
    """What qgis_process does: initProcessing() without initGui()."""
    utils = qgis_plugin_machinery
    registry = QgsApplication.processingRegistry()
    assert utils.loadPlugin(PACKAGE)
    assert utils.startProcessingPlugin(PACKAGE)
    assert registry.algorithmById(ALGORITHM_ID) is not None
    assert utils.unloadPlugin(PACKAGE)
    assert registry.providerById("sam_cd") is None
