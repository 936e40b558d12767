"""The δ table of the dock: one row per checkpoint file, built from the checkpoint metadata.

Rows come from the bundled ``resources/checkpoints``, the user's checkpoint folder and files
added one by one. Listing the files is cheap (:func:`scan_checkpoints`, rows say *checking…*);
their metadata comes from the engine (:func:`read_entry`, which loads the file: the dock calls it
in a background task). A file that cannot be read (corrupt, not a sam-cd checkpoint, no engine)
still gets a row, with the reason in the *Notes* column, so one bad file never breaks the panel.
Demonstration models (:func:`~..core.checkpoint_info.demo_reason`) say *demo* after the method and in *Notes*, in
another colour, with the reason in the row's tooltip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.PyQt.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qgis.PyQt.QtGui import QBrush, QColor

from ..core.checkpoint_info import demo_reason
from ..core.errors import DependencyError, SamCdError
from ..engine.service import get_engine
from ..paths import default_checkpoint

__all__ = ["CheckpointEntry", "CheckpointTableModel", "checkpoint_proxy", "read_entries", "read_entry",
           "scan_checkpoints"]

LOGGER = logging.getLogger(__name__)

#: Role holding the value a column sorts by (numbers sort as numbers, empty cells last).
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
#: Role holding the row's :class:`CheckpointEntry`.
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 2
COLUMNS = ("Method", "Encoder", "δ", "F1", "IoU", "Training data", "File", "Notes")
_METRIC_SPLITS = ("val", "eval", "train")
_ERROR_COLOUR = QColor(180, 30, 30)
_DEMO_COLOUR = QColor(160, 90, 0)


@dataclass(frozen=True)
class CheckpointEntry:
    """What the table shows about one checkpoint file."""

    path: Path
    source: str  # "bundled", "folder" or "added"
    method: str = ""
    encoder: str = ""
    delta: float | None = None
    training_data: tuple[str, ...] = ()
    f1: float | None = None
    iou: float | None = None
    metrics_split: str = ""  # which metrics the scores come from: val, eval or train
    prompts: tuple[str, ...] = ()
    error: str = ""
    checking: bool = False  # listed, metadata not read yet
    needs_engine: bool = False  # not read because the detection engine is not installed (error says so)
    demo: str = ""  # why this is a demonstration model (from its metadata); empty: it is not one
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return not self.error and not self.checking

    @property
    def uses_prompts(self) -> bool:
        """Only SAM-CD turns category text prompts into its semantic prior."""
        return self.method == "sam-cd"


def _metrics(meta: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """Validation F1/IoU, else the evaluation or training scores of older checkpoints."""
    metrics = meta.get("metrics") or {}
    for split in _METRIC_SPLITS:
        scores = metrics.get(split)
        if isinstance(scores, dict) and ("f1" in scores or "iou" in scores):
            f1, iou = scores.get("f1"), scores.get("iou")
            return (float(f1) if f1 is not None else None, float(iou) if iou is not None else None, split)
    return None, None, ""


def read_entry(path: Path, source: str) -> CheckpointEntry:
    """Read ``path``'s metadata through the engine into an entry; errors become its ``error`` text.

    Loads the checkpoint (in the engine worker or in-process): never call it on the GUI thread.
    """
    try:
        meta = get_engine().checkpoint_metadata(str(path))
    except (DependencyError, ImportError) as exc:
        return CheckpointEntry(path, source, error=str(exc), needs_engine=True)
    except SamCdError as exc:
        return CheckpointEntry(path, source, error=f"cannot read checkpoints: {exc}")
    if "error" in meta:
        LOGGER.info("Checkpoint %s is unreadable: %s", path, meta["error"])
        return CheckpointEntry(path, source, error=str(meta["error"]) or "unreadable")
    f1, iou, split = _metrics(meta)
    delta = meta.get("delta")
    data = (meta.get("training") or {}).get("data") or []
    return CheckpointEntry(
        path=path,
        source=source,
        method=str(meta.get("method", "")),
        encoder=str(meta.get("encoder", "")),
        delta=float(delta) if isinstance(delta, (int, float)) else None,
        training_data=tuple(str(d) for d in data) if isinstance(data, (list, tuple)) else (str(data),),
        f1=f1,
        iou=iou,
        metrics_split=split,
        prompts=tuple(str(p) for p in (meta.get("prompts") or [])),
        demo=demo_reason(meta) or "",
        meta=meta,
    )


def scan_checkpoints(folders: list[tuple[Path, str]], files: list[Path]) -> list[CheckpointEntry]:
    """Entries for every ``*.pt`` in ``folders`` (``(folder, source)`` pairs) plus ``files``, still
    ``checking`` (no file is opened; :func:`read_entries` fills them in).

    Each file appears once (first occurrence wins), in a stable order.
    """
    seen: set[Path] = set()
    entries: list[CheckpointEntry] = []
    candidates: list[tuple[Path, str]] = []
    for folder, source in folders:
        if folder.is_dir():
            candidates += [(p, source) for p in sorted(folder.glob("*.pt")) if p.is_file()]
    candidates += [(Path(f), "added") for f in files]
    for path, source in candidates:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        entries.append(CheckpointEntry(path, source, checking=True) if path.is_file() else
                       CheckpointEntry(path, source, error="file not found (moved or deleted?)"))
    return entries


def read_entries(entries: list[CheckpointEntry]) -> list[CheckpointEntry]:
    """``entries`` with the metadata of those still ``checking`` read (see :func:`read_entry`)."""
    return [read_entry(e.path, e.source) if e.checking else e for e in entries]


def bundled_checkpoint_folder() -> Path:
    return default_checkpoint().parent


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


class CheckpointTableModel(QAbstractTableModel):
    """Read-only table of :class:`CheckpointEntry` rows."""

    def __init__(self, entries: list[CheckpointEntry] | None = None, parent=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(parent)
        self._entries: list[CheckpointEntry] = list(entries or [])

    def set_entries(self, entries: list[CheckpointEntry]) -> None:
        self.beginResetModel()
        self._entries = list(entries)
        self.endResetModel()

    def entries(self) -> list[CheckpointEntry]:
        return list(self._entries)

    def entry(self, row: int) -> CheckpointEntry:
        return self._entries[row]

    def row_of(self, path: str | Path) -> int:
        """Row of the checkpoint at ``path`` (-1 if absent)."""
        target = str(Path(path))
        return next((i for i, e in enumerate(self._entries) if str(e.path) == target), -1)

    # -- Qt model API ------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return {
                "δ": "CEM drop ratio δ the model was trained with",
                "F1": "Change-class F1 on the validation pairs (or evaluation/training pairs when "
                      "the checkpoint has no validation scores; the cell says which)",
                "IoU": "Change-class IoU, same pairs as F1",
            }.get(COLUMNS[section])
        return None

    def flags(self, index: QModelIndex):
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable if index.isValid() else Qt.ItemFlag.NoItemFlags

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        column = index.column()
        if role == ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(entry, column)
        if role == SORT_ROLE:
            return self._sort_value(entry, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            if entry.error:
                return f"{entry.path}\nCannot be used: {entry.error}"
            if entry.checking:
                return f"{entry.path}\nReading its metadata…"
            if entry.demo:
                return f"{entry.path} ({entry.source})\nDemonstration model: {entry.demo}."
            return f"{entry.path} ({entry.source})"
        if role == Qt.ItemDataRole.ForegroundRole and entry.error and not entry.needs_engine:
            return QBrush(_ERROR_COLOUR)
        if role == Qt.ItemDataRole.ForegroundRole and entry.demo:
            return QBrush(_DEMO_COLOUR)
        return None

    @staticmethod
    def _display(entry: CheckpointEntry, column: int) -> str:
        name = COLUMNS[column]
        if name == "File":
            return entry.path.name
        if entry.error:
            return {"Method": "needs the engine" if entry.needs_engine else "unreadable", "Notes": entry.error}.get(name, "")
        if entry.checking:
            return {"Method": "checking…", "Notes": "reading the checkpoint"}.get(name, "")
        split = "" if entry.metrics_split in ("val", "") else f" ({entry.metrics_split})"
        notes = ["demo"] if entry.demo else []
        notes += ["bundled"] if entry.source == "bundled" else []
        if entry.prompts:
            notes.append(f"prompts: {', '.join(entry.prompts)}")
        values = {
            # the first column carries the mark too: the narrow dock hides *Notes* until scrolled
            "Method": f"{entry.method} (demo)" if entry.demo else entry.method,
            "Encoder": entry.encoder,
            "δ": _fmt(entry.delta, 2),
            "F1": _fmt(entry.f1) + (split if entry.f1 is not None else ""),
            "IoU": _fmt(entry.iou) + (split if entry.iou is not None else ""),
            "Training data": ", ".join(entry.training_data),
            "Notes": "; ".join(notes),
        }
        return values.get(name, "")

    @classmethod
    def _sort_value(cls, entry: CheckpointEntry, column: int):  # type: ignore[no-untyped-def]
        numbers = {"δ": entry.delta, "F1": entry.f1, "IoU": entry.iou}
        name = COLUMNS[column]
        if name in numbers:
            value = numbers[name]
            return -1.0 if value is None else value  # unknown scores sort below every real one
        return cls._display(entry, column).lower()


def checkpoint_proxy(model: CheckpointTableModel, parent=None) -> QSortFilterProxyModel:  # type: ignore[no-untyped-def]
    """A proxy sorting ``model`` by :data:`SORT_ROLE` (numbers as numbers)."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    return proxy
