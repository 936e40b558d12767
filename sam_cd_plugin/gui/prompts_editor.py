"""Editable list of category text prompts ("building", "road", …) for SAM-CD checkpoints."""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["PromptsEditor"]

ENABLED_TIP = "Category prompts: only changes of these categories count (double-click a prompt to edit it)."


class PromptsEditor(QWidget):
    """A list of prompts with an entry line, Add and Remove; emits ``promptsChanged(list)``."""

    promptsChanged = pyqtSignal(list)  # noqa: N815

    def __init__(self, prompts: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setObjectName("promptsList")
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.list.setMaximumHeight(80)
        self.entry = QLineEdit(self)
        self.entry.setObjectName("promptEntry")
        self.entry.setPlaceholderText("new category, e.g. road")
        self.add_button = QPushButton("Add", self)
        self.add_button.setObjectName("promptAdd")
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setObjectName("promptRemove")
        row = QHBoxLayout()
        row.addWidget(self.entry, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(row)
        self.set_prompts(prompts)
        self.add_button.clicked.connect(self.add_from_entry)
        self.entry.returnPressed.connect(self.add_from_entry)
        self.remove_button.clicked.connect(self.remove_selected)
        self.list.itemChanged.connect(lambda _item: self._emit())
        self.setToolTip(ENABLED_TIP)

    def prompts(self) -> list[str]:
        texts = (self.list.item(i).text().strip() for i in range(self.list.count()))
        return list(dict.fromkeys(t for t in texts if t))

    def set_prompts(self, prompts: list[str]) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for text in dict.fromkeys(p.strip() for p in prompts if p.strip()):
            self._append(text)
        self.list.blockSignals(False)

    def _append(self, text: str) -> None:
        item = QListWidgetItem(text, self.list)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)

    def add_from_entry(self) -> None:
        text = self.entry.text().strip()
        if text and text not in self.prompts():
            self._append(text)
            self._emit()
        self.entry.clear()

    def remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self._emit()

    def set_usable(self, usable: bool, reason: str) -> None:
        """Enable for methods that use prompts; otherwise disable and say why in the tooltip."""
        self.setEnabled(usable)
        tip = ENABLED_TIP if usable else reason
        for widget in (self, self.list, self.entry, self.add_button, self.remove_button):
            widget.setToolTip(tip)

    def _emit(self) -> None:
        self.promptsChanged.emit(self.prompts())
