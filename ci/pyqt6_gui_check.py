"""Builds the plugin's Qt-only GUI modules under PyQt6 (what QGIS 4 runs), without a QGIS 4 build.

Run by ``make test-pyqt6`` in a venv of PyQt6 (pinned in the Makefile) that also sees the system's
numpy and GDAL, as QGIS 4's Python does; PyQt5 must never be imported (checked). A stand-in
``qgis.PyQt`` package re-exports PyQt6's modules, as QGIS 4's ``qgis.PyQt`` does; nothing from
``qgis.core`` / ``qgis.gui`` exists here, so the modules that import them are listed as not checked
rather than faked. What is checked: import, widget construction, signals, enum arithmetic, model
roles, flags and proxy sorting of ``gui/prompts_editor.py`` and ``gui/checkpoint_table.py``.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QT_MODULES = ("QtCore", "QtGui", "QtWidgets", "QtNetwork")


def install_qgis_pyqt_shim(root: Path) -> None:
    """``qgis.PyQt.<module>`` = ``PyQt6.<module>`` (no qgis.core / qgis.gui)."""
    package = root / "qgis" / "PyQt"
    package.mkdir(parents=True)
    (root / "qgis" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for name in QT_MODULES:
        (package / f"{name}.py").write_text(f"from PyQt6.{name} import *  # noqa: F403\n")
    (package / "sip.py").write_text("from PyQt6.sip import *  # noqa: F403\n")
    sys.path[:0] = [str(root), str(REPO)]


def check_prompts_editor() -> None:
    from sam_cd_plugin.gui.prompts_editor import PromptsEditor

    seen: list[list[str]] = []
    editor = PromptsEditor(["building", " road ", "building"])
    editor.promptsChanged.connect(seen.append)
    assert editor.prompts() == ["building", "road"], editor.prompts()
    editor.entry.setText("water")
    editor.add_from_entry()
    assert seen[-1] == ["building", "road", "water"], seen
    editor.list.item(0).setSelected(True)
    editor.remove_selected()
    assert editor.prompts() == ["road", "water"], editor.prompts()
    editor.set_usable(False, "this checkpoint takes no prompts")
    assert not editor.isEnabled() and editor.toolTip() == "this checkpoint takes no prompts"


def check_checkpoint_table() -> None:
    from qgis.PyQt.QtCore import Qt

    from sam_cd_plugin.gui.checkpoint_table import (
        COLUMNS, ENTRY_ROLE, CheckpointEntry, CheckpointTableModel, checkpoint_proxy,
    )

    entries = [
        CheckpointEntry(Path("/m/a.pt"), "bundled", method="sam-cem-cd", encoder="fastsam-s", delta=0.3, f1=0.41),
        CheckpointEntry(Path("/m/b.pt"), "folder", method="sam2-cd", encoder="fastsam-s", delta=0.5, f1=0.72),
        CheckpointEntry(Path("/m/c.pt"), "added", error="not a sam-cd checkpoint"),
    ]
    model = CheckpointTableModel(entries)
    assert (model.rowCount(), model.columnCount()) == (3, len(COLUMNS))
    assert model.headerData(0, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole) == "Method"
    first = model.index(0, COLUMNS.index("δ"))
    assert model.data(first, Qt.ItemDataRole.DisplayRole) == "0.30"
    assert model.data(first, ENTRY_ROLE) is entries[0]
    assert model.data(model.index(2, 0), Qt.ItemDataRole.ForegroundRole) is not None  # error rows in red
    assert model.flags(first) & Qt.ItemFlag.ItemIsSelectable
    proxy = checkpoint_proxy(model)
    proxy.sort(COLUMNS.index("F1"), Qt.SortOrder.DescendingOrder)
    order = [proxy.data(proxy.index(row, COLUMNS.index("File")), Qt.ItemDataRole.DisplayRole) for row in range(3)]
    assert order == ["b.pt", "a.pt", "c.pt"], order


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    install_qgis_pyqt_shim(Path(tempfile.mkdtemp(prefix="samcd-pyqt6-")))
    from PyQt6.QtCore import PYQT_VERSION_STR, QT_VERSION_STR
    from PyQt6.QtWidgets import QApplication

    app = QApplication([])  # noqa: F841 (widgets need it alive)
    print(f"PyQt6 {PYQT_VERSION_STR}, Qt {QT_VERSION_STR}, Python {sys.version.split()[0]}")
    failures = 0
    for check in (check_prompts_editor, check_checkpoint_table):
        try:
            check()
            print(f"ok        {check.__name__}")
        except Exception as exc:  # noqa: BLE001 (report every check, then fail)
            failures += 1
            print(f"FAILED    {check.__name__}: {type(exc).__name__}: {exc}")
    for path in sorted((REPO / "sam_cd_plugin" / "gui").glob("*.py")) + [REPO / "sam_cd_plugin" / "plugin.py"]:
        parts = path.relative_to(REPO / "sam_cd_plugin").with_suffix("").parts
        name = ".".join(("sam_cd_plugin",) + tuple(p for p in parts if p != "__init__"))
        try:
            importlib.import_module(name)
            print(f"imported  {name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("qgis"):
                print(f"unchecked {name}: needs {exc.name}, which only a QGIS 4 build provides")
            else:
                failures += 1
                print(f"FAILED    {name}: {exc}")
        except Exception as exc:  # noqa: BLE001
            failures += 1
            print(f"FAILED    {name}: {type(exc).__name__}: {exc}")
    leaked = sorted(name for name in sys.modules if name.split(".")[0] == "PyQt5")
    if leaked:
        failures += 1
        print(f"FAILED    PyQt5 was imported under PyQt6: {', '.join(leaked)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
