"""The provider's options (Settings › Options › Processing › Providers › SAM change detection).

Processing's ``ProcessingConfig`` shows and stores them under ``Processing/Configuration/<name>``
in the user's QGIS profile; the readers below go straight to QgsSettings, so they work where the
Processing GUI is absent (``qgis_process``, the dock, tests).
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

__all__ = [
    "ADDED_CHECKPOINTS",
    "CHECKPOINT_FOLDER",
    "DEVICE",
    "DEVICE_CHOICES",
    "ENGINE",
    "ENGINE_CHOICES",
    "engine_transport",
    "checkpoint_folder",
    "default_checkpoint_folder",
    "default_device",
    "remember_checkpoint",
    "set_checkpoint_folder",
]

CHECKPOINT_FOLDER = "SAM_CD_CHECKPOINT_FOLDER"
DEVICE = "SAM_CD_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
ENGINE = "SAM_CD_ENGINE"
#: auto: the engine worker when an engine runtime is installed, else QGIS's own Python
ENGINE_CHOICES = ("auto", "worker", "inprocess")
_PREFIX = "Processing/Configuration/"
#: QgsSettings key of the checkpoint files the dock's table lists besides its folders.
ADDED_CHECKPOINTS = "sam_cd/added_checkpoints"


def default_checkpoint_folder() -> Path:
    """``<QGIS profile>/sam_cd/checkpoints`` (outside the plugin folder, which updates wipe)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "sam_cd" / "checkpoints"


def checkpoint_folder() -> Path:
    value = QgsSettings().value(_PREFIX + CHECKPOINT_FOLDER, "")
    return Path(value) if value else default_checkpoint_folder()


def set_checkpoint_folder(folder: str | Path) -> None:
    QgsSettings().setValue(_PREFIX + CHECKPOINT_FOLDER, str(folder))


def remember_checkpoint(path: str | Path) -> None:
    """List ``path`` in the dock's checkpoint table (unless it lies in the checkpoint folder)."""
    path = Path(path)
    if path.parent.resolve() == checkpoint_folder().resolve():
        return
    settings = QgsSettings()
    added = settings.value(ADDED_CHECKPOINTS, []) or []
    added = [added] if isinstance(added, str) else list(added)
    settings.setValue(ADDED_CHECKPOINTS, list(dict.fromkeys([*added, str(path)])))


def _selection(name: str, choices: tuple[str, ...]) -> str:
    """Processing stores a selection setting as the index of the option (or its text)."""
    value = QgsSettings().value(_PREFIX + name, 0)
    if value in choices:
        return str(value)
    try:
        return choices[int(value)]
    except (TypeError, ValueError, IndexError):
        return choices[0]


def default_device() -> str:
    return _selection(DEVICE, DEVICE_CHOICES)


def engine_transport() -> str:
    """Where detection runs: ``auto``, ``worker`` (engine process) or ``inprocess`` (QGIS's Python)."""
    return _selection(ENGINE, ENGINE_CHOICES)


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
    ProcessingConfig.addSetting(Setting(
        provider_name, ENGINE, "Run the engine in (auto: its own process when installed)",
        ENGINE_CHOICES[0], valuetype=Setting.SELECTION, options=list(ENGINE_CHOICES)))
    ProcessingConfig.readSettings()
    return [CHECKPOINT_FOLDER, DEVICE, ENGINE]


def unregister_options(names: list[str]) -> None:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    for name in names:
        ProcessingConfig.removeSetting(name)
