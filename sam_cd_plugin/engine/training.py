"""Training loop: random crops of change-detection datasets → a sam-cd checkpoint.

Settings left unset (``None``) come from the method's recipe (:mod:`.recipes`): SAM-CEM-CD's
paper (SGD, lr 0.01, poly decay power 2, CEM) for ``sam-cem-cd`` and ``sam-cd``, the SAM2-CD
reference (AdamW, one-cycle cosine, BCE + Dice, ±30° rotation on top of the per-date colour
jitter every method gets) for ``sam2-cd``. Models with several supervised outputs (:meth:`Sam2Cd.forward_train`) get the loss
on each, weight 1 each as in the reference code.

Each epoch: train, re-estimate BatchNorm statistics, score the validation pairs with those
weights as the checkpoint stores them (fp16) through the detector's scoring path, and write
exactly those weights to ``config.out`` when validation F1 improved (every epoch without
validation pairs), so the file always holds the best model so far and its stored F1 is the F1
``evaluate`` gives for it; a share of the training samples are identical pairs labelled no
change (:class:`.datasets.ChangeDataset`); the optimizer state for ``resume`` goes to the sidecar
:func:`resume_state_path` after the first epoch and then at most every :data:`STATE_EVERY_S`
seconds (it is 3× the model in fp32: short epochs must not spend their time writing it), and is
deleted when training completes. Mixed precision (bf16, or fp16 with
a gradient scaler) is used on CUDA only.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from copy import deepcopy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from .. import __version__
from ..core.errors import CancelledError, CheckpointError, InputError
from ..core.metrics import ConfusionMatrix
from ..models.bce_dice_loss import bce_dice_loss
from ..models.cem_loss import cem_loss
from ..models.checkpoint import atomic_torch_save, load_checkpoint, read_metadata, save_checkpoint
from ..models.registry import METHODS, build_model
from .datasets import IDENTICAL_SHARE, ChangeDataset, PairPaths, dataset_layout, find_pairs, seed_worker
from .device import autocast, autocast_dtype, describe_device, resolve_device
from .augment import random_rotation
from .recipes import AUGMENTS, LOSSES, RECIPES, SCHEDULES, one_cycle_lr

log = logging.getLogger(__name__)
AMP_CHOICES = ("auto", "off", "bf16", "fp16")
STATE_FORMAT = "sam-cd-train-state"
BN_BATCHES = 32
STATE_EVERY_S = 60.0  # resume sidecar: after the first epoch, then at most once a minute


@dataclass
class TrainConfig:
    """Everything a training run needs; stored in the checkpoint's metadata.

    ``split`` selects the training pairs (default: 'train' for split/list layouts, every pair of a
    flat folder); validation uses ``val_split`` (default: 'val' when the dataset has one) and/or
    the ``val_include`` globs. ``prompts`` / ``clip_weights`` / ``mask_generator`` are for
    ``sam-cd`` only. ``amp``: 'auto' (bf16 when the GPU supports it, else fp16), 'off', 'bf16',
    'fp16'; ignored on the CPU. ``encoder``, ``optimizer``, ``lr``, ``weight_decay``,
    ``schedule`` ('poly' | 'one-cycle'), ``loss`` ('cem' | 'bce-dice') and ``augment`` ('base' |
    'paper': base + ±30° rotation) left ``None`` take the method's recipe (:data:`.recipes.RECIPES`).
    ``checkpoint``: start from that checkpoint's weights (same method and encoder; the metadata
    records it under ``training.start``) instead of ``encoder_weights`` or random initialisation.
    ``identical_share``: the share of samples that are one date twice, labelled no change.
    """

    data: list[Path]
    out: Path
    include: list[str] = field(default_factory=list)
    split: str | None = None
    val_split: str | None = None
    val_include: list[str] = field(default_factory=list)
    method: str = "sam-cem-cd"
    encoder: str | None = None
    encoder_weights: Path | None = None
    checkpoint: Path | None = None
    freeze_encoder: bool = False
    prompts: list[str] = field(default_factory=list)
    clip_weights: Path | None = None
    clip_model: str = "ViT-B-32"
    mask_generator: str = "fastsam-s"
    mask_generator_weights: Path | None = None
    delta: float = 0.3
    input_size: int = 256
    epochs: int = 20
    samples_per_pair: int = 4
    identical_share: float = IDENTICAL_SHARE
    batch_size: int = 4
    optimizer: str | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    poly_power: float = 2.0
    schedule: str | None = None
    loss: str | None = None
    augment: str | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    workers: int | None = None
    resume: bool = False
    threshold: float = 0.5

    def __post_init__(self) -> None:
        recipe = RECIPES.get(self.method)
        if recipe is not None:
            for name in ("encoder", "optimizer", "lr", "weight_decay", "schedule", "loss", "augment"):
                if getattr(self, name) is None:
                    setattr(self, name, getattr(recipe, name))

    def validate(self) -> None:
        """InputError for a setting that cannot work, before anything is loaded."""
        if self.method not in METHODS:
            raise InputError(f"Unknown method '{self.method}'. Use one of: {', '.join(METHODS)}.")
        if not 0.0 <= self.delta < 1.0:
            raise InputError(f"δ must be in [0, 1), got {self.delta}.")
        if self.input_size % 32 or self.input_size < 64:
            raise InputError("Input size must be a multiple of 32, at least 64.")
        if self.optimizer not in ("sgd", "adamw"):
            raise InputError("Optimizer must be 'sgd' or 'adamw'.")
        for name, choices in (("loss", LOSSES), ("schedule", SCHEDULES), ("augment", AUGMENTS)):
            if getattr(self, name) not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}.")
        if self.prompts and self.method != "sam-cd":
            raise InputError("Category prompts are a SAM-CD feature: use --method sam-cd.")
        if self.amp not in AMP_CHOICES:
            raise InputError(f"amp must be one of {', '.join(AMP_CHOICES)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.samples_per_pair < 1:
            raise InputError("epochs, batch size and samples per pair must be at least 1.")
        if self.lr <= 0:
            raise InputError("The learning rate must be positive.")
        if not 0.0 <= self.identical_share <= 1.0:
            raise InputError(f"The share of identical-pair samples must be in [0, 1], got {self.identical_share}.")
        if self.checkpoint is not None and self.encoder_weights is not None:
            raise InputError("Start from a checkpoint or from encoder weights, not both.")


def _start_from(model: torch.nn.Module, config: TrainConfig) -> dict:
    """Load ``config.checkpoint``'s weights into ``model`` (fine-tuning); what the metadata
    records of the start: its file, how that was initialised and trained."""
    weights, start = load_checkpoint(config.checkpoint)
    for key in ("method", "encoder"):
        if start.get(key) != getattr(config, key):
            raise InputError(f"{config.checkpoint.name} is a {start.get('method')} / {start.get('encoder')} "
                             f"model; it cannot start a {config.method} / {config.encoder} training.")
    model.load_state_dict(weights)
    before = start.get("training") or {}
    return {"checkpoint": config.checkpoint.name, "encoder_init": before.get("encoder_init", "unknown"),
            "pairs": before.get("pairs", []), "settings": before.get("settings", {}),
            "metrics": start.get("metrics", {})}


@dataclass
class EpochReport:
    """What ``progress`` receives after each epoch; ``val`` is None without validation pairs."""

    epoch: int
    epochs: int
    loss: float
    val: ConfusionMatrix | None
    best: bool
    lr: float
    seconds: float

    def line(self) -> str:
        """One human-readable progress line."""
        width = len(str(self.epochs))
        bar = "#" * round(20 * self.epoch / self.epochs)
        text = f"epoch {self.epoch:>{width}}/{self.epochs} [{bar:<20}] loss {self.loss:.4f}"
        if self.val is not None:
            text += f"  val F1 {self.val.f1:.4f} IoU {self.val.iou:.4f}"
        return text + f"  lr {self.lr:.2e}  {self.seconds:.0f} s" + ("  *best" if self.best else "")


def default_workers(device: torch.device) -> int:
    """DataLoader processes when ``TrainConfig.workers`` is None: on CUDA, decoding and augmenting
    in the main process starves the GPU, so up to 4 (half the CPUs); on the CPU none — the model
    is the bottleneck there, and each worker would hold its own copy of the decoded pairs."""
    return min(4, (os.cpu_count() or 1) // 2) if device.type == "cuda" else 0


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    """Polynomial decay ``base · (1 − step/total)^power``."""
    return base * (1.0 - min(step, total) / total) ** power


def compute_loss(model: torch.nn.Module, before: torch.Tensor, after: torch.Tensor,
                 label: torch.Tensor, delta: float,
                 generator: torch.Generator | None = None, loss: str = "cem",
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """``loss`` ('cem' with drop ratio ``delta``, or 'bce-dice') of the model's training outputs
    (deep-supervision outputs summed, weight 1 each); CEM counts only ``valid`` pixels if given."""
    forward_train = getattr(model, "forward_train", None)
    outputs = forward_train(before, after) if forward_train else [model(before, after)]
    if loss == "bce-dice":
        if valid is not None:
            raise ValueError("the BCE + Dice loss has no mask of valid pixels; use CEM")
        return sum(bce_dice_loss(o.float(), label) for o in outputs)
    return sum(cem_loss(o.float(), label, delta, valid=valid, generator=generator) for o in outputs)


def scheduled_lr(config: "TrainConfig", step: int, total: int) -> float:
    """The learning rate of ``step`` under ``config.schedule``."""
    if config.schedule == "one-cycle":
        return one_cycle_lr(config.lr, step, total)
    return poly_lr(config.lr, step, total, config.poly_power)


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=True)


def collect_pairs(data: Sequence[Path], include: Sequence[str],
                  split: str | None = None, default: str = "train") -> list[PairPaths]:
    """Pairs of every dataset root; ``split`` None means ``default`` for split/list layouts."""
    pairs: list[PairPaths] = []
    for root in data:
        root_split = split or (None if dataset_layout(root) == "flat" else default)
        pairs += find_pairs(root, include, root_split)
    return pairs


def validation_pairs(config: TrainConfig) -> list[PairPaths]:
    """The validation pairs of ``config`` (may be empty: then no validation)."""
    if not config.val_split and not config.val_include:
        pairs: list[PairPaths] = []
        for root in config.data:  # the 'val' split, where the dataset has one
            layout = dataset_layout(root)
            try:
                pairs += find_pairs(root, (), "val") if layout != "flat" else []
            except InputError:
                log.info("%s has no 'val' split: no validation for it", root)
        return pairs
    return collect_pairs(config.data, config.val_include, config.val_split, default="val")


def resume_state_path(out: Path | str) -> Path:
    """Sidecar holding optimizer state and progress while training ``out`` (for ``resume``)."""
    out = Path(out)
    return out.with_name(out.name + ".resume")


def delta_checkpoint_path(out: Path | str, delta: float) -> Path:
    """``<out folder>/<stem>_delta<δ>.pt``: the checkpoint of one δ of a sweep."""
    out = Path(out)
    return out.with_name(f"{out.stem}_delta{delta:g}{out.suffix or '.pt'}")


def sweep_configs(config: TrainConfig, deltas: Sequence[float]) -> list[TrainConfig]:
    """One config per δ (same data, seed and schedule), each with its own checkpoint path."""
    if not deltas:
        raise InputError("A δ sweep needs at least one δ, e.g. 0.2,0.3,0.4,0.5,0.6.")
    return [replace(config, delta=float(d), out=delta_checkpoint_path(config.out, d)) for d in deltas]


def validate(model: torch.nn.Module, pairs: Sequence[PairPaths], input_size: int,
             device: torch.device, amp: torch.dtype | None = None, threshold: float = 0.5,
             batch_size: int = 4) -> ConfusionMatrix:
    """One confusion matrix over every pixel of ``pairs``, scored by the detector's own path
    (:func:`.evaluation.evaluate_pairs`: reader, normalisation, tiling, blending, threshold), so
    it is what ``evaluate`` reports for a checkpoint holding these weights. The model is left in
    eval mode; ``amp`` is not used (the detector chooses autocast as for users).
    """
    from .detector import ChangeDetector
    from .evaluation import evaluate_pairs
    from .options import DetectionOptions

    del amp  # the detector picks autocast for its device, as for users
    detector = ChangeDetector.from_model(model, {"method": getattr(model, "method", ""),
                                                 "input_size": input_size}, device)
    options = DetectionOptions(threshold=threshold, tile_size=input_size, batch_size=batch_size,
                               overlap=min(DetectionOptions.overlap, input_size // 4))
    return evaluate_pairs(detector, pairs, options).total


def as_saved(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose weights are rounded as :func:`save_checkpoint` stores them
    (fp16), so scoring the copy scores exactly the weights a checkpoint file will hold."""
    copy = deepcopy(model)
    with torch.no_grad():
        for value in copy.state_dict().values():
            if value.is_floating_point():
                value.copy_(value.half())
    return copy


