"""QGIS 4 / Qt6 readiness: the plugin's source uses no idiom that breaks under PyQt6.

The rules follow the QGIS project's Qt5 -> Qt6 migration: Qt only through ``qgis.PyQt``,
``exec()`` instead of ``exec_()``, fully scoped enum members (``Qt.AlignmentFlag.AlignLeft``,
not ``Qt.AlignLeft``), no QFlags class names (``Qt.ItemFlags``), no ``QVariant`` type codes or
null values, ``QAction`` from ``QtGui`` (Qt5 fallback allowed), and no class or method Qt6 removed.
Enum members are recognised by resolving each ``Name.attr...`` chain against this QGIS's own
bindings, so a member is caught whichever class it hangs off.
"""

from __future__ import annotations

import ast
import enum
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from qgis.PyQt.QtCore import QObject, Qt

PACKAGE = Path(__file__).resolve().parents[2] / "sam_cd_plugin"

# Qt classes and methods that Qt6 removed: (pattern, advice).
REMOVED_API = [
    (re.compile(r"\bQRegExp\w*"), "QRegExp* is gone in Qt6: use QRegularExpression*"),
    (re.compile(r"\b(QMatrix|QGLWidget|QSound)\b"), "class gone in Qt6 (QTransform, QOpenGLWidget, QSoundEffect)"),
    (re.compile(r"\.(activated|currentIndexChanged|highlighted)\[str\]|\.buttonClicked\[int\]"),
     "overloaded signal gone in Qt6: use textActivated / currentTextChanged / textHighlighted / idClicked"),
    (re.compile(r"\bQPalette(\.ColorRole)?\.(Background|Foreground)\b"), "QPalette.Background/Foreground are gone: "
     "use ColorRole.Window / ColorRole.WindowText"),
    (re.compile(r"\.setCodec\(|QLibraryInfo\.location\("), "gone in Qt6 (QTextStream.setEncoding, QLibraryInfo.path)"),
    (re.compile(r"\bQDesktopWidget\b|\.desktop\(\)"), "QDesktopWidget is gone in Qt6: use QScreen"),
    (re.compile(r"\bQTextCodec\b"), "QTextCodec is gone in Qt6: use Python str encodings"),
    (re.compile(r"\bQStringRef\b"), "QStringRef is gone in Qt6"),
    (re.compile(r"\.setMargin\("), "QLayout.setMargin is gone in Qt6: use setContentsMargins"),
    (re.compile(r"FilterRegExp\b"), "QSortFilterProxyModel.*FilterRegExp is gone: use *FilterRegularExpression"),
    (re.compile(r"\bfontMetrics\(\)\.width\("), "QFontMetrics.width is gone in Qt6: use horizontalAdvance"),
    (re.compile(r"\.toTime_t\(|\.setTime_t\("), "QDateTime time_t methods are gone: use toSecsSinceEpoch"),
    (re.compile(r"\bQt\.MidButton\b|\.MidButton\b"), "MidButton is gone in Qt6: use MouseButton.MiddleButton"),
]
QT_BINDINGS = ("PyQt5", "PyQt6", "PySide2", "PySide6", "sip")
SIP_ENUM_TYPE = type(Qt.AlignmentFlag)  # sip.enumtype, the metaclass of PyQt5 enums
SIP_WRAPPER_TYPE = type(QObject)  # sip.wrappertype
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut", "QUndoCommand", "QUndoStack", "QFileSystemModel"}


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _is_enum_member(obj: object) -> bool:
    return isinstance(obj, enum.Enum) or isinstance(type(obj), SIP_ENUM_TYPE)


def _is_enum_type(obj: object) -> bool:
    return isinstance(obj, SIP_ENUM_TYPE) or (isinstance(obj, type) and issubclass(obj, enum.Enum))


def _is_qflags_class(obj: object) -> bool:
    """PyQt5's QFlags wrappers (``Qt.ItemFlags``, ``Qt.Alignment``); PyQt6 has only the enum."""
    return (isinstance(obj, SIP_WRAPPER_TYPE) and "." in obj.__qualname__ and hasattr(obj, "__invert__")
            and hasattr(obj, "__int__") and not hasattr(obj, "metaObject"))


