"""Change-detection datasets in the LEVIR-CD layout: ``<root>/A``, ``<root>/B``, ``<root>/label``.

Files pair up by name (any GDAL-readable image); labels may be 0/255 or 0/1. Images are read
once, normalised like the detector does (uint8 → /255, other types → robust per-band stretch),
and served as random crops with augmentations that keep before, after and label aligned.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import InputError
from ..core.normalisation import compute_band_stats, normalise
from ..core.raster import read_image, read_label


@dataclass(frozen=True)
class PairPaths:
    name: str
    before: Path
    after: Path
    label: Path


def find_pairs(root: Path | str, include: Sequence[str] = ()) -> list[PairPaths]:
    """All ``A/x``, ``B/x``, ``label/x`` triplets under ``root`` whose stem matches ``include`` globs."""
    root = Path(root)
    dirs = [root / d for d in ("A", "B", "label")]
    if not all(d.is_dir() for d in dirs):
        raise InputError(f"{root} is not a change-detection dataset folder: it needs A/, B/ and "
                         "label/ sub-folders with matching file names (LEVIR-CD layout).")
    pairs = []
    for before in sorted(p for p in dirs[0].iterdir() if p.is_file() and not p.name.startswith(".")):
        if include and not any(fnmatch.fnmatch(before.stem, pat) for pat in include):
            continue
        after, label = dirs[1] / before.name, dirs[2] / before.name
        if not after.is_file() or not label.is_file():
            raise InputError(f"{before.name} has no matching file in {dirs[1]} or {dirs[2]}.")
        pairs.append(PairPaths(before.stem, before, after, label))
    if not pairs:
        raise InputError(f"No image pairs found in {root}" + (f" matching {list(include)}" if include else ""))
    return pairs


def load_normalised(path: Path, bands: Sequence[int] | None = None) -> np.ndarray:
    """``(3, H, W)`` float32 in [0, 1], normalised as the detector normalises rasters."""
    image = read_image(path)
    bands = list(bands) if bands else list(range(1, min(3, image.shape[0]) + 1))
    stats = compute_band_stats(path, bands)
    image = normalise(image[[b - 1 for b in bands]], stats)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    return image


class ChangeDataset(Dataset):
    """Random ``crop``-px windows (``samples_per_pair`` per pair and epoch) of the given pairs."""

    def __init__(self, pairs: Sequence[PairPaths], crop: int = 256, samples_per_pair: int = 4,
                 augment: bool = True, seed: int = 0) -> None:
        self.pairs = list(pairs)
        self.crop = crop
        self.samples_per_pair = samples_per_pair
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.images = [(load_normalised(p.before), load_normalised(p.after),
                        read_label(p.label).astype(np.float32)) for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs) * self.samples_per_pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        before, after, label = self.images[index // self.samples_per_pair]
        before, after, label = self._crop(before, after, label[None])
        if self.augment:
            before, after, label = self._augment(before, after, label)
        return (torch.from_numpy(np.ascontiguousarray(before)),
                torch.from_numpy(np.ascontiguousarray(after)),
                torch.from_numpy(np.ascontiguousarray(label)))

    def _crop(self, *arrays: np.ndarray) -> list[np.ndarray]:
        h, w = arrays[0].shape[-2:]
        pad_h, pad_w = max(0, self.crop - h), max(0, self.crop - w)
        if pad_h or pad_w:
            arrays = [np.pad(a, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect") for a in arrays]
            h, w = arrays[0].shape[-2:]
        y = int(self.rng.integers(0, h - self.crop + 1))
        x = int(self.rng.integers(0, w - self.crop + 1))
        return [a[:, y:y + self.crop, x:x + self.crop] for a in arrays]

    def _augment(self, before: np.ndarray, after: np.ndarray, label: np.ndarray):
        k = int(self.rng.integers(0, 4))
        flip = bool(self.rng.integers(0, 2))
        out = []
        for a in (before, after, label):
            a = np.rot90(a, k, axes=(1, 2))
            out.append(a[:, :, ::-1] if flip else a)
        if self.rng.random() < 0.5:  # swapping dates keeps "changed" semantics symmetric
            out[0], out[1] = out[1], out[0]
        for i in (0, 1):  # brightness/contrast jitter applied per date
            gain, bias = self.rng.uniform(0.85, 1.15), self.rng.uniform(-0.05, 0.05)
            out[i] = np.clip(out[i] * gain + bias, 0.0, 1.0).astype(np.float32)
        return out
