"""Model throughput: pairs per second of each method × encoder, and the head's overhead.

Needs torch and the models only (no GDAL, no QGIS), so it runs on a bare GPU box. One "pair" is a
before and an after tile of ``size``² px; the bare encoder row times the encoder on both tiles
(what every method runs first), and ``ratio`` = method time / bare encoder time at that size.
``sam-cd`` is timed with its prompt-free prior; ``sam-cd+prompts`` adds the semantic prior (a
FastSAM-s mask generator kept at ``max_masks`` masks and a ViT-B-32 CLIP, random weights) and
is skipped, with the reason, when open_clip is missing. On CUDA, autocast (bf16 where supported,
else fp16) is used and timings are synchronised.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from ..core.errors import InputError, SamCdError
from ..models.encoders.base import build_encoder, encoder_names
from ..models.registry import build_model
from .device import autocast, autocast_dtype, describe_device, resolve_device

log = logging.getLogger(__name__)
ENCODER_ROW = "encoder"
BENCH_METHODS = ("sam-cem-cd", "sam2-cd", "sam-cd", "sam-cd+prompts")
#: ``wall``: elapsed time; ``cpu``: this process's CPU time (CPU device: on a machine shared with
#: other jobs it stays near an idle run's figure when torch uses one thread)
CLOCKS = ("wall", "cpu")


@dataclass
class BenchConfig:
    """What to time; empty ``encoders`` means every registered encoder."""

    encoders: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: list(BENCH_METHODS))
    sizes: list[int] = field(default_factory=lambda: [256, 512])
    batch_size: int = 1
    repeats: int = 5
    warmup: int = 1
    device: str = "auto"
    max_masks: int = 32
    clock: str = "wall"

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in BENCH_METHODS]
        if unknown:
            raise InputError(f"Unknown method(s) {unknown}. Use: {', '.join(BENCH_METHODS)}.")
        if any(s % 32 or s < 64 for s in self.sizes):
            raise InputError("Tile sizes must be multiples of 32, at least 64.")
        if self.clock not in CLOCKS:
            raise InputError(f"clock must be one of {', '.join(CLOCKS)}.")
        if self.batch_size < 1 or self.repeats < 1 or self.warmup < 0:
            raise InputError("batch size and repeats must be at least 1, warm-up at least 0.")


@dataclass
class BenchRow:
    """One timing; ``skipped`` holds the reason when it could not run (then no numbers)."""

    encoder: str
    method: str
    size: int
    batch_size: int
    ms_per_batch: float | None = None
    pairs_per_s: float | None = None
    ratio: float | None = None
    skipped: str | None = None


@dataclass
class BenchReport:
    device: str
    torch: str
    autocast: str | None
    rows: list[BenchRow]

    def as_dict(self) -> dict:
        return asdict(self)


def _time(fn: Callable[[], object], device: torch.device, dtype: torch.dtype | None,
          repeats: int, warmup: int, clock: str = "wall") -> float:
    """Median seconds of ``fn()`` under no_grad (and autocast on CUDA) on ``clock``."""
    now = time.process_time if clock == "cpu" and device.type == "cpu" else time.perf_counter
    times = []
    with torch.inference_mode(), autocast(device, dtype):
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = now()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(now() - start)
    return statistics.median(times)


def _build(method: str, encoder: str, max_masks: int) -> nn.Module:
    if method != "sam-cd+prompts":
        return build_model({"method": method, "encoder": encoder})
    from ..models.sam_cd import SamCd
    from ..models.semantic_prior import ClipScorer, FastSamMaskGenerator

    clip = ClipScorer.random()  # DependencyError without open_clip
    generator = FastSamMaskGenerator("fastsam-s", conf=0.0, max_masks=max_masks,
                                     require_weights=False)
    model = SamCd(build_encoder(encoder), prompts=["building"], mask_generator=generator)
    model.attach_clip(clip)
    return model


def run_bench(config: BenchConfig, progress: Callable[[BenchRow], None] | None = None) -> BenchReport:
    """Time every encoder (bare) and method at every size; see the module docstring."""
    config.validate()
    device = resolve_device(config.device)
    dtype = autocast_dtype("auto", device)
    encoders = config.encoders or encoder_names()
    rows: list[BenchRow] = []

    def record(row: BenchRow) -> None:
        rows.append(row)
        log.debug("%s", row)
        if progress:
            progress(row)

    for name in encoders:
        bare = build_encoder(name).eval().to(device)
        base: dict[int, float] = {}
        for size in config.sizes:
            x = torch.rand(2 * config.batch_size, 3, size, size, device=device)
            base[size] = _time(lambda: bare(x), device, dtype, config.repeats, config.warmup,
                               config.clock)
            record(BenchRow(name, ENCODER_ROW, size, config.batch_size, 1000 * base[size],
                            config.batch_size / base[size], 1.0))
        del bare
        for method in config.methods:
            try:
                model = _build(method, name, config.max_masks).eval().to(device)
            except SamCdError as exc:
                for size in config.sizes:
                    record(BenchRow(name, method, size, config.batch_size, skipped=str(exc)))
                continue
            for size in config.sizes:
                b = torch.rand(config.batch_size, 3, size, size, device=device)
                a = torch.rand(config.batch_size, 3, size, size, device=device)
                try:
                    seconds = _time(lambda: model(b, a), device, dtype, config.repeats,
                                    config.warmup, config.clock)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    record(BenchRow(name, method, size, config.batch_size, skipped="out of GPU memory"))
                    continue
                record(BenchRow(name, method, size, config.batch_size, 1000 * seconds,
                                config.batch_size / seconds, seconds / base[size]))
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return BenchReport(describe_device(device), torch.__version__,
                       str(dtype).replace("torch.", "") if dtype else None, rows)


def format_bench(report: BenchReport) -> str:
    """Markdown table of a :class:`BenchReport` (skipped rows listed with their reason)."""
    lines = [f"device: {report.device}; torch {report.torch}; "
             f"{'autocast ' + report.autocast if report.autocast else 'fp32'}",
             "", "| encoder | method | tile | batch | ms / batch | pairs / s | × encoder |",
             "|---|---|---|---|---|---|---|"]
    skipped = []
    for r in report.rows:
        if r.skipped:
            skipped.append(f"- {r.encoder} / {r.method} @ {r.size}: skipped: {r.skipped}")
            continue
        lines.append(f"| {r.encoder} | {r.method} | {r.size} | {r.batch_size} | {r.ms_per_batch:.1f} "
                     f"| {r.pairs_per_s:.2f} | {r.ratio:.2f} |")
    return "\n".join(lines + ([""] + sorted(set(skipped)) if skipped else []))
