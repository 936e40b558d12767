"""``ChangeDetector``: load a checkpoint once, then turn raster pairs into change rasters.

Every front end (Processing algorithm, dock, CLI) calls :meth:`ChangeDetector.detect`. The pair is
aligned on the before raster's grid, cut into overlapping tiles of the model's input size, run in
batches, and each tile's centre is written to the output, so memory stays bounded by the batch.
Outputs are written under a temporary name and renamed only when complete.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..core.alignment import AlignedPair
from ..core.errors import CancelledError, CheckpointError, InputError
from ..core.tiling import Tile, tile_grid
from ..core.writers import AtomicRasterWriter, check_output_path
from ..models.checkpoint import load_checkpoint
from ..models.registry import build_model
from .device import describe_device, resolve_device

log = logging.getLogger(__name__)

MASK_NODATA = 255
PROBABILITY_NODATA = -1.0
STRIDE = 32

ProgressCallback = Callable[[float], None]
CancelCallback = Callable[[], bool]


@dataclass
class DetectionOptions:
    """What a detection run may tune; ``None`` means "from the checkpoint" or "automatic"."""

    threshold: float = 0.5
    tile_size: int | None = None
    overlap: int = 64
    batch_size: int | None = None
    bands_before: Sequence[int] | None = None
    bands_after: Sequence[int] | None = None
    probability_path: Path | None = None

    def validate(self, stride: int = STRIDE) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"Threshold {self.threshold} is outside [0, 1]; use e.g. 0.5.")
        if self.tile_size is not None and (self.tile_size < stride or self.tile_size % stride):
            raise InputError(f"Tile size {self.tile_size} must be a multiple of {stride} "
                             f"(at least {stride}); e.g. 256 or 512.")
        if self.overlap < 0:
            raise InputError("Overlap cannot be negative.")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("Batch size must be at least 1.")


@dataclass
class DetectionResult:
    out_path: Path
    probability_path: Path | None
    width: int
    height: int
    changed_pixels: int
    valid_pixels: int
    seconds: float
    device: str
    metadata: dict = field(default_factory=dict)


class ChangeDetector:
    """A loaded change model bound to a device. ``checkpoint=None`` uses the bundled one."""

    def __init__(self, checkpoint: Path | str | None = None, device: str = "auto") -> None:
        if checkpoint is None or str(checkpoint) == "":
            from ..paths import default_checkpoint

            checkpoint = default_checkpoint()
        self.checkpoint = Path(checkpoint)
        state, self.metadata = load_checkpoint(self.checkpoint)
        model = build_model(self.metadata)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{self.checkpoint.name} does not match the {self.metadata.get('method')} / "
                f"{self.metadata.get('encoder')} architecture it declares; it may come from another "
                "sam-cd version. Retrain or pick another checkpoint.") from exc
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.input_size = int(self.metadata["input_size"])
        log.info("Loaded %s (%s, %s) on %s", self.checkpoint.name, self.metadata["method"],
                 self.metadata["encoder"], self.device_description)

    @property
    def device_description(self) -> str:
        return describe_device(self.device)

    def _batch_size(self, options: DetectionOptions) -> int:
        if options.batch_size:
            return options.batch_size
        return 8 if self.device.type == "cuda" else 2

    @torch.inference_mode()
    def predict(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Change probability ``(B, H, W)`` for normalised ``(B, 3, H, W)`` float32 arrays."""
        b = torch.from_numpy(before).to(self.device)
        a = torch.from_numpy(after).to(self.device)
        return torch.sigmoid(self.model(b, a))[:, 0].float().cpu().numpy()

    def detect(self, before: Path | str, after: Path | str, out_path: Path | str,
               options: DetectionOptions | None = None,
               progress: ProgressCallback | None = None,
               is_cancelled: CancelCallback | None = None) -> DetectionResult:
        """Write the change mask (uint8: 1 change, 0 none, 255 nodata) of ``before`` → ``after``."""
        options = options or DetectionOptions()
        options.validate()
        started = time.perf_counter()
        out_path = check_output_path(Path(out_path), inputs=(Path(before), Path(after)))
        prob_path = None
        if options.probability_path:
            prob_path = check_output_path(Path(options.probability_path),
                                          inputs=(Path(before), Path(after), out_path))
        tile = options.tile_size or self.input_size
        overlap = min(options.overlap, tile // 2)
        with AlignedPair(before, after, options.bands_before, options.bands_after) as pair:
            tiles = tile_grid(pair.width, pair.height, tile, overlap)
            meta = self._output_metadata(pair, options)
            log.info("Detecting changes on %d×%d px in %d tiles of %d px on %s",
                     pair.width, pair.height, len(tiles), tile, self.device_description)
            grid = dict(width=pair.width, height=pair.height, geotransform=pair.geotransform,
                        crs_wkt=pair.crs_wkt, metadata=meta)
            with contextlib.ExitStack() as outputs:
                mask_out = outputs.enter_context(
                    AtomicRasterWriter(out_path, dtype="uint8", nodata=MASK_NODATA, **grid))
                prob_out = outputs.enter_context(
                    AtomicRasterWriter(prob_path, dtype="float32", nodata=PROBABILITY_NODATA, **grid)
                ) if prob_path else None
                changed, valid_px = self._run_tiles(pair, tiles, options, mask_out, prob_out,
                                                    progress, is_cancelled)
        seconds = time.perf_counter() - started
        log.info("Done in %.1f s: %d of %d valid pixels changed", seconds, changed, valid_px)
        return DetectionResult(out_path, prob_path, pair.width, pair.height, changed, valid_px,
                               seconds, self.device_description, meta)

    def _output_metadata(self, pair: AlignedPair, options: DetectionOptions) -> dict:
        m = self.metadata
        return {
            "SAMCD_METHOD": m.get("method"), "SAMCD_ENCODER": m.get("encoder"),
            "SAMCD_DELTA": m.get("delta"), "SAMCD_CHECKPOINT": self.checkpoint.name,
            "SAMCD_THRESHOLD": options.threshold,
            "SAMCD_BEFORE": Path(pair.before.path).name, "SAMCD_AFTER": Path(pair.after.path).name,
            "SAMCD_STATS_BEFORE": repr(pair.stats_before), "SAMCD_STATS_AFTER": repr(pair.stats_after),
        }

    def _batches(self, tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
        for i in range(0, len(tiles), size):
            yield tiles[i:i + size]

    def _run_tiles(self, pair: AlignedPair, tiles: list[Tile], options: DetectionOptions,
                   mask_out: AtomicRasterWriter, prob_out: AtomicRasterWriter | None,
                   progress: ProgressCallback | None,
                   is_cancelled: CancelCallback | None) -> tuple[int, int]:
        changed = valid_total = done = 0
        for batch in self._batches(tiles, self._batch_size(options)):
            if is_cancelled and is_cancelled():
                raise CancelledError("Change detection was cancelled; no output was written.")
            reads = [pair.read(t.x, t.y, t.size, t.size) for t in batch]
            work = [i for i, (_, _, valid) in enumerate(reads) if valid.any()]
            probs = {}
            if work:
                before = np.stack([reads[i][0] for i in work])
                after = np.stack([reads[i][1] for i in work])
                probs = dict(zip(work, self.predict(before, after)))
            for i, t in enumerate(batch):
                valid = reads[i][2]
                window = (slice(t.core_y0 - t.y, t.core_y1 - t.y), slice(t.core_x0 - t.x, t.core_x1 - t.x))
                core_valid = valid[window]
                if i in probs:
                    prob = probs[i][window]
                    mask = (prob >= options.threshold).astype(np.uint8)
                else:
                    prob = np.zeros(core_valid.shape, np.float32)
                    mask = np.zeros(core_valid.shape, np.uint8)
                mask[~core_valid] = MASK_NODATA
                changed += int((mask == 1).sum())
                valid_total += int(core_valid.sum())
                mask_out.write(mask, t.core_x0, t.core_y0)
                if prob_out:
                    prob_out.write(np.where(core_valid, prob, PROBABILITY_NODATA).astype(np.float32),
                                   t.core_x0, t.core_y0)
            done += len(batch)
            if progress:
                progress(100.0 * done / len(tiles))
        return changed, valid_total
