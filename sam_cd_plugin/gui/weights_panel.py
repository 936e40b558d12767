"""Weights panel of the dock: per encoder, the weights file in use, its status, "Download".

Status of a file: *found* (it loads into the encoder's architecture with the safe weights
validator), *missing* (no file chosen or the file is gone) or *wrong model* (unreadable, not
weights, or weights of another model; the tooltip gives the validator's reason). Loading a file
(CLIP is 338 MB) is the engine's job and runs in a background task: the row says *checking…*
until the answer arrives. Answers are cached per (file, size, modification time), so reopening
the dock does not reload files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QGridLayout, QLabel, QProgressBar, QPushButton, QWidget

from ..core.errors import SamCdError
from ..engine.service import get_engine
from .background import BackgroundCall, run_in_background
from .settings import SamCdSettings, weights_dir
from .weights_download import OFFICIAL_WEIGHTS, OfficialWeights, WeightsDownload

__all__ = ["WeightsPanel", "WeightsState", "WeightsStatus", "check_weights", "known_status"]

LOGGER = logging.getLogger(__name__)


class WeightsState(Enum):
    FOUND = "found"
    MISSING = "missing"
    WRONG = "wrong model"
    UNCHECKED = "not checked"
    CHECKING = "checking…"


@dataclass(frozen=True)
class WeightsStatus:
    state: WeightsState
    message: str = ""


_CACHE: dict[tuple[str, str, int, int], WeightsStatus] = {}


def _cache_key(key: str, file: Path) -> tuple[str, str, int, int]:
    stat = file.stat()
    return key, str(file.resolve()), stat.st_size, stat.st_mtime_ns


def known_status(key: str, path: str | Path | None) -> WeightsStatus | None:
    """The status of ``path`` known without reading it (missing, or checked before); None when
    only :func:`check_weights` can tell. Cheap: safe on the GUI thread."""
    if not path:
        return WeightsStatus(WeightsState.MISSING, "no weights file chosen")
    file = Path(path)
    if not file.is_file():
        return WeightsStatus(WeightsState.MISSING, f"{file} does not exist")
    return _CACHE.get(_cache_key(key, file))


def check_weights(key: str, path: str | Path | None) -> WeightsStatus:
    """Status of weights file ``path`` for encoder ``key``: the engine loads it (once, then cached).

    Reads the whole file: call it from a background task, never on the GUI thread.
    """
    known = known_status(key, path)
    if known is not None:
        return known
    file = Path(str(path))
    cache_key = _cache_key(key, file)
    try:
        answer = get_engine().check_weights(key, str(file))
    except (SamCdError, ImportError) as exc:  # no engine to ask (not installed, failed to start): not cached
        return WeightsStatus(WeightsState.UNCHECKED, f"cannot check: {exc}")
    if answer.get("ok"):
        status = WeightsStatus(WeightsState.FOUND, str(answer.get("message") or f"{file.name} loads into {key}"))
    else:
        status = WeightsStatus(WeightsState.WRONG, str(answer.get("message") or "not weights of this model"))
    _CACHE[cache_key] = status
    return status


_STATE_STYLE = {
    WeightsState.FOUND: "color: #1a7f37;",
    WeightsState.MISSING: "color: #9a6700;",
    WeightsState.WRONG: "color: #b42318; font-weight: bold;",
    WeightsState.UNCHECKED: "color: #57606a;",
    WeightsState.CHECKING: "color: #57606a; font-style: italic;",
}


@dataclass
class _Row:
    item: OfficialWeights
    picker: QgsFileWidget
    status: QLabel
    download: QPushButton


class WeightsPanel(QWidget):
    """Grid of encoder rows: name | file picker | status | Download."""

    statusChanged = pyqtSignal(str, object)  # key, WeightsStatus  # noqa: N815
    message = pyqtSignal(str, bool)  # text, is_error

    def __init__(self, settings: SamCdSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.rows: dict[str, _Row] = {}
        self.shown: dict[str, WeightsStatus] = {}
        self.checks: dict[tuple[str, str], BackgroundCall] = {}
        self.download: WeightsDownload | None = None
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for line, item in enumerate(OFFICIAL_WEIGHTS):
            picker = QgsFileWidget(self)
            picker.setObjectName(f"weightsPicker_{item.key}")
            picker.setStorageMode(QgsFileWidget.StorageMode.GetFile)
            picker.setFilter("PyTorch weights (*.pt *.pth *.bin *.safetensors);;All files (*)")
            picker.setDialogTitle(f"Weights file for {item.label} ({item.filename})")
            picker.setToolTip(f"Official file: {item.filename}")
            status = QLabel(self)
            status.setObjectName(f"weightsStatus_{item.key}")
            download = QPushButton("Download", self)
            download.setObjectName(f"weightsDownload_{item.key}")
            download.setToolTip(f"Download {item.filename} (~{item.approx_mb} MB) from {item.url} into {weights_dir()}")
            name = QLabel(item.label, self)
            name.setWordWrap(True)  # "CLIP ViT-B-32 (SAM-CD prompts)" must not set the dock's width
            layout.addWidget(name, line, 0)
            layout.addWidget(picker, line, 1)
            layout.addWidget(status, line, 2)
            layout.addWidget(download, line, 3)
            row = _Row(item, picker, status, download)
            self.rows[item.key] = row
            picker.setFilePath(self._initial_path(item))
            picker.fileChanged.connect(lambda path, key=item.key: self._path_changed(key, path))
            download.clicked.connect(lambda _checked=False, key=item.key: self.start_download(key))
        self.progress = QProgressBar(self)
        self.progress.setObjectName("weightsProgress")
        self.progress.setVisible(False)
        layout.addWidget(self.progress, len(OFFICIAL_WEIGHTS), 0, 1, 3)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("weightsCancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_download)
        layout.addWidget(self.cancel_button, len(OFFICIAL_WEIGHTS), 3)
        layout.setColumnStretch(1, 1)
        self.refresh()

    def _initial_path(self, item: OfficialWeights) -> str:
        chosen = self.settings.weights_path(item.key)
        if chosen:
            return chosen
        downloaded = weights_dir() / item.filename
        return str(downloaded) if downloaded.is_file() else ""

    def path(self, key: str) -> str:
        return self.rows[key].picker.filePath()

    def status(self, key: str) -> WeightsStatus:
        """What the row of ``key`` shows now (``CHECKING`` while its check runs)."""
        return self.shown[key]

    def checking(self) -> bool:
        """True while a check runs in the background."""
        return bool(self.checks)

    def refresh(self) -> None:
        """Show every row's status; files not checked yet are checked in the background."""
        for key in self.rows:
            self._show_status(key)

    def _path_changed(self, key: str, path: str) -> None:
        self.settings.set_weights_path(key, path)
        self._show_status(key)

    def _show_status(self, key: str) -> None:
        path = self.path(key)
        status = known_status(key, path)
        if status is None:
            status = WeightsStatus(WeightsState.CHECKING, f"loading {Path(path).name} to check it…")
            self._start_check(key, path)
        self._display(key, status)

    def _display(self, key: str, status: WeightsStatus) -> None:
        row = self.rows[key]
        row.status.setText(status.state.value)
        row.status.setToolTip(status.message)
        row.status.setStyleSheet(_STATE_STYLE[status.state])
        self.shown[key] = status
        self.statusChanged.emit(key, status)

    def _start_check(self, key: str, path: str, downloaded: bool = False) -> None:
        if (key, path) in self.checks:
            return
        self.checks[(key, path)] = run_in_background(
            f"sam-cd: checking {Path(path).name}",
            lambda _task: check_weights(key, path),
            lambda status, error: self._checked(key, path, status, error, downloaded),
        )

    def _checked(self, key: str, path: str, status: WeightsStatus | None, error: BaseException | None,
                 downloaded: bool) -> None:
        self.checks.pop((key, path), None)
        if error is not None or status is None:
            LOGGER.info("Checking %s failed: %s", path, error)
            status = WeightsStatus(WeightsState.UNCHECKED, f"cannot check: {error}")
        if downloaded:
            self._downloaded_checked(key, path, status)
        elif self.path(key) == path:  # the user may have picked another file meanwhile
            self._display(key, status)

    def forget_checks(self) -> None:
        """Let running checks end without touching this panel (it is being closed)."""
        for task in self.checks.values():
            task.forget()
        self.checks.clear()

    # -- download ----------------------------------------------------------------------------
    def start_download(self, key: str, url: str | None = None) -> None:
        """Download the official file of ``key`` (``url`` overrides the catalogue, e.g. a mirror)."""
        if self.download is not None and self.download.running:
            self.message.emit("A download is already running; wait for it or cancel it.", True)
            return
        download = WeightsDownload(self.rows[key].item, weights_dir(), url=url, parent=self)
        download.progress.connect(self._download_progress)
        download.succeeded.connect(lambda path, k=key: self._download_done(k, path))
        download.failed.connect(self._download_failed)
        self.download = download
        for row in self.rows.values():
            row.download.setEnabled(False)
        if download.start():
            self.progress.setRange(0, 0)
            self.progress.setVisible(True)
            self.cancel_button.setVisible(True)

    def cancel_download(self) -> None:
        if self.download is not None:
            self.download.cancel()

    def _download_progress(self, received: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(100 * received / total))

    def _download_ended(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        for row in self.rows.values():
            row.download.setEnabled(True)

    def _download_done(self, key: str, path: str) -> None:
        self._download_ended()
        self._display(key, WeightsStatus(WeightsState.CHECKING, f"loading the downloaded {Path(path).name} to check it…"))
        self._start_check(key, path, downloaded=True)

    def _downloaded_checked(self, key: str, path: str, status: WeightsStatus) -> None:
        if status.state == WeightsState.WRONG:  # files without a known sha256 are verified by loading
            Path(path).unlink(missing_ok=True)
            self._show_status(key)
            self.message.emit(
                f"The downloaded {Path(path).name} does not load as {key} weights, so it was deleted: {status.message}",
                True,
            )
        else:
            self.rows[key].picker.setFilePath(path)  # saves the setting and shows the status
            self._show_status(key)  # the same path again: fileChanged does not fire
            self.message.emit(f"Downloaded {Path(path).name} to {Path(path).parent}.", False)

    def _download_failed(self, text: str) -> None:
        self._download_ended()
        self.message.emit(text, True)
