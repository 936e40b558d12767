"""Change-detection datasets: folder layouts, pair discovery, random training crops.

Layouts (detected per root; folder-name aliases in :data:`BEFORE_DIRS` etc.):

* **flat** — ``<root>/A``, ``<root>/B``, ``<root>/label`` (LEVIR-CD samples). With a ``split``,
  the pairs whose name starts with ``<split>_`` (tiles named ``train_*``, ``val_*``, ``test_*``).
* **split** — ``<root>/{train,val,test}/{A,B,label}`` (LEVIR-CD, WHU-CD, CLCD, S2Looking and
  LEVIR+-CD as distributed; ``Image1``/``Image2``, ``time1``/``time2`` are accepted for A/B).
* **list** — ``<root>/{A,B,label}`` plus ``<root>/list/{train,val,test}.txt`` naming the files of
  each split, one per line (with or without extension).

Files pair up by stem (any GDAL-readable image); labels may be 0/255 or 0/1. A pair is read
and normalised by the detector's reader (:class:`~..core.alignment.AlignedPair`: uint8 → /255,
other types → one 2–98 % stretch for both dates from the whole scene, never per tile) and served
as random crops (large images are cropped on the fly, e.g. 1024 → 256) with augmentations that
keep before, after and label aligned, plus identical-pair samples labelled no change.
"""
from __future__ import annotations

import fnmatch
import logging
import multiprocessing
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.alignment import AlignedPair
from ..core.errors import InputError
from ..core.raster import read_label

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
BEFORE_DIRS = ("A", "Image1", "time1", "T1", "im1")
AFTER_DIRS = ("B", "Image2", "time2", "T2", "im2")
LABEL_DIRS = ("label", "OUT", "gt")
#: Share of training samples that are identical pairs labelled no change.
IDENTICAL_SHARE = 0.1
#: decoded pairs kept in memory by one process (LRU), in bytes; DataLoader workers share it out
CACHE_MAX_BYTES = 4 << 30


@dataclass(frozen=True)
class PairPaths:
    name: str
    before: Path
    after: Path
    label: Path


def _triplet(folder: Path) -> tuple[Path, Path, Path] | None:
    """The (before, after, label) sub-folders of ``folder``, or None when one is missing."""
    found = []
    for names in (BEFORE_DIRS, AFTER_DIRS, LABEL_DIRS):
        hit = next((folder / n for n in names if (folder / n).is_dir()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1], found[2]


def dataset_layout(root: Path | str) -> str:
    """``'flat'``, ``'list'`` or ``'split'`` (see the module docstring); InputError otherwise."""
    root = Path(root)
    if _triplet(root) is not None:
        return "list" if any((root / "list" / f"{s}.txt").is_file() for s in SPLITS) else "flat"
    if any(_triplet(root / s) is not None for s in SPLITS):
        return "split"
    raise InputError(
        f"{root} is not a change-detection dataset folder: it needs A/, B/ and label/ sub-folders "
        "with matching file names (LEVIR-CD layout), or train/, val/, test/ folders that each hold "
        "A/, B/ and label/ (WHU-CD, CLCD, S2Looking layout).")


def available_splits(root: Path | str) -> list[str]:
    """The splits ``root`` defines (for a flat layout: the ``<split>_`` name prefixes present)."""
    root = Path(root)
    layout = dataset_layout(root)
    if layout == "split":
        return [s for s in SPLITS if _triplet(root / s) is not None]
    if layout == "list":
        return [s for s in SPLITS if (root / "list" / f"{s}.txt").is_file()]
    stems = [p.stem for p in _files(_triplet(root)[0])]  # type: ignore[index]
    return [s for s in SPLITS if any(stem.startswith(f"{s}_") for stem in stems)]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() not in (".aux", ".xml", ".txt", ".md", ".ovr"))


