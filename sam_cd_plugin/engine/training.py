"""Training loop: random crops of LEVIR-CD-layout folders → a sam-cd checkpoint.

Defaults follow SAM-CEM-CD (SGD, poly decay); AdamW is offered because it converges faster when
the encoder starts from random initialisation (no pretrained weights offline).
"""
from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from .. import __version__
from ..core.errors import CancelledError, InputError
from ..models.cem_loss import cem_loss
from ..models.checkpoint import save_checkpoint
from ..models.registry import build_model
from .datasets import ChangeDataset, PairPaths, find_pairs
from .device import describe_device, resolve_device

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run needs; stored in the checkpoint's metadata."""

    data: list[Path]
    out: Path
    include: list[str] = field(default_factory=list)
    method: str = "sam-cem-cd"
    encoder: str = "fastsam-s"
    encoder_weights: Path | None = None
    freeze_encoder: bool = False
    delta: float = 0.3
    input_size: int = 256
    epochs: int = 20
    samples_per_pair: int = 4
    batch_size: int = 4
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 2.0
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if not 0.0 <= self.delta < 1.0:
            raise InputError(f"δ must be in [0, 1), got {self.delta}.")
        if self.input_size % 32 or self.input_size < 64:
            raise InputError("Input size must be a multiple of 32, at least 64.")
        if self.optimizer not in ("sgd", "adamw"):
            raise InputError("Optimizer must be 'sgd' or 'adamw'.")


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    """Polynomial decay ``base · (1 − step/total)^power``."""
    return base * (1.0 - min(step, total) / total) ** power


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=True)


def collect_pairs(data: Sequence[Path], include: Sequence[str]) -> list[PairPaths]:
    pairs: list[PairPaths] = []
    for root in data:
        pairs += find_pairs(root, include)
    return pairs


def train(config: TrainConfig, progress: Callable[[int, int, float], None] | None = None,
          is_cancelled: Callable[[], bool] | None = None) -> Path:
    """Train and write the checkpoint to ``config.out``; ``progress(epoch, epochs, loss)``."""
    config.validate()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    pairs = collect_pairs(config.data, config.include)
    dataset = ChangeDataset(pairs, crop=config.input_size, samples_per_pair=config.samples_per_pair,
                            seed=config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=False)
    meta = _metadata(config, pairs)
    model = build_model(meta, encoder_weights=config.encoder_weights).to(device).train()
    optimizer = _optimizer(config, [p for p in model.parameters() if p.requires_grad])
    total = config.epochs * len(loader)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    log.info("Training %s/%s (δ=%s) on %d pairs, %d steps, %s", config.method, config.encoder,
             config.delta, len(pairs), total, describe_device(device))
    step, started = 0, time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        running = 0.0
        for before, after, label in loader:
            if is_cancelled and is_cancelled():
                raise CancelledError("Training was cancelled; no checkpoint was written.")
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(config.lr, step, total, config.poly_power)
            before, after, label = before.to(device), after.to(device), label.to(device)
            loss = cem_loss(model(before, after), label, config.delta, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()
            step += 1
        mean_loss = running / max(1, len(loader))
        log.info("epoch %d/%d loss %.4f", epoch, config.epochs, mean_loss)
        if progress:
            progress(epoch, config.epochs, mean_loss)
    recalibrate_batchnorm(model, loader, device)
    meta["training"]["seconds"] = round(time.perf_counter() - started, 1)
    meta["training"]["final_loss"] = round(mean_loss, 5)
    return save_checkpoint(config.out, model.eval().cpu(), meta)


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> None:
    """Recompute BatchNorm running statistics as exact averages over the training crops.

    ultralytics layers use BN momentum 0.03, so after a short run from random initialisation
    the running statistics still hold init values and eval-mode output is useless.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.training]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for before, after, _ in loader:
        model(before.to(device), after.to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def _metadata(config: TrainConfig, pairs: Sequence[PairPaths]) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    settings["data"] = [str(d) for d in config.data]
    return {
        "method": config.method, "encoder": config.encoder, "delta": config.delta,
        "input_size": config.input_size, "freeze_encoder": config.freeze_encoder,
        "normalisation": "uint8 images / 255; other types: per-band 2–98 % percentile stretch to [0, 1]; RGB order",
        "prompts": [],
        "training": {"data": [Path(d).name for d in config.data],
                     "pairs": [p.name for p in pairs], "settings": settings,
                     "encoder_init": str(config.encoder_weights.name) if config.encoder_weights else "random",
                     "torch": torch.__version__, "machine": platform.machine()},
        "metrics": {},
        "sam_cd_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
