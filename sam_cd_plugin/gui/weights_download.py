"""Official encoder / CLIP weight files and their download through QGIS' network manager.

Downloads go through ``QgsNetworkAccessManager`` (so the proxy, SSL and authentication settings
of QGIS apply), asynchronously, streamed to ``<name>.part`` in the user's data folder
(``<profile>/sam_cd/weights``, never the plugin folder), hashed while they arrive and renamed
only when complete and verified. Only ``https`` URLs are fetched (``file`` URLs too, for a
local mirror).

Verification, honestly: the sha256 of OpenAI's CLIP ViT-B-32 file is published (it is part of
its URL and checked by OpenAI's own loader), so it is checked here. For the ultralytics files
(FastSAM, SAM2, MobileSAM) no published sha256 was available when this was written (the build
machine is offline), so ``sha256`` is ``None`` and the file is verified instead by loading it
with the encoder weights validator (``models.encoders``), as the weights panel does for files
the user picks. Fill in a sha256 below once it is known and it is checked as well.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsNetworkAccessManager
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSignal
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

__all__ = ["OFFICIAL_WEIGHTS", "OfficialWeights", "WeightsDownload", "official_weights"]

LOGGER = logging.getLogger(__name__)

#: ultralytics publishes its model files as release assets of this repository and tag
#: (the tag ultralytics 8.4 itself downloads from).
ULTRALYTICS_ASSETS = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
ALLOWED_SCHEMES = ("https", "file")
#: Larger than any official weights file (SAM2-B+ ≈ 320 MB, CLIP ViT-B-32 ≈ 350 MB).
MAX_DOWNLOAD_BYTES = 1024 ** 3


@dataclass(frozen=True)
class OfficialWeights:
    """One official weights file a model part can use."""

    key: str  # encoder name as in checkpoints (fastsam-s, ...) or "clip-vit-b-32"
    label: str
    filename: str
    url: str
    sha256: str | None  # None: not published/known, verified by loading instead
    approx_mb: int


OFFICIAL_WEIGHTS: tuple[OfficialWeights, ...] = (
    OfficialWeights("fastsam-s", "FastSAM-s", "FastSAM-s.pt", ULTRALYTICS_ASSETS + "FastSAM-s.pt", None, 23),
    OfficialWeights("fastsam-x", "FastSAM-x", "FastSAM-x.pt", ULTRALYTICS_ASSETS + "FastSAM-x.pt", None, 138),
    OfficialWeights("sam2-t", "SAM2 Hiera-T", "sam2_t.pt", ULTRALYTICS_ASSETS + "sam2_t.pt", None, 78),
    OfficialWeights("sam2-s", "SAM2 Hiera-S", "sam2_s.pt", ULTRALYTICS_ASSETS + "sam2_s.pt", None, 92),
    OfficialWeights("sam2-b+", "SAM2 Hiera-B+", "sam2_b.pt", ULTRALYTICS_ASSETS + "sam2_b.pt", None, 162),
    OfficialWeights("mobilesam", "MobileSAM", "mobile_sam.pt", ULTRALYTICS_ASSETS + "mobile_sam.pt", None, 40),
    OfficialWeights(
        "clip-vit-b-32",
        "CLIP ViT-B-32 (SAM-CD prompts)",
        "ViT-B-32.pt",
        "https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        338,
    ),
)


def official_weights(key: str) -> OfficialWeights:
    """The catalogue entry of ``key`` (KeyError for unknown keys)."""
    for item in OFFICIAL_WEIGHTS:
        if item.key == key:
            return item
    raise KeyError(key)


def manual_hint(item: OfficialWeights, folder: Path) -> str:
    """What to do by hand when the download is impossible."""
    return (
        f"Download {item.filename} in a web browser from {item.url} (or copy it from a machine "
        f"that has it), then pick it with the '…' button of the {item.label} row, or put it in {folder}."
    )


class WeightsDownload(QObject):
    """One asynchronous download of ``item`` into ``folder``.

    Signals: ``progress(received, total)`` (total -1 when unknown), ``succeeded(path)``,
    ``failed(message)`` (the message says what went wrong and what to do by hand). Exactly one of
    the last two is emitted per :meth:`start`. Nothing is left in ``folder`` after a failure
    or :meth:`cancel`.
    """

    progress = pyqtSignal(int, int)
    succeeded = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, item: OfficialWeights, folder: Path, url: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.item = item
        self.folder = Path(folder)
        self.url = url or item.url
        self.target = self.folder / item.filename
        self.partial = self.folder / (item.filename + ".part")
        self._reply: QNetworkReply | None = None
        self._file = None
        self._hash = hashlib.sha256()
        self._cancelled = False
        self._received = 0
        self._problem: str | None = None  # a write error or oversize file stops the download

    @property
    def running(self) -> bool:
        return self._reply is not None

    def start(self) -> bool:
        """Start the download; False (and ``failed`` emitted) when it cannot even start."""
        url = QUrl(self.url)
        if url.scheme().lower() not in ALLOWED_SCHEMES:
            self.failed.emit(f"Refusing to download {self.item.filename} from '{self.url}': only https URLs are used.")
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.partial, "wb")  # noqa: SIM115 (closed in _finish)
        except OSError as exc:
            self.failed.emit(f"Cannot write to {self.folder}: {exc}. {manual_hint(self.item, self.folder)}")
            return False
        self._hash = hashlib.sha256()
        self._cancelled = False
        self._received = 0
        self._problem = None
        request = QNetworkRequest(url)
        request.setAttribute(
            QNetworkRequest.Attribute.RedirectPolicyAttribute,
            QNetworkRequest.RedirectPolicy.NoLessSafeRedirectPolicy,  # GitHub assets redirect to a CDN
        )
        reply = QgsNetworkAccessManager.instance().get(request)
        reply.readyRead.connect(self._read)
        reply.downloadProgress.connect(self._progress)
        reply.finished.connect(self._finish)
        self._reply = reply
        LOGGER.info("Downloading %s from %s to %s", self.item.filename, self.url, self.target)
        return True

    def cancel(self) -> None:
        """Abort; ``failed`` is emitted with a 'cancelled' message."""
        if self._reply is not None:
            self._cancelled = True
            self._reply.abort()

    def _progress(self, received: int, total: int) -> None:
        self.progress.emit(int(received), int(total))

    def _read(self) -> None:
        if self._reply is None or self._file is None:
            return
        self._store(bytes(self._reply.readAll()))

    def _store(self, chunk: bytes) -> None:
        """Hash and write ``chunk``; abort on a write error or a file larger than any official one."""
        if self._problem is not None or self._file is None or not chunk:
            return
        self._received += len(chunk)
        if self._received > MAX_DOWNLOAD_BYTES:
            self._problem = (f"{self.item.filename} is larger than {MAX_DOWNLOAD_BYTES // 2 ** 20} MiB, more "
                             "than any official weights file; the download was stopped and deleted.")
        else:
            try:
                self._hash.update(chunk)
                self._file.write(chunk)
                return
            except OSError as exc:
                self._problem = (f"Could not save {self.item.filename} in {self.folder} ({exc}). Check free "
                                 "disk space and write permission.")
        if self._reply is not None:
            self._reply.abort()

    def _finish(self) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        self._read_rest(reply)
        if self._file is not None:
            self._file.close()
            self._file = None
        error = reply.error()
        message = reply.errorString()
        status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        reply.deleteLater()
        if self._problem is not None:
            self._fail(f"{self._problem} {manual_hint(self.item, self.folder)}")
        elif self._cancelled:
            self._fail(f"Download of {self.item.filename} cancelled.")
        elif error != QNetworkReply.NetworkError.NoError:
            self._fail(
                f"Could not download {self.item.filename} ({message}). You may be offline or behind a proxy "
                f"that QGIS is not configured for (Settings › Options › Network). {manual_hint(self.item, self.folder)}"
            )
        elif status is not None and int(status) >= 400:
            self._fail(f"The server answered HTTP {status} for {self.url}. {manual_hint(self.item, self.folder)}")
        elif self.item.sha256 and self._hash.hexdigest() != self.item.sha256:
            self._fail(
                f"{self.item.filename} arrived damaged or is not the official file (sha256 "
                f"{self._hash.hexdigest()[:12]}… instead of {self.item.sha256[:12]}…); it was deleted. "
                f"Try again. {manual_hint(self.item, self.folder)}"
            )
        elif self.partial.stat().st_size == 0:
            self._fail(f"The server sent an empty file for {self.item.filename}. {manual_hint(self.item, self.folder)}")
        else:
            try:
                os.replace(self.partial, self.target)
            except OSError as exc:
                self._fail(f"Could not save {self.target} ({exc}). {manual_hint(self.item, self.folder)}")
                return
            LOGGER.info("Downloaded %s (sha256 %s)", self.target, self._hash.hexdigest())
            self.succeeded.emit(str(self.target))

    def _read_rest(self, reply: QNetworkReply) -> None:
        if not self._cancelled:
            self._store(bytes(reply.readAll()))

    def _fail(self, message: str) -> None:
        self.partial.unlink(missing_ok=True)
        LOGGER.warning(message)
        self.failed.emit(message)
