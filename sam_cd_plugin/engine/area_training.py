"""Training on one area: a before/after pair plus digitised change polygons → a sam-cd checkpoint.

Contract of :func:`train_area`:

* labels are rasterised on the before grid (:func:`~..core.area_labels.rasterise_changes`:
  1 change, 0 reviewed no-change, 255 ignored); pixels invalid in either date are ignored too;
* images come from :class:`~..core.alignment.AlignedPair`, the reader and normalisation of
  detection, read once over the reviewed pixels' bounding window (padded to whole tiles);
* a spatially disjoint hold-out of whole blocks (:func:`~..core.holdout.holdout_blocks`) is the
  validation set: its labels never reach the loss, and training crops avoid it where the area
  allows; ignored pixels (255) count in neither the loss (CEM with a validity mask) nor the
  metrics;
* training starts from a checkpoint (fine-tuning; default the bundled one) or from encoder weights;
  after each epoch BatchNorm statistics are recomputed on training crops and the hold-out is
  scored; the best epoch's weights are written, so the stored validation F1/IoU
  (``meta['metrics']['val']``) belong to the saved weights. ``meta['training']['area']`` holds the
  area's name, reviewed extent, CRS and pixel counts;
* cancel (polled every batch) raises :class:`CancelledError`; the checkpoint is written once, at
  the end, atomically, so a cancelled or failed run leaves no file.
"""
from __future__ import annotations

import copy
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from osgeo import osr

from .. import __version__
from ..core.alignment import AlignedPair
from ..core.area_labels import IGNORE, rasterise_changes
from ..core.errors import CancelledError, InputError
from ..core.holdout import holdout_blocks
from ..core.metrics import ConfusionMatrix
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.registry import METHODS, build_model
from ..paths import BUNDLED, resolve_checkpoint
from .device import autocast, autocast_dtype, describe_device, resolve_device
from .training import compute_loss, poly_lr, recalibrate_batchnorm

log = logging.getLogger(__name__)

__all__ = ["AreaTrainConfig", "AreaTrainResult", "threshold_baseline", "train_area"]

#: Training crops are drawn from positions on this pixel stride.
CROP_STRIDE = 4
#: Fewer hold-out-free crop positions than this: crops may overlap the hold-out (its labels stay out).
MIN_CLEAN_POSITIONS = 16
#: Share of training crops drawn from positions that hold change (changes are rare in an area).
CHANGE_CROP_SHARE = 0.5
#: BatchNorm statistics are recomputed on this many training batches before each validation.
BN_BATCHES = 4
#: Thresholds of the difference baseline, on images normalised to [0, 1].
BASELINE_THRESHOLDS = np.round(np.arange(0.02, 0.62, 0.02), 2)
DEFAULT_LR_FINE_TUNE = 2e-4
DEFAULT_LR_FRESH = 1e-3


