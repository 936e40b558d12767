"""The provider's options (Settings › Options › Processing › Providers › SAM change detection).

Processing's ``ProcessingConfig`` shows and stores them under ``Processing/Configuration/<name>``
in the user's QGIS profile; the readers below go straight to QgsSettings, so they work where the
Processing GUI is absent (``qgis_process``, the dock, tests).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

__all__ = [
    "CHECKPOINT_FOLDER",
    "DEVICE",
    "DEVICE_CHOICES",
    "checkpoint_folder",
    "default_checkpoint_folder",
    "default_device",
    "set_checkpoint_folder",
]

CHECKPOINT_FOLDER = "SAM_CD_CHECKPOINT_FOLDER"
DEVICE = "SAM_CD_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
_PREFIX = "Processing/Configuration/"


def default_checkpoint_folder() -> Path:
    """``<QGIS profile>/sam_cd/checkpoints`` (outside the plugin folder, which updates wipe)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "sam_cd" / "checkpoints"


def checkpoint_folder() -> Path:
    value = QgsSettings().value(_PREFIX + CHECKPOINT_FOLDER, "")
    return Path(value) if value else default_checkpoint_folder()


def set_checkpoint_folder(folder: str | Path) -> None:
    QgsSettings().setValue(_PREFIX + CHECKPOINT_FOLDER, str(folder))


def default_device() -> str:
    """Processing stores a selection setting as the index of the option."""
    value = QgsSettings().value(_PREFIX + DEVICE, 0)
    if value in DEVICE_CHOICES:
        return str(value)
    try:
        return DEVICE_CHOICES[int(value)]
    except (TypeError, ValueError, IndexError):
        return "auto"


def register_options(provider_name: str) -> list[str]:
    """Add the options to ProcessingConfig (the options page); returns their names.

    Does nothing (returns []) where the Processing Python plugin is not importable.
    """
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return []
    ProcessingConfig.addSetting(Setting(
        provider_name, CHECKPOINT_FOLDER, "Checkpoint folder (listed in the dock, default output of Train)",
        str(default_checkpoint_folder()), valuetype=Setting.FOLDER))
    ProcessingConfig.addSetting(Setting(
        provider_name, DEVICE, "Default device", DEVICE_CHOICES[0], valuetype=Setting.SELECTION,
        options=list(DEVICE_CHOICES)))
    ProcessingConfig.readSettings()
    return [CHECKPOINT_FOLDER, DEVICE]


def unregister_options(names: list[str]) -> None:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    for name in names:
        ProcessingConfig.removeSetting(name)
