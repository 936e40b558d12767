"""Semantic prior masks from category text prompts (SAM-CD).

Pipeline, per image: a *mask generator* segments "everything" into candidate masks; each mask's
crop is scored against the prompt texts with CLIP; the prior is, per pixel, the highest category
probability of the masks covering it (0 where no mask covers it). Result: ``(B, 1, H, W)`` in
[0, 1].

- Mask generators: :class:`FastSamMaskGenerator` (FastSAM = YOLOv8-seg built by ultralytics, the
  SAM-family everything-segmenter; its weights travel in the trained SAM-CD checkpoint) and
  :class:`GridMaskGenerator` (weight-free multi-scale windows: a coarse prior, for setups without
  FastSAM weights).
- CLIP comes from ``open_clip`` (``open_clip_torch``), built offline; its BPE vocabulary ships
  inside the package, so nothing is downloaded. The weights are a file the user gives
  (:meth:`ClipScorer.load`): OpenAI's TorchScript ``ViT-B-32.pt`` or open_clip's
  ``open_clip_pytorch_model.bin`` / ``.safetensors``. CLIP weights are never stored in a sam-cd
  checkpoint. :meth:`ClipScorer.random` builds a randomly initialised CLIP (tests only).
- Category probability of a crop: softmax of CLIP's scaled cosine similarities over the prompts
  plus a few generic background texts (:data:`BACKGROUND_TEXTS`), summed over the prompts.
"""
from __future__ import annotations

import logging
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import CheckpointError, DependencyError, WeightsError

log = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "ViT-B-32"
PROMPT_TEMPLATE = "a satellite image of {}."
BACKGROUND_TEXTS = ("background", "bare soil", "vegetation", "road", "water")


def clip_weights_hint(model_name: str = DEFAULT_CLIP_MODEL) -> str:
    """The file a user must provide for ``model_name`` (for error messages)."""
    base = model_name.replace("-quickgelu", "")
    return (f"{base} CLIP weights (OpenAI's {base}.pt, or open_clip's "
            "open_clip_pytorch_model.bin / open_clip_model.safetensors)")


def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise DependencyError(
            "Text prompts need the open_clip_torch package: "
            "pip install open_clip_torch (see requirements.txt).") from exc
    return open_clip


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("constants.pkl") for name in archive.namelist())


def _read_clip_state(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """``(state_dict, is_openai_torchscript)`` of a CLIP weights file; WeightsError if unreadable."""
    try:
        if _is_torchscript_archive(path):
            # OpenAI's release files are TorchScript archives; only their tensors are used.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            return {k: v for k, v in state.items()
                    if k not in ("input_resolution", "context_length", "vocab_size",
                                 "attn_mask")}, True
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu"), False
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"Cannot read CLIP weights '{path.name}': {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}. "
            f"Provide {clip_weights_hint()}.") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"'{path.name}' does not hold CLIP weights. Provide {clip_weights_hint()}.")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}, False


class _DropRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


