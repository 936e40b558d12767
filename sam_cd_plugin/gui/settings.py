"""Persisted choices of the dock (QgsSettings).

Everything lives under the ``sam_cd/`` key of the user's QGIS profile, except the checkpoint
folder and the default device, which are the Processing options page's values
(:mod:`..processing.options`), so the dock and headless runs share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from ..processing import options
from ..processing.options import DEVICE_CHOICES

__all__ = ["DEVICE_CHOICES", "SamCdSettings", "user_data_dir", "weights_dir"]

_PREFIX = "sam_cd/"


def user_data_dir() -> Path:
    """``<QGIS profile>/sam_cd``: downloaded weights and user checkpoints (never the plugin folder,
    which QGIS wipes on every plugin update)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "sam_cd"


def weights_dir() -> Path:
    """Where downloaded encoder / CLIP weights are stored."""
    return user_data_dir() / "weights"


def _as_list(value: object) -> list[str]:
    """QgsSettings hands back a list, a single string or None depending on the backend."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


@dataclass
class SamCdSettings:
    """Typed access to the plugin's QgsSettings values (read and written immediately)."""

    settings: QgsSettings | None = None

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = QgsSettings()

    # -- shared with the Processing options page -----------------------------------------
    @staticmethod
    def checkpoint_folder() -> Path:
        """The user's checkpoint folder (default ``<profile>/sam_cd/checkpoints``)."""
        return options.checkpoint_folder()

    @staticmethod
    def set_checkpoint_folder(folder: str | Path) -> None:
        options.set_checkpoint_folder(folder)

    # -- dock ----------------------------------------------------------------------------
    def device(self) -> str:
        value = self.settings.value(_PREFIX + "device", "")
        return value if value in DEVICE_CHOICES else options.default_device()

    def set_device(self, device: str) -> None:
        if device not in DEVICE_CHOICES:
            raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
        self.settings.setValue(_PREFIX + "device", device)

    def threshold(self) -> float:
        try:
            value = float(self.settings.value(_PREFIX + "threshold", 0.5))
        except (TypeError, ValueError):
            return 0.5
        return min(max(value, 0.0), 1.0)

    def set_threshold(self, value: float) -> None:
        self.settings.setValue(_PREFIX + "threshold", float(value))

    def prompts(self) -> list[str]:
        if not self.settings.contains(_PREFIX + "prompts"):
            return ["building"]
        return [p for p in _as_list(self.settings.value(_PREFIX + "prompts", [])) if p.strip()]

    def set_prompts(self, prompts: list[str]) -> None:
        self.settings.setValue(_PREFIX + "prompts", [p.strip() for p in prompts if p.strip()])

    def selected_checkpoint(self) -> str:
        return str(self.settings.value(_PREFIX + "selected_checkpoint", "") or "")

    def set_selected_checkpoint(self, path: str | Path) -> None:
        self.settings.setValue(_PREFIX + "selected_checkpoint", str(path))

    def added_checkpoints(self) -> list[str]:
        """Checkpoint files added one by one ("Add checkpoint…"), outside the folders."""
        return _as_list(self.settings.value(options.ADDED_CHECKPOINTS, []))

    def set_added_checkpoints(self, paths: list[str]) -> None:
        self.settings.setValue(options.ADDED_CHECKPOINTS, list(dict.fromkeys(paths)))

    def weights_path(self, key: str) -> str:
        """Weights file chosen for encoder ``key`` ('' when none)."""
        return str(self.settings.value(f"{_PREFIX}weights/{key}", "") or "")

    def set_weights_path(self, key: str, path: str | Path) -> None:
        self.settings.setValue(f"{_PREFIX}weights/{key}", str(path))

    def output_folder(self) -> str:
        return str(self.settings.value(_PREFIX + "output_folder", "") or "")

    def set_output_folder(self, folder: str | Path) -> None:
        self.settings.setValue(_PREFIX + "output_folder", str(folder))

    def polygons(self) -> bool:
        return str(self.settings.value(_PREFIX + "polygons", "false")).lower() in ("1", "true")

    def set_polygons(self, value: bool) -> None:
        self.settings.setValue(_PREFIX + "polygons", bool(value))
