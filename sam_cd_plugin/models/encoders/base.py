"""The :class:`Encoder` contract and the name → builder registry."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...core.errors import CheckpointError, WeightsError

log = logging.getLogger(__name__)


class Encoder(nn.Module):
    """A frozen-or-trainable image encoder giving a 4-level feature pyramid.

    ``forward(x)`` takes ``(B, 3, H, W)`` float images scaled to [0, 1] (H, W multiples of 32) and
    returns four feature maps at ``strides`` (4, 8, 16, 32) with ``channels`` channels each.
    """

    name: str = ""
    channels: list[int]
    strides: list[int]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def freeze(self, trainable_last_stage: bool = False) -> None:
        """Freeze all parameters (optionally keeping the deepest stage trainable).

        Frozen batch-norm layers also stay in eval mode (see :meth:`train`), so their running
        statistics are not changed by training either.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        if trainable_last_stage:
            for p in self.last_stage().parameters():
                p.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Encoder":
        """Set train/eval mode; batch norms whose parameters are all frozen stay in eval mode."""
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    params = list(m.parameters())
                    if params and not any(p.requires_grad for p in params):
                        m.eval()
        return self

    def last_stage(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def exchange_sites(self) -> list[tuple[nn.Module, int]]:
        """``(block, channels)`` of the stride-16 global-attention blocks whose channels-last
        outputs a method may gate with forward hooks (SAM2-CD's ASG); none by default."""
        return []


_BUILDERS: dict[str, Callable[[], Encoder]] = {}
_WEIGHT_LOADERS: dict[str, Callable[[Encoder, Path], None]] = {}


def register(name: str, builder: Callable[[], Encoder],
             weight_loader: Callable[[Encoder, Path], None] | None = None) -> None:
    """Register an encoder builder (and the loader of its official weights file)."""
    _BUILDERS[name] = builder
    if weight_loader is not None:
        _WEIGHT_LOADERS[name] = weight_loader


def _ensure_registered() -> None:
    # Importing registers; always import all (cached), even if one was imported directly first.
    from . import fastsam, mobilesam, sam2  # noqa: F401


ENCODER_NAMES = ("fastsam-s", "fastsam-x", "sam2-t", "sam2-s", "sam2-b+", "mobilesam")


def encoder_names() -> list[str]:
    """Registered encoder names, in :data:`ENCODER_NAMES` order."""
    _ensure_registered()
    return [n for n in ENCODER_NAMES if n in _BUILDERS] + sorted(set(_BUILDERS) - set(ENCODER_NAMES))


def build_encoder(name: str, weights: Path | str | None = None, freeze: bool = False,
                  trainable_last_stage: bool = False) -> Encoder:
    """Build encoder ``name`` offline; load official ``weights`` when given; optionally freeze it."""
    _ensure_registered()
    key = name.lower()
    if key not in _BUILDERS:
        raise CheckpointError(f"Unknown encoder '{name}'. Available: {', '.join(_BUILDERS)}.")
    encoder = _BUILDERS[key]()
    encoder.name = key
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"Encoder weights file not found: {path}. Check the path.")
        _WEIGHT_LOADERS[key](encoder, path)
        log.info("Loaded %s weights from %s", key, path)
    if freeze:
        encoder.freeze(trainable_last_stage)
    return encoder
