"""``ChangeDetector``: load a checkpoint once, then turn raster pairs into change rasters.

Every front end (Processing algorithm, dock, CLI) calls :meth:`ChangeDetector.detect`. The pair
is aligned on the before raster's grid (:class:`~..core.alignment.AlignedPair`) and cut into
windows of the model's input size on a lattice anchored to the map grid
(:func:`~..core.tiling.lattice_tiles`). Background reader threads (one on the CPU, several on
CUDA, each with its own GDAL handles) read batches of windows ahead of the model, in order
(:mod:`.tile_reader`); windows outside the pair's overlap are not read. On CUDA 8/16-bit tiles
travel raw and are normalised on the device (:mod:`.feed`). The model runs them batch by batch
(autocast and channels-last on CUDA, batch size from free memory, halved on out-of-memory, CPU
fallback: :mod:`.batching`);
overlapping probabilities are blended with raised-cosine weights in a rolling strip
(:class:`~..core.blending.StripBlender`) and finished rows go to a background writer thread
(:class:`~.tile_reader.BackgroundSink`), so compression overlaps with the model.

The change mask is the blended probability thresholded (``>= threshold``), so mask and
probability raster always agree. Tile positions depend only on the map grid, so detecting on a
crop gives bit-identical pixels to the same area of the full result wherever every window
covering the pixel lies inside the crop (farther than one tile size from the crop border), when
the input values are normalised the same way (8-bit imagery always; 16-bit/float imagery uses
statistics of the whole overlap, see :mod:`..core.normalisation`) and the model sees the same batches (batch size 1) — float32 results of
the model differ by ~1e-7 between batch compositions and thread counts.

Memory stays bounded by the batch, the read-ahead queues, GDAL's block cache (set for the run
and restored afterwards: 32 MiB on the CPU; on CUDA a tile row plus a block row of every
raster's width per reader, up to 512 MiB, so overlapping windows decode each block once), one
strip of ``tile_size`` rows in the blender, bands of at most 64 rows in the writer queue and
less than one row of output blocks: nothing grows with the raster's height, the strips only
with its width.
Outputs are written under temporary names and renamed only when every output is complete.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.alignment import AlignedPair
from ..core.blending import StripBlender
from ..core.checkpoint_info import demo_reason
from ..core.errors import CancelledError, CheckpointError, InputError, OutputError
from ..core.polygonize import polygonize_mask
from ..core.raster import raster_info
from ..core.validation import require_valid_pixels
from ..core.tiling import Tile, grid_origin, lattice_tiles
from ..core.writers import AtomicRasterWriter, OutputSet, check_output_path, partial_path
from ..models.checkpoint import load_checkpoint
from ..models.registry import build_model
from .batching import OomBackoff, auto_batch_size
from .memory import pin_for_raster, pin_pending
from .device import autocast, autocast_dtype, describe_device, resolve_device
from .prior_field import PriorField
from .options import STRIDE, DetectionOptions, check_overlap  # noqa: F401 (re-exported)
from .feed import DeviceFeed, normalise_tensor
from .tile_reader import (BackgroundReader, BackgroundSink, Coefficients, PredictedBatch, TileBatch,
                          gdal_block_cache, read_batch)

log = logging.getLogger(__name__)

MASK_NODATA = 255
PROBABILITY_NODATA = -1.0
PERCENT_NODATA = 255
READ_AHEAD = 2
#: reader threads when ``DetectionOptions.readers`` is None: one feeds a CPU model; a GPU eats
#: tiles faster than one GDAL reader decodes them
CUDA_READERS = 8
#: GDAL block cache during a run (:meth:`ChangeDetector._block_cache`) within these
BLOCK_CACHE_MIN, BLOCK_CACHE_MAX = 32 << 20, 512 << 20

ProgressCallback = Callable[[float], None]
CancelCallback = Callable[[], bool]


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
    polygons_path: Path | None = None
    polygon_count: int = 0
    tiles: int = 0


class _RowOutputs:
    """Sink of the blender: thresholds finished rows and writes mask (and probability) rows."""

    def __init__(self, mask_out: AtomicRasterWriter, prob_out: AtomicRasterWriter | None,
                 threshold: float, probability_format: str) -> None:
        self.mask_out, self.prob_out = mask_out, prob_out
        self.threshold, self.fmt = threshold, probability_format
        self.changed = self.valid = 0

    def __call__(self, y: int, prob: np.ndarray, valid: np.ndarray) -> None:
        # in place where possible: these rows span the whole raster width
        invalid = ~valid
        mask = (prob >= self.threshold).view(np.uint8)
        mask[invalid] = MASK_NODATA
        self.changed += int(np.count_nonzero(mask == 1))
        self.valid += int(prob.size - np.count_nonzero(invalid))
        self.mask_out.write_rows(mask, y)
        if self.prob_out is None:
            return
        if self.fmt == "uint8":
            rows = percent_agreeing_with_mask(prob, mask == 1, self.threshold)
            rows[invalid] = PERCENT_NODATA
        else:
            rows = prob
            rows[invalid] = PROBABILITY_NODATA
        self.prob_out.write_rows(rows, y)


def percent_agreeing_with_mask(prob: np.ndarray, changed: np.ndarray, threshold: float) -> np.ndarray:
    """``prob`` as whole percent (uint8) such that ``percent >= threshold × 100`` exactly where
    ``changed``: rounding alone would store 50 % for p in [0.495, 0.5) where the mask says 0.
    Overwrites ``prob``."""
    least_changed = math.ceil(round(threshold * 100.0, 6))  # smallest percent that means change
    prob *= 100.0
    percent = np.rint(prob, out=prob)
    np.maximum(percent, least_changed, out=percent, where=changed)
    np.minimum(percent, least_changed - 1, out=percent, where=~changed)
    return np.clip(percent, 0, 100, out=percent).astype(np.uint8)


def batches_of(tiles: Sequence[Tile], size: int) -> list[list[Tile]]:
    """``tiles`` in order, cut into lists of ``size``."""
    return [list(tiles[i:i + size]) for i in range(0, len(tiles), size)]


class ChangeDetector:
    """A loaded change model bound to a device. ``checkpoint=None`` uses the bundled one.

    SAM-CD checkpoints trained with category prompts need ``clip_weights`` (the CLIP file; a
    WeightsError names it otherwise). ``prompts``: ``None`` (not set) runs the checkpoint's
    prompts; a list replaces them for this run, ``[]`` meaning no semantic prior (works on every
    SAM-CD checkpoint, with a warning when it was trained with priors; no CLIP file needed). It
    is ignored with a warning by methods that use no prompts, and refused for a SAM-CD checkpoint
    trained without prompts (it holds no mask generator). SAM-CD's prior is computed per cell of
    a map-anchored grid with context (:mod:`.prior_field`), so it does not change at tile borders.
    """

    def __init__(self, checkpoint: Path | str | None = None, device: str = "auto",
                 clip_weights: Path | str | None = None,
                 prompts: Sequence[str] | None = None) -> None:
        if checkpoint is None or str(checkpoint) == "":
            from ..paths import default_checkpoint

            checkpoint = default_checkpoint()
        self.checkpoint = Path(checkpoint)
        self.device_choice = device
        self.clip_weights = Path(clip_weights) if clip_weights else None
        state, metadata = load_checkpoint(self.checkpoint)
        self.metadata = metadata
        override = None if prompts is None else self._checked_prompts(prompts)
        #: the prompts this detector runs with (the checkpoint's unless overridden)
        self.prompts: list[str] = list(self.metadata.get("prompts") or []) if override is None \
            else override
        model = build_model(self.metadata, clip_weights=self.clip_weights, prompts=override)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{self.checkpoint.name} does not match the {self.metadata.get('method')} / "
                f"{self.metadata.get('encoder')} architecture it declares; it may come from another "
                "sam-cd version. Retrain or pick another checkpoint.") from exc
        self._bind(model, metadata, device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        log.info("Loaded %s (%s, %s) on %s", self.checkpoint.name, self.metadata["method"],
                 self.metadata["encoder"], self.device_description)

    @classmethod
    def from_model(cls, model: torch.nn.Module, metadata: dict, device: torch.device | str,
                   name: str = "in-training") -> "ChangeDetector":
        """A detector running ``model`` as it is (no checkpoint file; ``metadata`` needs at least
        ``input_size``): training scores its validation pairs through it, so the stored score is
        what :meth:`detect` gives with the saved weights. The model is left in eval mode."""
        detector = cls.__new__(cls)
        detector.checkpoint = Path(name)
        detector.device_choice = str(device)
        detector.clip_weights = None
        detector.prompts = list(metadata.get("prompts") or [])
        detector._bind(model, metadata, device)
        return detector

    def _bind(self, model: torch.nn.Module, metadata: dict, device: torch.device | str) -> None:
        self.metadata = metadata
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.eval().to(self.device)
        self.input_size = int(metadata["input_size"])
        self._auto_batch: dict[int, int] = {}
        self._prior_field: PriorField | None = None
        self._feed: DeviceFeed | None = None
        #: send 8/16-bit tiles raw and normalise them on the device; None: on CUDA only (on the
        #: CPU the reader threads normalise with numpy, in parallel with the model)
        self.raw_feed: bool | None = None

    def _checked_prompts(self, prompts: Sequence[str]) -> list[str]:
        wanted = [str(p).strip() for p in prompts if str(p).strip()]
        stored = list(self.metadata.get("prompts") or [])
        if self.metadata.get("method") != "sam-cd":
            if wanted:
                log.warning("Category prompts %s ignored: %s finds changes of any kind", wanted,
                            self.metadata.get("method"))
            return None
        if wanted and not stored:
            raise InputError(
                f"{self.checkpoint.name} is a SAM-CD model trained without category prompts, so it "
                "cannot use prompts now; leave the prompts empty or pick a checkpoint trained with "
                "prompts (train --method sam-cd --prompts ...).")
        return wanted

    @property
    def device_description(self) -> str:
        return describe_device(self.device)

    # ------------------------------------------------------------------ model
    def _amp(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, autocast_dtype("auto", self.device))

    def _to_device(self, slot: str, array: np.ndarray,
                   coefficients: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
        if self._feed is None or self._feed.device != self.device:
            self._feed = DeviceFeed(self.device)
        t = self._feed.upload(slot, array)
        if coefficients is not None:
            t = normalise_tensor(t, *coefficients, unsigned16=array.dtype == np.uint16)
        if self.device.type != "cuda":
            return t
        return t.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def predict(self, before: np.ndarray, after: np.ndarray, *priors: np.ndarray,
                coefficients: Coefficients | None = None) -> np.ndarray:
        """Change probability ``(B, H, W)`` float32 for normalised ``(B, 3, H, W)`` float32 arrays,
        or raw uint8/uint16 ones normalised on the device with ``coefficients`` (before, after;
        :class:`~.tile_reader.TileBatch`); ``priors``: SAM-CD's ``(B, 1, H, W)`` prior before
        and after (else the model computes them)."""
        cb, ca = coefficients if coefficients is not None else (None, None)
        b, a = self._to_device("before", before, cb), self._to_device("after", after, ca)
        extra = [self._to_device(f"prior{i}", p) for i, p in enumerate(priors)]
        with self._amp():
            logits = self.model(b, a, *extra)
        return torch.sigmoid(logits.float())[:, 0].cpu().numpy()

    def batch_size(self, tile_size: int, requested: int | None = None) -> int:
        """``requested``, else chosen from free device memory (cached per tile size)."""
        if requested:
            return int(requested)
        if tile_size not in self._auto_batch:
            def probe(n: int) -> None:
                x = np.zeros((n, 3, tile_size, tile_size), dtype=np.float32)
                self.predict(x, x)

            self._auto_batch[tile_size] = auto_batch_size(self.device, probe)
        return self._auto_batch[tile_size]

    def fall_back_to_cpu(self) -> None:
        """Move the model to the CPU (after CUDA ran out of memory at batch size 1)."""
        self.device = torch.device("cpu")
        # Copy to the CPU first: converting the memory format on a full GPU needs GPU memory.
        self.model = self.model.to(self.device).to(memory_format=torch.contiguous_format)
        torch.cuda.empty_cache()
        log.warning("Now running on %s", self.device_description)

    def prior_field(self, pair: AlignedPair) -> PriorField | None:
        """SAM-CD's tile-independent prior for ``pair`` (None when the model uses no prior)."""
        if not getattr(self.model, "uses_prior", False):
            return None
        if self._prior_field is None or self._prior_field.pair is not pair:
            self._prior_field = PriorField(pair, self.model.semantic_prior,
                                           grid_origin(pair.geotransform), self.input_size,
                                           device=self.device)
        return self._prior_field

    def predict_batch(self, batch: TileBatch, backoff: OomBackoff,
                      field: PriorField | None = None) -> PredictedBatch:
        """The model's probabilities for the tiles of ``batch`` that have a valid pixel
        (``field``: the pair's SAM-CD prior, :meth:`prior_field`)."""
        priors = field.tile_priors([batch.tiles[i] for i in batch.work]) \
            if field is not None and batch.work else None
        predict = partial(self.predict, coefficients=batch.coefficients) \
            if batch.coefficients is not None else self.predict
        probs = backoff.run(predict, batch.before, batch.after, *(priors or ())) \
            if batch.work else []
        return PredictedBatch(batch.tiles, batch.valid, dict(zip(batch.work, probs)))

    # ------------------------------------------------------------------ running
    def reader_threads(self, requested: int | None = None) -> int:
        """``requested``, else :data:`CUDA_READERS` (at most the CPU count) on CUDA, 1 elsewhere."""
        if requested:
            return int(requested)
        return min(CUDA_READERS, os.cpu_count() or 1) if self.device.type == "cuda" else 1

    def _block_cache(self, pair: AlignedPair, batches: list[list[Tile]], readers: int) -> int:
        """GDAL block cache for a run: on CUDA a tile row plus a block row of every raster's width
        per reader, so no block is decoded twice; on the CPU (the model is the bottleneck) the
        floor, so memory does not grow with the raster's width."""
        if self.device.type != "cuda":
            return BLOCK_CACHE_MIN
        tile = batches[0][0].size if batches and batches[0] else 0
        return min(max(pair.block_bytes(tile) * readers, BLOCK_CACHE_MIN), BLOCK_CACHE_MAX)

    def _local_results(self, pair: AlignedPair, batches: list[list[Tile]], batch_size: int,
                       readers: int) -> Iterator[PredictedBatch]:
        backoff = OomBackoff(batch_size, self.fall_back_to_cpu)
        field = self.prior_field(pair)
        wanted = self.device.type == "cuda" if self.raw_feed is None else self.raw_feed
        raw = wanted and pair.raw_dtypes is not None

        def read(handle, tiles: list[Tile]) -> TileBatch:
            return read_batch(pair, tiles, handle, raw=raw)

        # one reader uses the pair's own handles; several open their own each (no shared lock)
        with gdal_block_cache(self._block_cache(pair, batches, readers)), \
                BackgroundReader(read, batches, depth=max(READ_AHEAD, readers), readers=readers,
                                 open_handle=pair.open_reader if readers > 1 else None) as reader:
            for batch in reader:
                yield self.predict_batch(batch, backoff, field)

    def detect(self, before: Path | str, after: Path | str, out_path: Path | str,
               options: DetectionOptions | None = None,
               progress: ProgressCallback | None = None,
               is_cancelled: CancelCallback | None = None) -> DetectionResult:
        """Write the change mask (uint8: 1 change, 0 none, 255 nodata) of ``before`` → ``after``,
        and the optional probability raster and change polygons of ``options``.

        ``InputError``/``OutputError``/``CheckpointError`` for unusable inputs or outputs,
        ``CancelledError`` when ``is_cancelled()`` turns true; either way no output is left.
        Every run with a demonstration model (:func:`~..core.checkpoint_info.demo_reason`) logs
        a warning saying so (front ends show it: Processing feedback, CLI)."""
        options = options or DetectionOptions()
        options.validate()
        demo = demo_reason(self.metadata)
        if demo:
            log.warning("%s is a demonstration model: %s.", self.checkpoint.name, demo)
        started = time.perf_counter()
        inputs = (Path(before), Path(after))
        out_path = check_output_path(Path(out_path), inputs=inputs)
        prob_path = poly_path = None
        if options.probability_path:
            prob_path = check_output_path(Path(options.probability_path), inputs=inputs + (out_path,))
        if options.polygons_path:
            poly_path = check_output_path(Path(options.polygons_path),
                                          inputs=inputs + tuple(p for p in (out_path, prob_path) if p))
            if poly_path.suffix.lower() != ".gpkg":
                raise OutputError(f"Change polygons are written as a GeoPackage; choose a file name "
                                  f"ending in .gpkg (got {poly_path.name}).")
        tile = options.tile_size or self.input_size
        check_overlap(options.overlap, tile)
        overlap = min(options.overlap, tile // 2)
        if overlap < options.overlap:
            log.warning("Tile overlap %d px is more than half the tile size %d px; using %d px",
                        options.overlap, tile, overlap)
        if pin_pending():  # in the engine worker only, before any pixel is read (.memory)
            pin_for_raster(raster_info(before).width)
        with AlignedPair(before, after, options.bands_before, options.bands_after,
                         options.normalisation) as pair:
            origin = grid_origin(pair.geotransform)
            tiles = lattice_tiles(pair.width, pair.height, tile, overlap, origin)
            batch_size = self.batch_size(tile, options.batch_size)
            meta = self._output_metadata(pair, options, tile, overlap, origin)
            log.info("Detecting changes on %d×%d px in %d tiles of %d px (overlap %d, batch %d) on %s",
                     pair.width, pair.height, len(tiles), tile, overlap, batch_size,
                     self.device_description)
            grid = dict(width=pair.width, height=pair.height, geotransform=pair.geotransform,
                        crs_wkt=pair.crs_wkt, metadata=meta)
            batches = batches_of(tiles, batch_size)
            n_polygons = 0
            # all outputs are published together when the block ends, or none of them
            with OutputSet() as outputs, contextlib.ExitStack() as threads:
                mask_out = outputs.add(AtomicRasterWriter(
                    out_path, dtype="uint8", nodata=MASK_NODATA, cog=options.cog, **grid))
                prob_out = self._probability_writer(prob_path, poly_path, options, grid)
                if prob_out is not None:
                    outputs.add(prob_out)
                sink = _RowOutputs(mask_out, prob_out, options.threshold, options.probability_format)
                writer = BackgroundSink(sink, depth=1)  # compression overlaps with the model
                threads.callback(writer.abort)  # no-op after close()
                blender = StripBlender(pair.width, pair.height, tile, overlap, origin, writer)
                if options.dask_scheduler:
                    from .distributed import dask_results

                    results = dask_results(options.dask_scheduler, self, pair, options, batches)
                else:
                    results = self._local_results(pair, batches, batch_size,
                                                  self.reader_threads(options.readers))
                with contextlib.closing(results):
                    self._consume(results, blender, len(tiles), progress, is_cancelled)
                blender.finish()
                writer.close()
                require_valid_pixels(sink.valid, before, after)  # else an all-nodata "result"
                if poly_path is not None:
                    poly_temp = partial_path(poly_path)
                    outputs.add_file(poly_temp, poly_path)
                    n_polygons = polygonize_mask(
                        mask_out.finish(), poly_temp, prob_out.finish() if prob_out else None,
                        options.min_area, self._polygon_attributes(pair))
        seconds = time.perf_counter() - started
        log.info("Done in %.1f s (%.2f Mpx/s): %d of %d valid pixels changed", seconds,
                 pair.width * pair.height / 1e6 / max(seconds, 1e-9), sink.changed, sink.valid)
        return DetectionResult(out_path, prob_path, pair.width, pair.height, sink.changed, sink.valid,
                               seconds, self.device_description, meta, poly_path, n_polygons, len(tiles))

    @staticmethod
    def _probability_writer(prob_path: Path | None, poly_path: Path | None, options: DetectionOptions,
                            grid: dict) -> AtomicRasterWriter | None:
        if prob_path is None and poly_path is None:
            return None
        percent = options.probability_format == "uint8"
        kind = dict(dtype="uint8", nodata=PERCENT_NODATA, scale=0.01) if percent else \
            dict(dtype="float32", nodata=PROBABILITY_NODATA)
        if prob_path is not None:
            return AtomicRasterWriter(prob_path, cog=options.cog, **kind, **grid)
        # polygons only: a scratch probability raster for their mean probability, never published
        scratch = poly_path.with_name(f".{poly_path.stem}.probability.tif")
        return AtomicRasterWriter(scratch, scratch=True, **kind, **grid)

    @staticmethod
    def _consume(results: Iterator[PredictedBatch], blender: StripBlender, total: int,
                 progress: ProgressCallback | None, is_cancelled: CancelCallback | None) -> None:
        done = 0
        while True:
            if is_cancelled and is_cancelled():
                raise CancelledError("Change detection was cancelled; no output was written.")
            batch = next(results, None)
            if batch is None:
                return
            for i, t in enumerate(batch.tiles):
                blender.add(t, batch.probs.get(i), batch.valid[i])
            done += len(batch.tiles)
            if progress:
                progress(100.0 * done / total)

    def _prompt_text(self) -> str:
        return ", ".join(str(p) for p in self.prompts)

    def _polygon_attributes(self, pair: AlignedPair) -> dict:
        m = self.metadata
        return {"method": str(m.get("method") or ""), "delta": float(m.get("delta") or 0.0),
                "prompts": self._prompt_text(),
                "before": Path(str(pair.before.path)).name, "after": Path(str(pair.after.path)).name}

    def _output_metadata(self, pair: AlignedPair, options: DetectionOptions, tile: int, overlap: int,
                         origin: tuple[int, int]) -> dict:
        m = self.metadata
        return {
            "SAMCD_METHOD": m.get("method"), "SAMCD_ENCODER": m.get("encoder"),
            "SAMCD_DELTA": m.get("delta"), "SAMCD_CHECKPOINT": self.checkpoint.name,
            "SAMCD_PROMPTS": self._prompt_text(),
            "SAMCD_THRESHOLD": options.threshold,
            "SAMCD_BEFORE": Path(pair.before.path).name, "SAMCD_AFTER": Path(pair.after.path).name,
            "SAMCD_NORMALISATION": pair.normalisation,
            "SAMCD_STATS_BEFORE": repr(pair.stats_before), "SAMCD_STATS_AFTER": repr(pair.stats_after),
            "SAMCD_TILING": f"lattice tile={tile} overlap={overlap} origin={origin[0]},{origin[1]} "
                            "blend=raised-cosine",
            "SAMCD_PROBABILITY_FORMAT": options.probability_format,
        }
