"""Fixtures for the QGIS tier: Processing, the sam_cd provider, a packaged plugin folder, samples.

pytest-qgis starts one QgsApplication for the session (``qgis_app``) and patches
``qgis.utils.iface`` with its stub before this file is imported.

Rule for every test here: never keep a QgsMapLayer alive past the test (open it, read what you
need into plain Python values, ``del`` it), or the interpreter may crash in ``exitQgis()``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
import shutil
from pathlib import Path

import pytest

QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"  # Debian location of the Processing plugin
if Path(QGIS_PYTHON_PLUGINS).is_dir() and QGIS_PYTHON_PLUGINS not in sys.path:
    sys.path.append(QGIS_PYTHON_PLUGINS)

from qgis.core import QgsApplication  # noqa: E402

from sam_cd_plugin.processing.provider import PROVIDER_ID, SamCdProvider  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PLUGIN_PACKAGE = "sam_cd_plugin"


@pytest.fixture(scope="module")
def sam_cd_provider(qgis_processing: None):  # noqa: ARG001
    """The sam_cd provider registered in the (initialised) Processing registry for one test module."""
    registry = QgsApplication.processingRegistry()
    assert registry.providerById(PROVIDER_ID) is None, "another sam_cd provider is still registered"
    provider = SamCdProvider()
    assert registry.addProvider(provider)
    yield provider
    registry.removeProvider(PROVIDER_ID)  # the registry owns and deletes it


@dataclass(frozen=True)
class SamplePair:
    before: Path
    after: Path
    label: Path


def copy_site(shared_data: Path, site: str, dest: Path) -> SamplePair:
    """Copies of a ``geotiff/<site>`` sample: QGIS writes .aux.xml next to rasters it loads, and
    the shared samples must stay untouched."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("before.tif", "after.tif", "label.tif"):
        src = shared_data / "geotiff" / site / name
        assert src.is_file(), src
        shutil.copyfile(src, dest / name)
    return SamplePair(dest / "before.tif", dest / "after.tif", dest / "label.tif")


@pytest.fixture(scope="session")
def norcia(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SamplePair:
    """OSCD Norcia: georeferenced Sentinel-2 GeoTIFFs (EPSG:4326, 385x241, 4 bands uint16)."""
    return copy_site(shared_data, "oscd_norcia", tmp_path_factory.mktemp("oscd_norcia"))


@pytest.fixture(scope="session")
def rio(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SamplePair:
    """OSCD Rio: georeferenced Sentinel-2 GeoTIFFs, a second site for batch runs."""
    return copy_site(shared_data, "oscd_rio", tmp_path_factory.mktemp("oscd_rio"))


@pytest.fixture(scope="session")
def aerial(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> SamplePair:
    """LEVIR-CD's 1024² image test_102 (0.5 m aerial, building change; never in the bundled
    model's training) as GeoTIFFs on a UTM grid, as a user's orthophotos would come."""
    from osgeo import gdal, osr

    dest = tmp_path_factory.mktemp("aerial")
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32650)
    paths = []
    for folder, name in (("A", "before.tif"), ("B", "after.tif"), ("label", "label.tif")):
        ds = gdal.Translate(str(dest / name), str(shared_data / "LEVIR-CD-1024" / folder / "test_102.png"),
                            format="GTiff", outputSRS=srs.ExportToWkt(),
                            outputBounds=[500000, 3550512, 500512, 3550000])  # 0.5 m pixels
        ds = None  # flushed and closed
        paths.append(dest / name)
    return SamplePair(*paths)


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QGIS plugin folder holding ``sam_cd_plugin`` laid out like the packaged zip.

    Mirrors ``make package``: the package, plus metadata.txt, icon.png, LICENSE and resources/
    inside it. Entries are symlinks to the working tree, so the tests run the current code.
    Returns the folder to put on QGIS_PLUGINPATH (it contains ``sam_cd_plugin/``).
    """
    root = tmp_path_factory.mktemp("qgis_plugins")
    package = root / PLUGIN_PACKAGE
    package.mkdir()
    for entry in (REPO / PLUGIN_PACKAGE).iterdir():
        if entry.name == "__pycache__":
            continue
        (package / entry.name).symlink_to(entry)
    (package / "resources").symlink_to(REPO / "resources")
    (package / "metadata.txt").symlink_to(REPO / "metadata.txt")
    (package / "icon.png").symlink_to(REPO / "resources" / "icon.png")
    if (REPO / "LICENSE").is_file():
        (package / "LICENSE").symlink_to(REPO / "LICENSE")
    return root


# -- additions for the dock tests --------------------------------------------------------------------


@pytest.fixture
def clean_samcd_settings(tmp_path: Path):
    """No sam-cd QgsSettings from earlier tests; the user checkpoint folder is an empty temp folder."""
    from qgis.core import QgsSettings

    from sam_cd_plugin.processing import options

    def clear() -> None:
        settings = QgsSettings()
        settings.remove("sam_cd")
        for name in (options.CHECKPOINT_FOLDER, options.DEVICE):
            settings.remove("Processing/Configuration/" + name)

    clear()
    folder = tmp_path / "user_checkpoints"
    folder.mkdir()
    options.set_checkpoint_folder(folder)
    yield folder
    clear()


@pytest.fixture
def iface_browser(qgis_iface, monkeypatch):
    """pytest-qgis' iface stub plus the real browser model that Processing dialogs ask for."""
    from qgis.gui import QgsBrowserGuiModel

    model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)
    yield qgis_iface
    del model


@pytest.fixture(scope="session")
def fastsam_s_file(tmp_path_factory) -> Path:
    """A FastSAM-s weights file in the official ultralytics format (fresh architecture, fp16)."""
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    path = tmp_path_factory.mktemp("weights") / "FastSAM-s.pt"
    torch.save({"model": SegmentationModel("yolov8s-seg.yaml", nc=1, verbose=False).half(), "ema": None}, path)
    return path


@pytest.fixture
def iface_layer_tree(qgis_iface, monkeypatch):
    """pytest-qgis' iface stub with a real layer tree view of the project: from QGIS 3.44 on,
    Processing hands ``iface.layerTreeView()`` to C++ (``QgsProcessingGuiUtils.addResultLayers``),
    which refuses the stub's mock."""
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsLayerTreeView

    model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot())
    view = QgsLayerTreeView()
    view.setModel(model)
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: view, raising=False)
    yield qgis_iface
    del view, model


@pytest.fixture
def make_dock(qgis_iface, clean_samcd_settings):  # noqa: ARG001
    """Opens docks like the user (and waits for their checks); afterwards shuts them down and waits
    for cancelled runs to end."""
    from pytest_qgis.utils import process_events, wait_until

    from sam_cd_plugin.gui import detection_task
    from sam_cd_plugin.gui.dock_widget import SamCdDockWidget
    from samcd_qgis_helpers import DOCK_TIMEOUT_MS, settle

    docks: list[SamCdDockWidget] = []
    qgis_iface.messageBar().clear_messages()

    def make(wait: bool = True) -> SamCdDockWidget:
        dock = SamCdDockWidget(qgis_iface, qgis_iface.mainWindow())
        docks.append(dock)
        if wait:
            settle(dock)  # the table, weights rows and device line say "checking…" until the engine answers
        return dock

    yield make
    for dock in docks:
        dock.shutdown()
        dock.setParent(None)
        dock.deleteLater()
    assert wait_until(lambda: not detection_task._ACTIVE, timeout_milliseconds=DOCK_TIMEOUT_MS)
    process_events()