@dataclass
class AreaTrainConfig:
    """One area training run; stored (as text) in the checkpoint's metadata.

    ``checkpoint``: the checkpoint to fine-tune (``"bundled"`` / empty: the bundled one); ignored
    when ``encoder_weights`` is given (a new model of ``method`` / ``encoder`` on those weights).
    ``method`` / ``encoder`` left ``None`` take the checkpoint's (fresh models: sam-cem-cd /
    the method's default encoder). ``where``: an OGR attribute filter on the change polygons.
    ``reviewed``: polygons of the reviewed areas (default: see :mod:`..core.area_labels`).
    ``block``: hold-out block size in pixels (default: twice ``input_size``). ``freeze_encoder``:
    train the decoder only (several times quicker per step on a CPU).
    """

    before: Path
    after: Path
    changes: Path
    out: Path
    where: str | None = None
    reviewed: Path | None = None
    name: str = ""
    checkpoint: str | None = BUNDLED
    encoder_weights: Path | None = None
    method: str | None = None
    encoder: str | None = None
    delta: float = 0.3
    epochs: int = 10
    input_size: int = 64
    batch_size: int = 8
    samples_per_epoch: int = 64
    lr: float | None = None
    holdout: float = 0.2
    block: int | None = None
    freeze_encoder: bool = False
    seed: int = 0
    device: str = "auto"
    threshold: float = 0.5
    bands_before: list[int] | None = None
    bands_after: list[int] | None = None

    def __post_init__(self) -> None:
        for key in ("before", "after", "changes", "out", "reviewed", "encoder_weights"):
            value = getattr(self, key)
            setattr(self, key, Path(value) if value not in (None, "") else None)

    def validate(self) -> None:
        """InputError for a setting that cannot work, before anything is loaded."""
        if self.out is None or self.out.suffix.lower() != ".pt":
            raise InputError(f"The output checkpoint must be a .pt file; got '{self.out}'.")
        for what, path in (("Before raster", self.before), ("After raster", self.after),
                           ("Change polygons", self.changes)):
            if path is None or not path.exists():
                raise InputError(f"{what}: {path} does not exist.")
        if self.method is not None and self.method not in METHODS:
            raise InputError(f"Unknown method '{self.method}'. Use one of: {', '.join(METHODS)}.")
        if not 0.0 <= self.delta < 1.0:
            raise InputError(f"δ must be in [0, 1), got {self.delta}.")
        if self.input_size % 32 or self.input_size < 64:
            raise InputError("Input size must be a multiple of 32, at least 64.")
        if self.epochs < 1 or self.batch_size < 1 or self.samples_per_epoch < 1:
            raise InputError("Epochs, batch size and samples per epoch must be at least 1.")
        if not 0.0 < self.holdout < 1.0:
            raise InputError(f"The hold-out fraction must be in (0, 1), got {self.holdout}.")
        if self.lr is not None and self.lr <= 0:
            raise InputError("The learning rate must be positive.")

    @property
    def area_name(self) -> str:
        return self.name or (self.changes.stem if self.changes else "area")


@dataclass
class AreaTrainResult:
    """The written checkpoint, its metadata and the device it trained on."""

    path: Path
    metadata: dict
    device: str


@dataclass
class _Area:
    """The area read once: images ``(3, H, W)`` of the window at ``(x0, y0)``, labels with the
    invalid pixels ignored, and the hold-out mask."""

    before: np.ndarray
    after: np.ndarray
    labels: np.ndarray
    holdout: np.ndarray
    x0: int
    y0: int
    extent: tuple[float, float, float, float]
    crs: str
    counts: dict = field(default_factory=dict)


def _crs_name(wkt: str) -> str:
    """``AUTHORITY:CODE`` of ``wkt`` when it has one, else the WKT itself ("" without a CRS)."""
    if not wkt:
        return ""
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    try:
        srs.AutoIdentifyEPSG()
    except RuntimeError:  # no EPSG equivalent: keep the WKT
        return wkt
    code, authority = srs.GetAuthorityCode(None), srs.GetAuthorityName(None)
    return f"{authority}:{code}" if code and authority else wkt


