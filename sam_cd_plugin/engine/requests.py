"""What front ends ask the engine to do: parameter bundles of detection, evaluation and training.

Torch-free and JSON-round-trippable (:meth:`to_dict` / ``from_dict``), so the same request runs
in-process or is sent to the engine worker unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .options import DetectionOptions

__all__ = ["AreaTrainRequest", "DetectRequest", "EvaluateRequest", "TrainRequest", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with paths as strings and tuples as lists (what JSON can carry)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _path(value: Any) -> Path | None:
    return Path(value) if value not in (None, "") else None


@dataclass
class DetectRequest:
    """One detection run. ``checkpoint``: a path, or empty / ``"bundled"`` for the bundled one
    (resolved where the engine runs). ``prompts``: ``None`` keeps the checkpoint's."""

    before: str
    after: str
    out_path: str
    checkpoint: str | None = None
    device: str = "auto"
    clip_weights: str | None = None
    prompts: list[str] | None = None
    options: DetectionOptions = field(default_factory=DetectionOptions)

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "DetectRequest":
        data = dict(data)
        opts = dict(data.pop("options", None) or {})
        for key in ("probability_path", "polygons_path"):
            opts[key] = _path(opts.get(key))
        return cls(**data, options=DetectionOptions(**opts))

    def outputs(self) -> list[Path]:
        """The files this run publishes when it succeeds."""
        finals = [self.out_path, self.options.probability_path, self.options.polygons_path]
        return [Path(p).expanduser().absolute() for p in finals if p]

    def leftovers(self) -> list[Path]:
        """Temporary files a run that was killed may have left beside its outputs."""
        found: list[Path] = []
        for final in self.outputs():
            folder = final.parent
            if not folder.is_dir():
                continue
            for pattern in (f".{final.name}.partial*", f"..{final.name}.partial*",
                            f".{final.stem}.probability.tif.partial*"):
                found += [p for p in folder.glob(pattern) if p.is_file()]
        return found


@dataclass
class EvaluateRequest:
    """Score ``checkpoint`` on the pairs of dataset folder ``data`` (the papers' protocol)."""

    data: str
    checkpoint: str | None = None
    include: list[str] = field(default_factory=list)
    split: str | None = None
    threshold: float = 0.5
    device: str = "auto"

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "EvaluateRequest":
        return cls(**data)


@dataclass
class TrainRequest:
    """A training run: ``config`` holds the fields of ``engine.training.TrainConfig`` (paths as
    strings). ``eval_include``: afterwards score these pair globs and store the metrics."""

    config: dict
    eval_include: list[str] | None = None

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "TrainRequest":
        return cls(**data)


@dataclass
class AreaTrainRequest:
    """Training on one area: ``config`` holds the fields of
    ``engine.area_training.AreaTrainConfig`` (paths as strings)."""

    config: dict

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "AreaTrainRequest":
        return cls(**data)