class ClipScorer:
    """CLIP image/text encoders (frozen, eval mode) used to score mask crops against prompts."""

    def __init__(self, model: nn.Module, tokenizer, model_name: str, source: str) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.source = source
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(1, 3, 1, 1)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)

    @classmethod
    def load(cls, weights: Path | str | None, model_name: str = DEFAULT_CLIP_MODEL) -> "ClipScorer":
        """CLIP ``model_name`` with the user's weights file; WeightsError naming the file if absent.

        OpenAI TorchScript files imply QuickGELU; for open_clip files of OpenAI weights use a
        ``-quickgelu`` model name (e.g. ``ViT-B-32-quickgelu``).
        """
        if weights is None or not Path(weights).is_file():
            where = f" ('{weights}' does not exist)" if weights is not None else ""
            raise WeightsError(
                f"Text prompts need {clip_weights_hint(model_name)}{where}. Give that file, or "
                "use the model without prompts.")
        path = Path(weights)
        open_clip = _open_clip()
        if model_name.replace("-quickgelu", "") not in open_clip.list_models():
            raise CheckpointError(f"Unknown CLIP architecture '{model_name}' (e.g. {DEFAULT_CLIP_MODEL}).")
        state, openai = _read_clip_state(path)
        quick = openai or "quickgelu" in model_name
        notice = _DropRandomInitNotice()  # open_clip logs "initialized randomly" before we load
        logging.getLogger().addFilter(notice)
        try:
            model = open_clip.create_model(model_name.replace("-quickgelu", ""), pretrained=None,
                                           force_quick_gelu=quick)
            if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
                state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
            model.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError) as exc:
            raise WeightsError(
                f"'{path.name}' does not match the {model_name} CLIP architecture "
                f"({' '.join(str(exc).split())[:200]}). Provide {clip_weights_hint(model_name)}."
            ) from exc
        finally:
            logging.getLogger().removeFilter(notice)
        log.info("Loaded CLIP %s from %s", model_name, path)
        return cls(model, open_clip.get_tokenizer(model_name.replace("-quickgelu", "")),
                   model_name, path.name)

    @classmethod
    def random(cls, model_name: str = DEFAULT_CLIP_MODEL, seed: int = 0) -> "ClipScorer":
        """A randomly initialised CLIP built offline (tests; its scores are meaningless)."""
        open_clip = _open_clip()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = open_clip.create_model(model_name, pretrained=None)
        finally:
            torch.random.set_rng_state(state)
        log.warning("Using a randomly initialised CLIP %s: prompt scores are meaningless", model_name)
        return cls(model, open_clip.get_tokenizer(model_name), model_name, "random")

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``(T, D)`` L2-normalised text embeddings."""
        device = self.mean.device
        return F.normalize(self.model.encode_text(self.tokenizer(list(texts)).to(device)), dim=-1)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` L2-normalised embeddings of ``(N, 3, h, w)`` crops in [0, 1] (resized)."""
        x = F.interpolate(images, size=(self.image_size, self.image_size), mode="bicubic",
                          align_corners=False).clamp(0, 1)
        x = (x - self.mean.to(x)) / self.std.to(x)
        return F.normalize(self.model.encode_image(x), dim=-1)

    def to(self, device: torch.device | str) -> "ClipScorer":
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    @staticmethod
    def category_texts(prompts: Sequence[str], background: Sequence[str] = BACKGROUND_TEXTS
                       ) -> list[str]:
        """The texts scored: the prompts first, then the background texts that are not prompts."""
        prompts = [p.strip() for p in prompts if p.strip()]
        lowered = {p.lower() for p in prompts}
        others = [b for b in background if b.lower() not in lowered]
        return [PROMPT_TEMPLATE.format(t) for t in [*prompts, *others]]

    @torch.no_grad()
    def category_probability(self, crops: torch.Tensor, prompts: Sequence[str],
                             background: Sequence[str] = BACKGROUND_TEXTS,
                             text: torch.Tensor | None = None) -> torch.Tensor:
        """``(N,)`` probability that each crop shows one of ``prompts`` (vs. background texts);
        ``text``: the embeddings of :meth:`category_texts`, when already computed."""
        prompts = [p.strip() for p in prompts if p.strip()]
        if text is None:
            text = self.encode_text(self.category_texts(prompts, background))
        image = self.encode_images(crops)
        scale = self.model.logit_scale.exp().clamp(max=100.0)
        probs = (scale * image @ text.t()).softmax(dim=-1)
        return probs[:, :len(prompts)].sum(dim=-1)


class MaskGenerator(nn.Module):
    """``forward(image (3, H, W) in [0, 1]) -> masks (N, H, W) bool`` (N may be 0); always frozen."""

    name = ""

    def train(self, mode: bool = True) -> "MaskGenerator":
        return super().train(False)

    def check_ready(self) -> None:
        """Raise WeightsError when the generator cannot give meaningful masks."""


