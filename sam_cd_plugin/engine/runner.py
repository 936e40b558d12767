"""What an engine process does with requests: the model cache and the handlers of each method.

Both transports run this code (in-process: in QGIS's own Python; worker: in the engine worker),
so they give the same pixels. :class:`EngineSession` keeps the last loaded detectors, keyed by
checkpoint path + modification time + device + CLIP weights + prompts, and counts model loads.
Every failure leaves :meth:`EngineSession.call` as one :class:`SamCdError`.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import contextlib

from ..core.errors import SamCdError
from ..paths import resolve_checkpoint
from . import memory
from .failures import user_error
from .requests import AreaTrainRequest, DetectRequest, EvaluateRequest, TrainRequest, jsonable

log = logging.getLogger(__name__)

ProgressFn = Callable[[float], None]
CancelFn = Callable[[], bool]
LogFn = Callable[[str, str], None]

#: method -> what the user reads "... failed" about
ACTIONS = {"detect": "Change detection", "evaluate": "Evaluation", "train": "Training",
           "train_area": "Training on the area",
           "checkpoint_metadata": "Reading the checkpoint", "describe_device": "Probing the device",
           "check_weights": "Checking the weights file", "stats": "Engine statistics",
           "free_models": "Freeing the models"}
RUNS = ("detect", "evaluate", "train", "train_area")
CLIP_KEY = "clip-vit-b-32"
MAX_MODELS = 2


@contextlib.contextmanager
def forwarded_logs(sink: LogFn | None) -> Iterator[None]:
    """Send the package's log records of this thread (INFO and up) to ``sink`` meanwhile."""
    if sink is None:
        yield
        return
    thread = threading.get_ident()

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                sink(record.levelname.lower(), record.getMessage())

    package = logging.getLogger(__name__.split(".")[0])
    handler, level = Forward(logging.INFO), package.level
    package.addHandler(handler)
    if not package.isEnabledFor(logging.INFO):
        package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)