def _by_stem(folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in _files(folder):
        index.setdefault(p.stem, p)
    return index


def _read_list(path: Path) -> list[str]:
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(Path(line.split()[0]).stem)
    return names


def find_pairs(root: Path | str, include: Sequence[str] = (),
               split: str | None = None) -> list[PairPaths]:
    """Before/after/label triplets of ``root`` (any supported layout), filtered by ``include`` globs.

    ``split`` ('train' / 'val' / 'test') picks one split; it is required for the split and list
    layouts (InputError saying so otherwise). Raises InputError when nothing matches.
    """
    root = Path(root)
    layout = dataset_layout(root)
    if split is not None and split not in SPLITS:
        raise InputError(f"Unknown split '{split}'. Use one of: {', '.join(SPLITS)}.")
    if split is None and layout != "flat":
        raise InputError(f"{root} is split into {', '.join(available_splits(root))}: choose one "
                         "(split 'train', 'val' or 'test'; CLI: --split).")
    names = None
    if layout == "split":
        folder = root / str(split)
        dirs = _triplet(folder)
        if dirs is None:
            raise InputError(f"{root} has no '{split}' split with A/, B/ and label/ "
                             f"(it has: {', '.join(available_splits(root))}).")
    else:
        dirs = _triplet(root)
        if dirs is None:  # dataset_layout() said flat/list, which means the triplet exists
            raise InputError(f"{root} has no A/, B/ and label/ folders.")
        if layout == "list":
            listing = root / "list" / f"{split}.txt"
            if not listing.is_file():
                raise InputError(f"{listing} does not exist (splits listed: "
                                 f"{', '.join(available_splits(root))}).")
            names = _read_list(listing)
    before_index, after_index, label_index = (_by_stem(d) for d in dirs)
    if names is None:
        names = list(before_index)
        if split is not None and layout == "flat":
            names = [n for n in names if n.startswith(f"{split}_")]
    pairs = []
    for name in names:
        if include and not any(fnmatch.fnmatch(name, pat) for pat in include):
            continue
        missing = [str(d) for d, index in zip(dirs, (before_index, after_index, label_index))
                   if name not in index]
        if missing:
            raise InputError(f"Pair '{name}' has no file in {', '.join(missing)}; every pair needs "
                             "a before, an after and a label file with the same name.")
        pairs.append(PairPaths(name, before_index[name], after_index[name], label_index[name]))
    if not pairs:
        what = f" in split '{split}'" if split else ""
        raise InputError(f"No image pairs found in {root}{what}"
                         + (f" matching {list(include)}" if include else "") + ".")
    return pairs


def load_pair(pair: PairPaths, normalisation: str = "joint") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(before (3,H,W), after (3,H,W), label (H,W) float32 0/1)``, read and normalised as the
    detector reads the pair (``normalisation``: ``joint`` or ``per-date``, per scene); pixels
    invalid in either date are 0. InputError on size mismatch."""
    with AlignedPair(pair.before, pair.after, normalisation=normalisation) as aligned:
        before, after, _ = aligned.read(0, 0, aligned.width, aligned.height)
    label = read_label(pair.label).astype(np.float32)
    if before.shape != after.shape or before.shape[-2:] != label.shape[-2:]:
        raise InputError(f"Pair '{pair.name}': before {before.shape[-2:]}, after "
                         f"{after.shape[-2:]} and label {label.shape[-2:]} sizes differ.")
    return before, after, label


class ChangeDataset(Dataset):
    """Random ``crop``-px windows (``samples_per_pair`` per pair and epoch) of the given pairs.

    Images are read when needed and the decoded pairs kept in memory, least recently used
    dropped first, up to :data:`CACHE_MAX_BYTES` (``cache``: False keeps none; DataLoader workers
    each keep their share and, persistent, keep it across epochs). Per-epoch random streams
    (:meth:`set_epoch`) reach the workers too. Augmentation (``augment``): the same rot90 and flip for both dates and
    the label, a random date swap, and brightness/contrast/per-band colour jitter drawn
    independently for each date.

    A share ``identical`` of the samples are identical pairs labelled no change: one date of the
    crop (either, at random, after augmentation) as both before and after, all labels 0, so the
    model learns that nothing changed between identical images.
    """

    def __init__(self, pairs: Sequence[PairPaths], crop: int = 256, samples_per_pair: int = 4,
                 augment: bool = True, seed: int = 0, cache: bool | None = None,
                 identical: float = IDENTICAL_SHARE) -> None:
        if not pairs:
            raise InputError("The dataset has no pairs.")
        if not 0.0 <= identical <= 1.0:
            raise InputError(f"The share of identical-pair samples must be in [0, 1], got {identical}.")
        self.identical = identical
        self.pairs = list(pairs)
        self.crop = crop
        self.samples_per_pair = samples_per_pair
        self.augment = augment
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.cache_bytes = CACHE_MAX_BYTES if cache is None or cache else 0
        self._images: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._held = 0
        self._epoch_seed = multiprocessing.Value("q", seed, lock=False)  # seen by the workers
        self._worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.pairs) * self.samples_per_pair

    def reseed(self, seed: int) -> None:
        """New random stream (DataLoader workers call it with distinct seeds)."""
        self.rng = np.random.default_rng(seed)

    def set_epoch(self, seed: int) -> None:
        """New random streams for an epoch: this process's, and each worker's (``seed`` + its id)
        when it next draws — so a run is reproducible epoch by epoch with persistent workers."""
        self.reseed(seed)
        self._epoch_seed.value = seed

    def _pair(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if i in self._images:
            self._images.move_to_end(i)
            return self._images[i]
        arrays = load_pair(self.pairs[i])
        size = sum(a.nbytes for a in arrays)
        if size <= self.cache_bytes:
            while self._held + size > self.cache_bytes:
                self._held -= sum(a.nbytes for a in self._images.popitem(last=False)[1])
            self._images[i] = arrays
            self._held += size
        return arrays

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker_seed != self._epoch_seed.value:
            self._worker_seed = self._epoch_seed.value
            self.reseed(self._worker_seed * 1009 + info.id)
        before, after, label = self._pair(index // self.samples_per_pair)
        before, after, label = self._crop(before, after, label[None])
        if self.augment:
            before, after, label = self._augment(before, after, label)
        if self.identical and self.rng.random() < self.identical:
            before = after = (before, after)[int(self.rng.integers(0, 2))]
            label = np.zeros_like(label)
        return (torch.from_numpy(np.ascontiguousarray(before, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(after, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32)))

    def _crop(self, *arrays: np.ndarray) -> list[np.ndarray]:
        h, w = arrays[0].shape[-2:]
        pad_h, pad_w = max(0, self.crop - h), max(0, self.crop - w)
        if pad_h or pad_w:
            arrays = tuple(np.pad(a, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect") for a in arrays)
            h, w = arrays[0].shape[-2:]
        y = int(self.rng.integers(0, h - self.crop + 1))
        x = int(self.rng.integers(0, w - self.crop + 1))
        return [a[:, y:y + self.crop, x:x + self.crop] for a in arrays]

    def _augment(self, before: np.ndarray, after: np.ndarray, label: np.ndarray) -> list[np.ndarray]:
        k = int(self.rng.integers(0, 4))
        flip = bool(self.rng.integers(0, 2))
        out = []
        for a in (before, after, label):
            a = np.rot90(a, k, axes=(1, 2))
            out.append(a[:, :, ::-1] if flip else a)
        if self.rng.random() < 0.5:  # swapping dates keeps "changed" semantics symmetric
            out[0], out[1] = out[1], out[0]
        for i in (0, 1):  # brightness/contrast and per-band colour jitter, drawn per date
            gain = self.rng.uniform(0.85, 1.15) * self.rng.uniform(0.95, 1.05, size=(3, 1, 1))
            bias = self.rng.uniform(-0.05, 0.05)
            out[i] = np.clip(out[i] * gain + bias, 0.0, 1.0).astype(np.float32)
        return out


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a distinct crop/augmentation stream per worker (until the
    next :meth:`ChangeDataset.set_epoch`) and its share of the decoded-pair cache."""
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, ChangeDataset):
        info.dataset.reseed(int(torch.initial_seed() % 2 ** 32) + worker_id)
        info.dataset.cache_bytes //= info.num_workers