def _read_area(config: AreaTrainConfig, block: int) -> _Area:
    with AlignedPair(config.before, config.after, config.bands_before, config.bands_after) as pair:
        area = rasterise_changes(pair.before, config.changes, where=config.where, reviewed=config.reviewed)
        rows, cols = np.nonzero(area.labels != IGNORE)
        size = config.input_size
        y0, x0 = int(rows.min()), int(cols.min())
        h = -(-(int(rows.max()) + 1 - y0) // size) * size
        w = -(-(int(cols.max()) + 1 - x0) // size) * size
        before, after, valid = pair.read(x0, y0, w, h)
        labels = np.full((h, w), IGNORE, dtype=np.uint8)
        inside = area.labels[y0:y0 + h, x0:x0 + w]
        labels[:inside.shape[0], :inside.shape[1]] = inside
        labels[~valid] = IGNORE
        crs = _crs_name(pair.crs_wkt)
    if not (labels == 1).any():
        raise InputError("Change polygons: every change pixel lies where the before or after raster "
                         "has no data; digitise changes inside the area both rasters cover.")
    holdout = holdout_blocks(labels, block, config.holdout, seed=config.seed, ignore=IGNORE)
    if not (holdout & (labels != IGNORE)).any() or not (~holdout & (labels == 1)).any():
        raise InputError(
            f"The reviewed area ({w}×{h} px) is too small to hold out {block}-px validation blocks and "
            "still train on change: draw a larger reviewed area (or more change polygons), or lower "
            "the input size.")
    counts = {"change_pixels": int((labels == 1).sum()), "no_change_pixels": int((labels == 0).sum()),
              "validation_pixels": int((holdout & (labels != IGNORE)).sum()),
              "validation_change_pixels": int((holdout & (labels == 1)).sum()),
              "window": [x0, y0, w, h]}
    return _Area(before, after, labels, holdout, x0, y0, area.extent, crs, counts)


class AreaCrops(torch.utils.data.Dataset):
    """Random ``crop``-px training windows of one area (labels of the hold-out set to ignored), half
    of them holding change, with the same turn/flip for both dates and the label and a random date
    swap; no colour jitter (one pair, one normalisation: on Rio it halved the hold-out F1 of short
    runs). Crops avoid the hold-out blocks when at least :data:`MIN_CLEAN_POSITIONS` positions allow it."""

    def __init__(self, area: _Area, crop: int, samples: int, seed: int) -> None:  # noqa: D107
        self.crop, self.samples = crop, samples
        self.rng = np.random.default_rng(seed)
        self.before, self.after = area.before, area.after
        self.labels = np.where(area.holdout, IGNORE, area.labels).astype(np.float32)
        self.positions = self._positions(area, crop)

    def __len__(self) -> int:
        return self.samples

    def reseed(self, seed: int) -> None:
        """A new random stream (one per epoch: runs are reproducible)."""
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def _positions(area: _Area, crop: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Crop positions (y, x) with training change pixels, and those with only no-change ones."""
        h, w = area.labels.shape

        def window_sums(mask: np.ndarray) -> np.ndarray:
            s = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            return s[crop:, crop:] - s[:-crop, crop:] - s[crop:, :-crop] + s[:-crop, :-crop]

        train = ~area.holdout
        reviewed = window_sums((area.labels != IGNORE) & train)
        change = window_sums((area.labels == 1) & train)
        touched = window_sums(area.holdout)
        ys, xs = np.mgrid[0:h - crop + 1:CROP_STRIDE, 0:w - crop + 1:CROP_STRIDE]
        useful = reviewed[ys, xs] > 0
        clean = useful & (touched[ys, xs] == 0)
        if clean.sum() >= MIN_CLEAN_POSITIONS and (clean & (change[ys, xs] > 0)).any():
            useful = clean
        else:
            log.info("The area is small: training crops overlap the hold-out blocks (whose labels "
                     "stay out of the loss)")
        with_change = useful & (change[ys, xs] > 0)
        return (list(zip(ys[with_change].tolist(), xs[with_change].tolist())),
                list(zip(ys[useful & ~with_change].tolist(), xs[useful & ~with_change].tolist())))

    def __getitem__(self, index: int):
        change, other = self.positions
        pool = change if not other or (change and self.rng.random() < CHANGE_CROP_SHARE) else other
        y, x = pool[int(self.rng.integers(0, len(pool)))]
        window = (slice(y, y + self.crop), slice(x, x + self.crop))
        before, after = self.before[(slice(None), *window)], self.after[(slice(None), *window)]
        label = self.labels[window][None]
        k, flip = int(self.rng.integers(0, 4)), bool(self.rng.integers(0, 2))
        before, after, label = (np.rot90(a, k, axes=(1, 2)) for a in (before, after, label))
        if flip:
            before, after, label = (a[:, :, ::-1] for a in (before, after, label))
        if self.rng.random() < 0.5:  # change is symmetric in time
            before, after = after, before
        return (torch.from_numpy(np.ascontiguousarray(before, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(after, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32)))


def _start_model(config: AreaTrainConfig) -> tuple[torch.nn.Module, dict, str]:
    """The model to train, the metadata it starts from, and what it starts from (for the metadata)."""
    if config.encoder_weights is not None:
        from .recipes import RECIPES

        method = config.method or "sam-cem-cd"
        encoder = config.encoder or RECIPES[method].encoder
        meta = {"method": method, "encoder": encoder, "input_size": config.input_size,
                "freeze_encoder": False, "prompts": []}
        model = build_model(meta, encoder_weights=config.encoder_weights)
        return model, meta, f"encoder weights {config.encoder_weights.name}"
    path = resolve_checkpoint(config.checkpoint)
    if not path.is_file():
        raise InputError(f"Start checkpoint {path} does not exist; choose a .pt file, 'bundled', or "
                         "encoder weights.")
    weights, meta = load_checkpoint(path)
    for key in ("method", "encoder"):
        wanted = getattr(config, key)
        if wanted and wanted != meta.get(key):
            raise InputError(
                f"The start checkpoint {path.name} is a {meta.get('method')} / {meta.get('encoder')} model; "
                f"a {key} of '{wanted}' cannot be fine-tuned from it. Leave {key} empty, pick a "
                "checkpoint of that kind, or start from encoder weights.")
    model = build_model(meta)
    model.load_state_dict(weights)
    start = "bundled checkpoint" if str(config.checkpoint or "").strip() in ("", BUNDLED) else path.name
    return model, meta, f"{start} ({path.name})"


@torch.no_grad()
def _predict(model: torch.nn.Module, area: _Area, size: int, device: torch.device,
             amp: torch.dtype | None, batch_size: int, where: np.ndarray) -> np.ndarray:
    """Change logits on the non-overlapping ``size`` tiles of the area's window that touch
    ``where`` (elsewhere -inf)."""
    model.eval()
    h, w = area.labels.shape
    windows = [(y, x) for y in range(0, h, size) for x in range(0, w, size)
               if where[y:y + size, x:x + size].any()]
    logits = np.full((h, w), -np.inf, dtype=np.float32)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        b = torch.from_numpy(np.stack([area.before[:, y:y + size, x:x + size] for y, x in chunk]))
        a = torch.from_numpy(np.stack([area.after[:, y:y + size, x:x + size] for y, x in chunk]))
        with autocast(device, amp):
            out = model(b.to(device), a.to(device)).float()[:, 0].cpu().numpy()
        for (y, x), tile in zip(chunk, out):
            logits[y:y + size, x:x + size] = tile
    return logits


def score(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray, threshold: float) -> ConfusionMatrix:
    """Confusion matrix of ``logits`` > logit(``threshold``) on ``mask`` & reviewed pixels."""
    cut = float(np.log(threshold / (1.0 - threshold)))
    return ConfusionMatrix().update(logits > cut, labels == 1, mask & (labels != IGNORE))


def threshold_baseline(area: _Area, thresholds: np.ndarray = BASELINE_THRESHOLDS) -> dict:
    """The best hold-out F1 (and its IoU, threshold) of ``mean |before − after| > t`` over
    ``thresholds`` on the normalised images: what the model must beat to be worth using."""
    diff = np.abs(area.before - area.after).mean(axis=0)
    mask = area.holdout & (area.labels != IGNORE)
    best = max(((ConfusionMatrix().update(diff > t, area.labels == 1, mask), float(t)) for t in thresholds),
               key=lambda item: item[0].f1)
    return {"f1": best[0].f1, "iou": best[0].iou, "threshold": round(best[1], 4),
            "rule": "mean |before − after| of the normalised images > threshold (best of "
                    f"{len(thresholds)} thresholds, chosen on the hold-out itself)"}


def train_area(config: AreaTrainConfig, progress: Callable[[float], None] | None = None,
               is_cancelled: Callable[[], bool] | None = None) -> AreaTrainResult:
    """Train on ``config``'s area and write the best epoch's checkpoint (see the module contract)."""
    config.validate()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    amp = autocast_dtype("auto", device)
    block = config.block or 2 * config.input_size
    area = _read_area(config, block)
    model, base_meta, start = _start_model(config)
    model.to(device)
    if config.freeze_encoder:
        for param in model.encoder.parameters():
            param.requires_grad_(False)
    crops = AreaCrops(area, config.input_size, config.samples_per_epoch, config.seed)
    loader = torch.utils.data.DataLoader(crops, batch_size=config.batch_size, shuffle=False,
                                         drop_last=len(crops) > config.batch_size)
    lr = config.lr or (DEFAULT_LR_FRESH if config.encoder_weights else DEFAULT_LR_FINE_TUNE)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=1e-4)
    draws = torch.Generator(device=device).manual_seed(config.seed)
    total, step = config.epochs * len(loader), 0
    log.info("Training on area '%s' (%s): %d change / %d no-change pixels, %d held out in %d-px blocks; "
             "from %s on %s", config.area_name, config.changes.name, area.counts["change_pixels"],
             area.counts["no_change_pixels"], area.counts["validation_pixels"], block, start,
             describe_device(device))
    best: tuple[float, int, dict, ConfusionMatrix] | None = None
    checked = area.holdout & (area.labels != IGNORE)
    history = []
    for epoch in range(1, config.epochs + 1):
        crops.reseed(config.seed * 100_003 + epoch)
        model.train()
        running = 0.0
        for before, after, label in loader:
            if is_cancelled is not None and is_cancelled():
                raise CancelledError("Training was cancelled; no checkpoint was written.")
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(lr, step, total, 1.0)
            before, after, label = before.to(device), after.to(device), label.to(device)
            with autocast(device, amp):
                loss = compute_loss(model, before, after, label == 1, config.delta, draws, "cem",
                                    valid=label != IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.item())
            step += 1
            if progress is not None:
                progress(100.0 * step / total)
        recalibrate_batchnorm(model, loader, device, max_batches=BN_BATCHES, amp=amp)
        logits = _predict(model, area, config.input_size, device, amp, config.batch_size, checked)
        val = score(logits, area.labels, area.holdout, config.threshold)
        mean_loss = running / max(1, len(loader))
        history.append({"epoch": epoch, "loss": round(mean_loss, 5), "val_f1": round(val.f1, 5),
                        "val_iou": round(val.iou, 5)})
        is_best = best is None or val.f1 > best[0]
        log.info("epoch %d/%d loss %.4f  hold-out F1 %.4f IoU %.4f%s", epoch, config.epochs, mean_loss,
                 val.f1, val.iou, "  *best" if is_best else "")
        if is_best:
            best = (val.f1, epoch, copy.deepcopy(model.state_dict()), val)
    if best is None:  # config.validate() asks for at least one epoch
        raise InputError("Training needs at least one epoch.")
    _, best_epoch, weights, val = best
    model.load_state_dict(weights)
    reviewed = area.labels != IGNORE
    fit = score(_predict(model, area, config.input_size, device, amp, config.batch_size, reviewed & ~area.holdout),
                area.labels, ~area.holdout, config.threshold)
    meta = _metadata(config, base_meta, area, block, start, history, best_epoch, val, fit,
                     time.perf_counter() - started)
    meta["metrics"]["val_threshold_baseline"] = baseline = threshold_baseline(area)
    log.info("A plain difference threshold scores hold-out F1 %.4f (threshold %.2f)", baseline["f1"],
             baseline["threshold"])
    path = save_checkpoint(config.out, model.eval(), meta)
    log.info("Wrote %s: hold-out F1 %.4f IoU %.4f (epoch %d)", path, val.f1, val.iou, best_epoch)
    return AreaTrainResult(path, meta, describe_device(device))


def _metadata(config: AreaTrainConfig, base: dict, area: _Area, block: int, start: str, history: list,
              best_epoch: int, val: ConfusionMatrix, fit: ConfusionMatrix, seconds: float) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    meta = {key: base[key] for key in ("method", "encoder", "freeze_encoder", "prompts", "clip_model",
                                       "mask_generator", "normalisation") if key in base}
    meta.update(delta=config.delta, loss="cem", input_size=config.input_size,
                freeze_encoder=bool(base.get("freeze_encoder")) or config.freeze_encoder)
    meta["training"] = {
        "data": [f"area: {config.area_name}"],
        "area": {"name": config.area_name, "extent": [round(v, 6) for v in area.extent], "crs": area.crs,
                 "before": config.before.name, "after": config.after.name,
                 "changes": config.changes.name, "filter": config.where or "",
                 "reviewed": config.reviewed.name if config.reviewed else "default (bbox of the changes + margin)",
                 "holdout_block": block, "holdout_fraction": config.holdout, **area.counts},
        "start": start, "epochs_done": config.epochs, "best_epoch": best_epoch, "history": history,
        "settings": settings, "seconds": round(seconds, 1), "torch": torch.__version__,
        "machine": platform.machine(),
    }
    meta["metrics"] = {"val": {**val.as_dict(), "epoch": best_epoch, "split": "hold-out blocks of the area (which also picked the epoch)"},
                       "train_area": fit.as_dict()}
    meta["sam_cd_version"] = __version__
    meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return meta
