"""Opens the sam-cd dock in a fresh QGIS process the way a user does and reports what that cost.

Run by ``test_qgis_dock_runtime.py`` as ``python open_dock_probe.py SETUP_JSON``: ``{"weights":
{encoder key: weights file}, "checkpoint_folder": folder}``, the user's earlier choices.
Prints one JSON object: the modules the process imported, which thread opened a weights file,
the GUI thread's time to build and show the dock, the longest stall of its event loop until the
checks were answered, and what the table and the weights rows then show.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

SETUP = json.loads(sys.argv[1])
WEIGHTS: dict[str, str] = SETUP["weights"]
WATCHED = {str(Path(p).resolve()) for p in WEIGHTS.values()}
OPENS: list[dict[str, object]] = []
GUI_THREAD = threading.get_ident()


def record_opens(event: str, args: tuple) -> None:
    """Audit hook: every ``open`` of a watched weights file, with the thread that did it."""
    if event != "open" or not args or not isinstance(args[0], (str, bytes, Path)):
        return
    path = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    try:
        resolved = str(Path(path).resolve())
    except (OSError, ValueError):
        return
    if resolved in WATCHED:
        OPENS.append({"path": resolved, "gui_thread": threading.get_ident() == GUI_THREAD})


sys.addaudithook(record_opens)

from qgis.core import QgsApplication  # noqa: E402
from qgis.gui import QgsMessageBar  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, QTimer  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow  # noqa: E402

QCoreApplication.setOrganizationName(QgsApplication.QGIS_ORGANIZATION_NAME)
QCoreApplication.setApplicationName(QgsApplication.QGIS_APPLICATION_NAME)
APP = QgsApplication([], True)
APP.initQgis()


class Iface:
    """The two parts of QGIS' iface the dock uses."""

    def __init__(self) -> None:
        self.window = QMainWindow()
        self.bar = QgsMessageBar(self.window)

    def mainWindow(self) -> QMainWindow:  # noqa: N802
        return self.window

    def messageBar(self) -> QgsMessageBar:  # noqa: N802
        return self.bar


def main() -> dict[str, object]:
    from sam_cd_plugin.engine.service import shutdown_engine
    from sam_cd_plugin.gui.checkpoint_table import COLUMNS
    from sam_cd_plugin.gui.settings import SamCdSettings
    from sam_cd_plugin.processing import options

    options.set_checkpoint_folder(SETUP["checkpoint_folder"])
    settings = SamCdSettings()
    for key, path in WEIGHTS.items():  # chosen in an earlier session
        settings.set_weights_path(key, path)
    iface = Iface()
    started = time.perf_counter()
    from sam_cd_plugin.gui.dock_widget import SamCdDockWidget

    imported = time.perf_counter()
    dock = SamCdDockWidget(iface, iface.mainWindow())
    dock.show()
    QCoreApplication.processEvents()
    shown = time.perf_counter()
    rows_while_checking = [dock.checkpoint_proxy.index(r, 0).data() for r in range(dock.checkpoint_proxy.rowCount())]

    ticks = [time.perf_counter()]
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    heartbeat.start(10)
    deadline = time.monotonic() + 600
    while dock.checking() and time.monotonic() < deadline:
        APP.processEvents()
        time.sleep(0.002)
    heartbeat.stop()
    ticks.append(time.perf_counter())
    proxy = dock.checkpoint_proxy
    report = {
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ultralytics", "open_clip")),
        "weights_opens": OPENS,
        "import_s": imported - started,
        "open_s": shown - imported,
        "longest_stall_s": max(b - a for a, b in zip(ticks, ticks[1:])),
        "settled": not dock.checking(),
        "rows_while_checking": rows_while_checking,
        "rows": [{COLUMNS[c]: proxy.index(r, c).data() or "" for c in range(len(COLUMNS))} for r in range(proxy.rowCount())],
        "weights": {key: dock.weights_panel.status(key).state.value for key in dock.weights_panel.rows},
        "device": dock.device_label.text(),
        "banner_visible": not dock.banner.isHidden(),
    }
    dock.shutdown()
    shutdown_engine()
    return report


print(json.dumps(main()))
sys.stdout.flush()
os._exit(0)  # skip exitQgis(): nothing to save, and it may crash on widgets left to Python's GC
