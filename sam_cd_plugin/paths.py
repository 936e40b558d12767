"""Locations of the plugin's bundled resources (styles, icons, default checkpoint).

In a packaged plugin (the zip installed by QGIS) the ``resources/`` folder sits inside the
package; in a source checkout it sits at the repository root. ``resource_path`` hides that
difference. Pure standard library: importable from every layer.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED", "DEFAULT_CHECKPOINT_NAME", "default_checkpoint", "resolve_checkpoint", "resource_path",
           "resources_dir"]

DEFAULT_CHECKPOINT_NAME = "sam_cem_cd_fastsam-s.pt"
#: What saved models, batch sheets and settings store for "the bundled checkpoint".
BUNDLED = "bundled"

_PACKAGE_DIR = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """The resources folder: ``<package>/resources`` if present, else ``<repo root>/resources``."""
    packaged = Path(__file__).parent / "resources"
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / "resources"


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource, e.g. ``resource_path("styles", "change_mask.qml")``.

    The path is returned whether or not the file exists; callers decide how to react.
    """
    return resources_dir().joinpath(*parts)


def default_checkpoint() -> Path:
    """The bundled SAM-CEM-CD (FastSAM-s) checkpoint used when the user picks none."""
    return resource_path("checkpoints", DEFAULT_CHECKPOINT_NAME)


def resolve_checkpoint(value: str | Path | None) -> Path:
    """The checkpoint file a stored choice means, resolved now (not when the choice was saved).

    Empty, ``None`` and ``"bundled"`` mean the bundled checkpoint; so does an absolute path of the
    bundled file from an earlier plugin location (models and batch sheets saved before
    ``"bundled"`` existed) once that file is gone. Any other value is a path, returned as given.
    """
    text = str(value).strip() if value is not None else ""
    if text in ("", BUNDLED):
        return default_checkpoint()
    path = Path(text)
    if path.name == DEFAULT_CHECKPOINT_NAME and path.parent.name == "checkpoints" and not path.exists():
        return default_checkpoint()
    return path