class EngineSession:
    """The models one engine process holds between runs, and the method handlers."""

    def __init__(self, max_models: int = MAX_MODELS) -> None:
        self.max_models = max_models
        self.model_loads = 0
        self._models: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ entry point
    def call(self, method: str, payload: Any, progress: ProgressFn | None = None,
             is_cancelled: CancelFn | None = None, sink: LogFn | None = None) -> Any:
        """Run ``method`` (a request object for runs, a dict of arguments for queries)."""
        action = ACTIONS.get(method)
        if action is None:
            raise SamCdError(f"The detection engine has no method '{method}'.")
        try:
            with forwarded_logs(sink):
                if method in RUNS:
                    return getattr(self, method)(payload, progress or (lambda _v: None),
                                                 is_cancelled or (lambda: False), sink or (lambda *_: None))
                return getattr(self, method)(**payload)
        except Exception as exc:  # noqa: BLE001 (every failure becomes one user-facing error)
            if not isinstance(exc, SamCdError):
                log.debug("%s failed", action, exc_info=True)
            raise user_error(exc, action) from exc

    # ------------------------------------------------------------------ models
    def detector(self, checkpoint: str | None, device: str, clip_weights: str | None = None,
                 prompts: list[str] | None = None):
        """A loaded ``ChangeDetector`` for these settings, from the cache when it holds one."""
        from .detector import ChangeDetector

        path = resolve_checkpoint(checkpoint)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = None  # ChangeDetector says what is wrong with the path
        key = (str(path.absolute()), mtime, device, str(clip_weights or ""),
               None if prompts is None else tuple(prompts))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        detector = ChangeDetector(path, device, clip_weights, prompts)
        with self._lock:
            self.model_loads += 1
            self._models[key] = detector
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        return detector

    def free_models(self) -> dict:
        """Drop every cached model (and CUDA's cached memory)."""
        with self._lock:
            count = len(self._models)
            self._models.clear()
        if count:
            import gc

            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:  # pragma: no cover
                pass
        return {"freed": count}

    def stats(self) -> dict:
        import os

        with self._lock:
            return {"model_loads": self.model_loads, "models": len(self._models), "pid": os.getpid(),
                    "allocator_pinned": memory.is_pinned()}

    # ------------------------------------------------------------------ runs
    def detect(self, request: DetectRequest, progress: ProgressFn, is_cancelled: CancelFn,
               sink: LogFn) -> dict:
        detector = self.detector(request.checkpoint, request.device, request.clip_weights,
                                 request.prompts)
        if detector.metadata.get("method") == "sam-cd":
            sink("info", f"Semantic prior: {detector.model.prior_description()}")
        sink("info", f"Device: {detector.device_description}")
        if request.device == "cuda" and not detector.device_description.upper().startswith("CUDA"):
            sink("warning", "CUDA was requested but is not available; running on the CPU.")
        result = detector.detect(request.before, request.after, request.out_path,
                                 options=request.options, progress=progress, is_cancelled=is_cancelled)
        return jsonable(asdict(result))

    def evaluate(self, request: EvaluateRequest, progress: ProgressFn, is_cancelled: CancelFn,
                 sink: LogFn) -> dict:
        from .datasets import find_pairs
        from .evaluation import evaluate_pairs
        from .options import DetectionOptions

        pairs = find_pairs(Path(request.data), request.include, request.split)
        detector = self.detector(request.checkpoint, request.device)
        result = evaluate_pairs(detector, pairs, DetectionOptions(threshold=request.threshold))
        progress(100.0)
        return jsonable({"checkpoint": str(detector.checkpoint), "metadata": detector.metadata,
                         "pairs": len(pairs), "total": result.total.as_dict(),
                         "per_pair": {k: v.as_dict() for k, v in result.per_pair.items()}})

    def train(self, request: TrainRequest, progress: ProgressFn, is_cancelled: CancelFn,
              sink: LogFn) -> dict:
        from .device import describe_device, resolve_device
        from .training import EpochReport, TrainConfig, train

        config = TrainConfig(**_train_fields(request.config))

        def report(epoch: EpochReport) -> None:
            progress(100.0 * epoch.epoch / epoch.epochs)
            sink("info", epoch.line())

        used = describe_device(resolve_device(config.device))
        sink("info", f"Training {config.method} / {config.encoder} (δ = {config.delta}) on {used}")
        path = train(config, progress=report, is_cancelled=is_cancelled)
        metadata = self._score_after_training(config, path, request.eval_include, sink)
        return jsonable({"path": str(path), "device": used, "metadata": metadata})

    def train_area(self, request: AreaTrainRequest, progress: ProgressFn, is_cancelled: CancelFn,
                   sink: LogFn) -> dict:
        from .area_training import AreaTrainConfig, train_area

        result = train_area(AreaTrainConfig(**request.config), progress=progress, is_cancelled=is_cancelled)
        return jsonable({"path": str(result.path), "device": result.device, "metadata": result.metadata})

    def _score_after_training(self, config, out: Path, eval_include: list[str] | None,
                              sink: LogFn) -> dict:
        """With ``eval_include``: score the training and those pairs, store them in the metadata."""
        from ..models.checkpoint import load_checkpoint, save_checkpoint
        from .evaluation import evaluate_pairs
        from .training import collect_pairs

        _, meta = load_checkpoint(out)
        if eval_include is None:
            return meta
        detector = self.detector(str(out), config.device)
        for label, include in (("train", config.include), ("eval", eval_include)):
            cm = evaluate_pairs(detector, collect_pairs(config.data, include, config.split)).total
            meta["metrics"][label] = {"pairs_include": include, **cm.as_dict()}
            sink("info", f"{label}: F1 {cm.f1:.4f} IoU {cm.iou:.4f}")
        save_checkpoint(out, detector.model.cpu(), meta)
        self.free_models()  # that detector now sits on the CPU and its file changed
        return meta

    # ------------------------------------------------------------------ queries
    def checkpoint_metadata(self, path: str) -> dict:
        from ..models.checkpoint import read_metadata

        try:
            return read_metadata(resolve_checkpoint(path))
        except SamCdError as exc:
            return {"error": str(exc)}

    def describe_device(self, choice: str) -> str:
        import torch

        from .device import describe_device, resolve_device

        device = resolve_device(choice)
        text = describe_device(device)
        if choice == "cuda" and device.type != "cuda":
            return (f"{text} — CUDA was asked for but is not available (torch {torch.__version__} "
                    "sees no usable GPU); the run will use the CPU.")
        return text

    def check_weights(self, encoder: str, path: str) -> dict:
        file = Path(path)
        if not file.is_file():
            return {"ok": False, "message": f"{file} does not exist"}
        try:
            if encoder == CLIP_KEY:
                from ..models.semantic_prior import ClipScorer

                ClipScorer.load(file, "ViT-B-32")
            else:
                from ..models.encoders import build_encoder

                build_encoder(encoder, weights=file)
        except Exception as exc:  # noqa: BLE001 (every failure of an untrusted file is a status)
            return {"ok": False, "message": str(exc) or type(exc).__name__}
        return {"ok": True, "message": f"{file.name} loads into {encoder}"}


_TRAIN_PATHS = ("out", "encoder_weights", "checkpoint", "clip_weights", "mask_generator_weights")


def _train_fields(config: dict) -> dict:
    fields = dict(config)
    fields["data"] = [Path(p) for p in fields.get("data") or []]
    for key in _TRAIN_PATHS:
        if fields.get(key) not in (None, ""):
            fields[key] = Path(fields[key])
        elif key in fields:
            fields[key] = None
    return fields