@dataclass
class _Progress:
    epoch: int = 0
    step: int = 0
    best_f1: float = -1.0
    best_epoch: int = 0
    best_val: dict | None = None
    history: list[dict] = field(default_factory=list)


def train(config: TrainConfig, progress: Callable[[EpochReport], None] | None = None,
          is_cancelled: Callable[[], bool] | None = None) -> Path:
    """Train and write the checkpoint to ``config.out`` (the best epoch on validation).

    ``progress`` gets an :class:`EpochReport` per epoch; ``is_cancelled`` is polled every batch
    (CancelledError; what was written so far can be resumed). Returns ``config.out``.
    """
    config.validate()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    amp = autocast_dtype(config.amp, device)
    pairs = collect_pairs(config.data, config.include, config.split)
    val_pairs = validation_pairs(config)
    overlap = sorted({p.name for p in pairs} & {p.name for p in val_pairs})
    if overlap:
        log.warning("%d validation pairs are also training pairs (%s…): validation scores will be "
                    "optimistic", len(overlap), overlap[0])
    dataset = ChangeDataset(pairs, crop=config.input_size, samples_per_pair=config.samples_per_pair,
                            seed=config.seed, identical=config.identical_share)
    shuffle = torch.Generator().manual_seed(config.seed)
    workers = default_workers(device) if config.workers is None else config.workers
    # persistent workers keep their decoded pairs across epochs; set_epoch reaches them
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=False,
                        num_workers=workers, generator=shuffle,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        worker_init_fn=seed_worker if workers else None)
    meta = _metadata(config, pairs, val_pairs)
    model = build_model(meta, encoder_weights=config.encoder_weights,
                        clip_weights=config.clip_weights,
                        mask_generator_weights=config.mask_generator_weights)
    if config.checkpoint is not None:
        meta["training"]["start"] = _start_from(model, config)
        meta["training"]["encoder_init"] = meta["training"]["start"]["encoder_init"]
    model = model.to(device)
    optimizer = _optimizer(config, [p for p in model.parameters() if p.requires_grad])
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    state = _resume(config, model, optimizer, scaler, device) if config.resume else _Progress()
    total = config.epochs * len(loader)
    loss_draws = torch.Generator(device=device)
    log.info("Training %s/%s (δ=%s) on %d pairs (%d validation), %d steps, %s%s", config.method,
             config.encoder, config.delta, len(pairs), len(val_pairs), total,
             describe_device(device), f", autocast {amp}" if amp else "")
    started, state_saved = time.perf_counter(), -math.inf
    for epoch in range(state.epoch + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        dataset.set_epoch(config.seed * 100_003 + epoch)  # per-epoch streams: resume is reproducible
        shuffle.manual_seed(config.seed + epoch)
        loss_draws.manual_seed(config.seed + 7 * epoch)
        model.train()
        running = 0.0
        for before, after, label in loader:
            if is_cancelled and is_cancelled():
                raise CancelledError(
                    f"Training was cancelled in epoch {epoch}; {config.out} holds the best model of "
                    "the finished epochs (if any), and training can be resumed.")
            lr = scheduled_lr(config, state.step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            before, after, label = (t.to(device, non_blocking=True) for t in (before, after, label))
            if config.augment == "paper":
                before, after, label = random_rotation(before, after, label, loss_draws)
            with autocast(device, amp):
                loss = compute_loss(model, before, after, label, config.delta, loss_draws,
                                    config.loss)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            running += loss.item()
            state.step += 1
        mean_loss = running / max(1, len(loader))
        # recalibrate, then score the weights as they will be saved, then save those same weights
        recalibrate_batchnorm(model, loader, device, max_batches=BN_BATCHES, amp=amp)
        saved = as_saved(model)
        val = validate(saved, val_pairs, config.input_size, device, amp, config.threshold,
                       config.batch_size) if val_pairs else None
        best = val is None or val.f1 > state.best_f1
        state.epoch = epoch
        state.history.append({"epoch": epoch, "loss": round(mean_loss, 5),
                              **({"val_f1": round(val.f1, 5), "val_iou": round(val.iou, 5)} if val else {})})
        if best:
            state.best_epoch = epoch
            if val is not None:
                state.best_f1 = val.f1
                state.best_val = {**val.as_dict(), "epoch": epoch, "pairs": len(val_pairs)}
            _save(config.out, saved, meta, state, time.perf_counter() - started)
        del saved
        if epoch < config.epochs and time.perf_counter() - state_saved >= STATE_EVERY_S:
            atomic_torch_save(_state_payload(config, model, optimizer, scaler, state),
                              resume_state_path(config.out))
            state_saved = time.perf_counter()
        report = EpochReport(epoch, config.epochs, mean_loss, val, best, lr,
                             time.perf_counter() - epoch_start)
        log.log(logging.DEBUG if progress else logging.INFO, "%s", report.line())
        if progress:
            progress(report)
    # final: the best epoch's weights exactly as scored and saved, with complete metadata
    weights, _ = load_checkpoint(config.out)
    model.load_state_dict(weights)
    path = _save(config.out, model, meta, state, time.perf_counter() - started)
    resume_state_path(config.out).unlink(missing_ok=True)
    return path


def _save(out: Path, model: torch.nn.Module, meta: dict, state: _Progress, seconds: float) -> Path:
    meta["training"].update(epochs_done=state.epoch, best_epoch=state.best_epoch,
                            history=state.history, seconds=round(seconds, 1))
    if state.history:
        meta["training"]["final_loss"] = state.history[-1]["loss"]
    if state.best_val is not None:
        meta["metrics"]["val"] = state.best_val
    was_training = model.training
    path = save_checkpoint(out, model.eval(), meta)
    model.train(was_training)
    return path


def _state_key(config: TrainConfig) -> dict:
    return {k: getattr(config, k) for k in ("method", "encoder", "delta", "input_size", "epochs",
                                            "optimizer", "batch_size", "samples_per_pair",
                                            "schedule", "loss")}


def _state_payload(config: TrainConfig, model, optimizer, scaler, state: _Progress) -> dict:
    return {"format": STATE_FORMAT, "version": 1, "key": json.dumps(_state_key(config)),
            "epoch": state.epoch, "step": state.step, "best_f1": state.best_f1,
            "best_epoch": state.best_epoch, "best_val": json.dumps(state.best_val),
            "history": json.dumps(state.history),
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}


def _resume(config: TrainConfig, model, optimizer, scaler, device: torch.device) -> _Progress:
    path = resume_state_path(config.out)
    if not path.is_file():
        raise InputError(f"Cannot resume: {path} does not exist (it is written after each epoch "
                         "and removed when training completes). Train without resume.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        key = json.loads(payload["key"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"Cannot resume from {path.name}: the file is unreadable "
                              f"({type(exc).__name__}). Delete it and train again.") from exc
    if payload.get("format") != STATE_FORMAT or key != _state_key(config):
        raise InputError(f"Cannot resume from {path.name}: it was written by a run with other "
                         f"settings ({key}); use the same method, encoder, δ, size, epochs, "
                         "optimizer and batch settings, or train without resume.")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scaler.load_state_dict(payload["scaler"])
    model.to(device)
    log.info("Resuming %s after epoch %d", config.out, payload["epoch"])
    state = _Progress(epoch=int(payload["epoch"]), step=int(payload["step"]),
                      best_f1=float(payload["best_f1"]), best_epoch=int(payload["best_epoch"]),
                      best_val=json.loads(payload["best_val"]), history=json.loads(payload["history"]))
    saved = read_metadata(config.out).get("metrics", {}).get("val") if config.out.is_file() else None
    if saved and saved.get("f1", -1.0) > state.best_f1:  # a better epoch saved after the sidecar
        state.best_f1, state.best_epoch, state.best_val = saved["f1"], saved["epoch"], saved
    return state


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                          max_batches: int | None = None, amp: torch.dtype | None = None) -> None:
    """Recompute BatchNorm running statistics as exact averages over (up to ``max_batches``)
    training batches; leaves the model in eval mode.

    ultralytics layers use BN momentum 0.03, so after a short run from random initialisation
    the running statistics still hold init values and eval-mode output is useless.
    """
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.training]
    if norms:
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        for i, (before, after, _) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            with autocast(device, amp):
                model(before.to(device, non_blocking=True), after.to(device, non_blocking=True))
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
    model.eval()