class _Scanner(ast.NodeVisitor):
    """Collects the hits of one module."""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.hits: list[Hit] = []
        self.bindings: dict[str, object] = {}  # local names imported from qgis.*
        self._in_importerror_handler = 0

    def hit(self, node: ast.AST, message: str) -> None:
        self.hits.append(Hit(self.rel, node.lineno, message))

    def visit_Try(self, node: ast.Try) -> None:
        for stmt in node.body + node.orelse + node.finalbody:
            self.visit(stmt)
        for handler in node.handlers:
            catches_import = handler.type is not None and "ImportError" in ast.unparse(handler.type)
            self._in_importerror_handler += catches_import
            for stmt in handler.body:
                self.visit(stmt)
            self._in_importerror_handler -= catches_import

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in QT_BINDINGS:
                self.hit(node, f"import {alias.name}: import Qt through qgis.PyQt")
            elif alias.name.startswith("qgis"):
                self._bind(alias.asname or alias.name.split(".")[0],
                           alias.name if alias.asname else alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.split(".")[0] in QT_BINDINGS:
            self.hit(node, f"from {module} import ...: import Qt through qgis.PyQt")
            return
        if not module.startswith("qgis"):
            return
        for alias in node.names:
            if module == "qgis.PyQt.QtWidgets" and alias.name in MOVED_TO_QTGUI and not self._in_importerror_handler:
                self.hit(node, f"{alias.name} lives in QtGui under Qt6: import it from qgis.PyQt.QtGui "
                               "(QtWidgets only as the ImportError fallback)")
            if alias.name == "QVariant":
                self.hit(node, "QVariant: Qt6 drops its type codes and null values "
                               "(use QMetaType.Type and qgis.core NULL)")
            try:
                owner = importlib.import_module(module)
                value = getattr(owner, alias.name, None)
                if value is None:
                    value = importlib.import_module(f"{module}.{alias.name}")
            except ImportError:  # e.g. QAction from QtGui on Qt5: the fallback branch covers it
                continue
            self.bindings[alias.asname or alias.name] = value

    def _bind(self, name: str, module: str) -> None:
        try:
            self.bindings[name] = importlib.import_module(module)
        except ImportError:
            pass

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "exec_":
            self.hit(node, "exec_() is gone in PyQt6: call exec()")
        chain: list[str] = []
        base: ast.AST = node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in self.bindings:
            self._check_chain(node, base.id, chain)
            return  # the chain is checked whole; don't revisit its inner attributes
        self.generic_visit(node)

    def _check_chain(self, node: ast.Attribute, root: str, chain: list[str]) -> None:
        parent = self.bindings[root]
        dotted = root
        for attr in chain:
            value = getattr(parent, attr, None)
            dotted += f".{attr}"
            if value is None:
                return
            if _is_enum_member(value) and not _is_enum_type(parent):
                scoped = f"{dotted.rsplit('.', 1)[0]}.{type(value).__name__}.{attr}"
                self.hit(node, f"unscoped enum {dotted}: write {scoped}")
                return
            if _is_qflags_class(value):
                self.hit(node, f"{dotted} is a QFlags class PyQt6 does not have: use the enum type")
                return
            parent = value


def scan_source(source: str, rel: str) -> list[Hit]:
    """The Qt6-breaking idioms in one module's source."""
    scanner = _Scanner(rel)
    scanner.visit(ast.parse(source))
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#", 1)[0]
        for pattern, advice in REMOVED_API:
            if pattern.search(code):
                scanner.hits.append(Hit(rel, number, advice))
    return sorted(scanner.hits, key=lambda h: h.line)


def scan_package(root: Path = PACKAGE) -> list[Hit]:
    hits: list[Hit] = []
    for path in sorted(root.rglob("*.py")):
        hits += scan_source(path.read_text(encoding="utf-8"), str(path.relative_to(root.parent)))
    return hits


def test_plugin_source_has_no_qt6_breaking_idiom():
    hits = scan_package()
    assert not hits, "Qt6-breaking idioms (QGIS 4):\n" + "\n".join(map(str, hits))


@pytest.mark.parametrize("planted, expected", [
    ("dialog.exec_()", "exec_() is gone"),
    ("from qgis.PyQt.QtCore import Qt\nalign = Qt.AlignLeft", "write Qt.AlignmentFlag.AlignLeft"),
    ("from qgis.PyQt import QtCore\nalign = QtCore.Qt.AlignRight", "unscoped enum QtCore.Qt.AlignRight"),
    ("from qgis.core import Qgis\nlevel = Qgis.Critical", "write Qgis.MessageLevel.Critical"),
    ("from qgis.PyQt.QtCore import Qt\ndef f(x: Qt.ItemFlags): ...", "QFlags class"),
    ("from PyQt5.QtWidgets import QDialog", "import Qt through qgis.PyQt"),
    ("from qgis.PyQt.QtWidgets import QAction", "lives in QtGui"),
    ("from qgis.PyQt.QtCore import QVariant", "QVariant"),
    ("layout.setMargin(0)", "setContentsMargins"),
    ("combo.currentIndexChanged[str].connect(f)", "overloaded signal"),
    ("v = QRegExpValidator()", "QRegularExpression"),
])
def test_scan_catches_a_planted_idiom(planted, expected):
    hits = scan_source(planted, "planted.py")
    assert any(expected in hit.message for hit in hits), hits


def test_scan_accepts_the_scoped_and_fallback_forms():
    source = (
        "from qgis.PyQt.QtCore import Qt\nfrom qgis.core import Qgis\n"
        "try:\n    from qgis.PyQt.QtGui import QAction\nexcept ImportError:\n"
        "    from qgis.PyQt.QtWidgets import QAction\n"
        "align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop\n"
        "level = Qgis.MessageLevel.Critical\ndialog.exec()\n"
    )
    assert scan_source(source, "scoped.py") == []