class GridMaskGenerator(MaskGenerator):
    """Weight-free candidate masks: windows of a ``k × k`` grid for each k in ``cells``."""

    name = "grid"

    def __init__(self, cells: Sequence[int] = (2, 4)) -> None:
        super().__init__()
        self.cells = tuple(cells)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        masks = []
        for k in self.cells:
            ys = [round(i * h / k) for i in range(k + 1)]
            xs = [round(i * w / k) for i in range(k + 1)]
            for i in range(k):
                for j in range(k):
                    m = torch.zeros(h, w, dtype=torch.bool, device=image.device)
                    m[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = True
                    masks.append(m)
        return torch.stack(masks)


class FastSamMaskGenerator(MaskGenerator):
    """FastSAM everything-segmentation (YOLOv8-seg, one class) → instance masks after NMS.

    ``has_weights`` is a persistent buffer: True once official FastSAM weights were loaded, so a
    trained checkpoint carries it. With ``require_weights`` (the default) an untrained generator
    refuses to run (WeightsError), because random masks would silently void the prompts.
    """

    _CONFIGS = {"fastsam-s": "yolov8s-seg.yaml", "fastsam-x": "yolov8x-seg.yaml"}

    def __init__(self, name: str = "fastsam-s", conf: float = 0.4, iou: float = 0.9,
                 max_masks: int = 32, min_area: int = 16, require_weights: bool = True) -> None:
        super().__init__()
        from ultralytics.nn.tasks import SegmentationModel

        if name not in self._CONFIGS:
            raise ValueError(f"unknown FastSAM variant {name!r}")
        self.name = name
        self.model = SegmentationModel(self._CONFIGS[name], nc=1, verbose=False)
        self.model.requires_grad_(False)
        self.conf, self.iou, self.max_masks, self.min_area = conf, iou, max_masks, min_area
        self.require_weights = require_weights
        self.register_buffer("has_weights", torch.zeros((), dtype=torch.bool))
        self.train(False)

    def load_weights(self, path: Path | str) -> None:
        """Load an official FastSAM-s.pt / FastSAM-x.pt file (whole model: backbone, neck, head)."""
        from .encoders.weights import copy_matching, load_ultralytics_state_dict

        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"FastSAM weights file not found: {path}.")
        copy_matching(self.model, load_ultralytics_state_dict(path), path, self.name)
        self.has_weights.fill_(True)

    def weights_hint(self) -> str:
        return f"{'FastSAM-s.pt' if self.name == 'fastsam-s' else 'FastSAM-x.pt'}"

    def check_ready(self) -> None:
        if self.require_weights and not bool(self.has_weights):
            raise WeightsError(
                f"The {self.name} mask generator of the semantic prior has no trained weights. "
                f"Train with the official {self.weights_hint()} file (it provides the "
                "everything-segmentation masks the prompts select from).")

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from ultralytics.utils import ops
        from ultralytics.utils.nms import non_max_suppression

        self.check_ready()
        h, w = image.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        x = F.pad(image[None], (0, pw, 0, ph), mode="replicate") if ph or pw else image[None]
        preds, protos = self.model(x)[0]
        det = non_max_suppression(preds, self.conf, self.iou, nc=1, max_det=self.max_masks)[0]
        if det.shape[0] == 0:
            return torch.zeros(0, h, w, dtype=torch.bool, device=image.device)
        masks = ops.process_mask(protos[0], det[:, 6:], det[:, :4], x.shape[-2:], upsample=True)
        masks = masks[:, :h, :w].bool()
        return masks[masks.flatten(1).sum(1) >= self.min_area]


def build_mask_generator(name: str, weights: Path | str | None = None,
                         require_weights: bool = True) -> MaskGenerator:
    """``'grid'``, ``'fastsam-s'`` or ``'fastsam-x'`` (FastSAM weights loaded when given)."""
    if name == "grid":
        return GridMaskGenerator()
    generator = FastSamMaskGenerator(name, require_weights=require_weights)
    if weights is not None:
        generator.load_weights(weights)
    return generator


def mask_crops(image: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor,
               pad: float = 0.1) -> torch.Tensor:
    """Square crops around each mask's box (``(N, 3, s, s)``); pixels outside the mask = ``fill``."""
    h, w = image.shape[-2:]
    crops = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        side = int(max(y1 - y0, x1 - x0) * (1 + pad)) + 1
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        canvas = fill.view(3, 1, 1).expand(3, side, side).clone()
        ty0, tx0 = cy - side // 2, cx - side // 2
        sy0, sx0, sy1, sx1 = max(0, ty0), max(0, tx0), min(h, ty0 + side), min(w, tx0 + side)
        region = torch.where(m[sy0:sy1, sx0:sx1], image[:, sy0:sy1, sx0:sx1], fill.view(3, 1, 1))
        canvas[:, sy0 - ty0:sy1 - ty0, sx0 - tx0:sx1 - tx0] = region
        crops.append(F.interpolate(canvas[None], size=(224, 224), mode="bilinear",
                                   align_corners=False)[0])
    return torch.stack(crops)


class SemanticPrior:
    """Prior masks ``(B, 1, H, W)`` in [0, 1] for ``prompts`` from ``generator`` + ``clip``."""

    def __init__(self, clip: ClipScorer, generator: MaskGenerator, prompts: Sequence[str],
                 background: Sequence[str] = BACKGROUND_TEXTS) -> None:
        self.prompts = [p.strip() for p in prompts if p.strip()]
        if not self.prompts:
            raise ValueError("SemanticPrior needs at least one non-empty prompt")
        self.clip, self.generator, self.background = clip, generator, tuple(background)
        self._text: torch.Tensor | None = None  # the prompts' text embeddings, computed once

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.generator.check_ready()
        out = torch.zeros(images.shape[0], 1, *images.shape[-2:], device=images.device)
        fill = self.clip.mean.view(3).to(images)
        for b, image in enumerate(images):
            masks = self.generator(image)
            if masks.shape[0] == 0:
                continue
            if self._text is None or self._text.device != images.device:
                self._text = self.clip.encode_text(self.clip.category_texts(self.prompts,
                                                                            self.background))
            probs = self.clip.category_probability(mask_crops(image, masks, fill), self.prompts,
                                                   self.background, text=self._text)
            out[b, 0] = (masks.float() * probs.view(-1, 1, 1).to(out)).amax(dim=0)
        return out