def _names(pairs: Sequence[PairPaths], limit: int = 2000) -> list[str]:
    """Pair names for the metadata, at most ``limit`` (checkpoint metadata is size-capped)."""
    return [p.name for p in pairs[:limit]]


def _metadata(config: TrainConfig, pairs: Sequence[PairPaths], val_pairs: Sequence[PairPaths]) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    settings["data"] = [str(d) for d in config.data]
    meta = {
        "method": config.method, "encoder": config.encoder, "delta": config.delta,
        "loss": config.loss,
        "input_size": config.input_size, "freeze_encoder": config.freeze_encoder,
        "normalisation": ("uint8 images / 255; other types: per-band 2–98 % percentile stretch "
                          "to [0, 1], one stretch for both dates from the pixels valid in both "
                          "(joint, per scene); RGB order"),
        "prompts": list(config.prompts),
        "training": {"data": [Path(d).name for d in config.data],
                     "split": config.split, "pairs": _names(pairs), "pairs_count": len(pairs),
                     "validation": {"split": config.val_split, "include": list(config.val_include),
                                    "pairs": _names(val_pairs), "pairs_count": len(val_pairs)},
                     "settings": settings,
                     "encoder_init": config.encoder_weights.name if config.encoder_weights else "random",
                     "identical_pairs": config.identical_share,
                     "torch": torch.__version__, "machine": platform.machine()},
        "metrics": {},
        "sam_cd_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if config.method == "sam-cd" and config.prompts:
        meta.update(clip_model=config.clip_model, mask_generator=config.mask_generator)
    return meta
