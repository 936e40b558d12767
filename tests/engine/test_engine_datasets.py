"""Dataset layouts (flat, split, list), pair discovery errors, crops and aligned augmentation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.engine.datasets import (ChangeDataset, available_splits, dataset_layout,
                                           find_pairs)


def write_png(path: Path, array: np.ndarray) -> Path:
    """``array`` (H, W) or (C, H, W) uint8 as a PNG."""
    array = array[None] if array.ndim == 2 else array
    path.parent.mkdir(parents=True, exist_ok=True)
    mem = gdal.GetDriverByName("MEM").Create("", array.shape[2], array.shape[1], array.shape[0],
                                             gdal.GDT_Byte)
    for i, band in enumerate(array, start=1):
        mem.GetRasterBand(i).WriteArray(band)
    gdal.GetDriverByName("PNG").CreateCopy(str(path), mem)
    return path


def blobs(h: int, w: int, seed: int) -> np.ndarray:
    """A 0/1 uint8 map with a few random rectangles (asymmetric, so rotations show)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w), np.uint8)
    for _ in range(max(6, h * w // 1000)):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        out[y:y + rng.integers(4, 20), x:x + rng.integers(4, 30)] = 1
    return out


def make_pair(folder: Path, name: str, size=(64, 64), seed: int = 0, label_scale: int = 255,
              dirs=("A", "B", "label")) -> np.ndarray:
    """Before/after whose red band is the change label (so alignment can be checked) + label."""
    label = blobs(*size, seed)
    image = np.stack([label * 255, np.full(size, 128), np.full(size, 40)]).astype(np.uint8)
    write_png(folder / dirs[0] / f"{name}.png", image)
    write_png(folder / dirs[1] / f"{name}.png", image)
    write_png(folder / dirs[2] / f"{name}.png", (label * label_scale).astype(np.uint8))
    return label


def test_flat_layout_with_name_prefix_splits_and_globs(tmp_path):
    for i, name in enumerate(("train_1", "train_2", "val_1", "test_1")):
        make_pair(tmp_path, name, seed=i)
    assert dataset_layout(tmp_path) == "flat"
    assert available_splits(tmp_path) == ["train", "val", "test"]
    assert [p.name for p in find_pairs(tmp_path)] == ["test_1", "train_1", "train_2", "val_1"]
    assert [p.name for p in find_pairs(tmp_path, split="train")] == ["train_1", "train_2"]
    assert [p.name for p in find_pairs(tmp_path, ["*_2"], split="train")] == ["train_2"]
    with pytest.raises(InputError, match="No image pairs"):
        find_pairs(tmp_path, ["nothing*"])
    with pytest.raises(InputError, match="Unknown split"):
        find_pairs(tmp_path, split="validation")
    (tmp_path / "label" / "train_2.png").unlink()
    with pytest.raises(InputError, match="train_2.*label"):
        find_pairs(tmp_path)


def test_split_layout_needs_a_split_and_reads_it(tmp_path):
    for split, n in (("train", 2), ("val", 1), ("test", 3)):
        for i in range(n):
            make_pair(tmp_path / split, f"{i:04d}", seed=i)
    assert dataset_layout(tmp_path) == "split"
    assert available_splits(tmp_path) == ["train", "val", "test"]
    assert len(find_pairs(tmp_path, split="train")) == 2
    test = find_pairs(tmp_path, split="test")
    assert [p.name for p in test] == ["0000", "0001", "0002"]
    assert test[0].before == tmp_path / "test" / "A" / "0000.png"
    with pytest.raises(InputError, match="train, val, test.*--split"):
        find_pairs(tmp_path)


def test_split_layout_with_s2looking_folder_names_and_missing_split(tmp_path):
    for split in ("train", "test"):  # LEVIR+-CD has no val split
        make_pair(tmp_path / split, "1", dirs=("Image1", "Image2", "label"))
    assert available_splits(tmp_path) == ["train", "test"]
    assert find_pairs(tmp_path, split="train")[0].after.parent.name == "Image2"
    with pytest.raises(InputError, match="no 'val' split.*train, test"):
        find_pairs(tmp_path, split="val")


def test_list_layout_reads_the_named_files(tmp_path):
    for i in range(5):
        make_pair(tmp_path, f"tile{i}", seed=i)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("tile0.png\ntile3\n\n# comment\ntile1.png\n")
    (tmp_path / "list" / "test.txt").write_text("tile4.png\n")
    assert dataset_layout(tmp_path) == "list"
    assert available_splits(tmp_path) == ["train", "test"]
    assert [p.name for p in find_pairs(tmp_path, split="train")] == ["tile0", "tile3", "tile1"]
    assert [p.name for p in find_pairs(tmp_path, split="test")] == ["tile4"]
    with pytest.raises(InputError, match="--split"):
        find_pairs(tmp_path)
    with pytest.raises(InputError, match="val.txt does not exist"):
        find_pairs(tmp_path, split="val")
    (tmp_path / "list" / "test.txt").write_text("tile9\n")
    with pytest.raises(InputError, match="tile9"):
        find_pairs(tmp_path, split="test")


def test_not_a_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "A").mkdir()
    with pytest.raises(InputError, match="A/, B/ and label/"):
        find_pairs(tmp_path)


@pytest.mark.parametrize("label_scale", [255, 1])
def test_labels_0_255_and_0_1_read_as_0_1(tmp_path, label_scale):
    truth = make_pair(tmp_path, "p", size=(64, 64), label_scale=label_scale)
    dataset = ChangeDataset(find_pairs(tmp_path), crop=64, samples_per_pair=1, augment=False)
    before, after, label = dataset[0]
    assert set(np.unique(label.numpy())) == {0.0, 1.0}
    np.testing.assert_array_equal(label[0].numpy(), truth)
    assert before.shape == after.shape == (3, 64, 64) and before.dtype == label.dtype


def test_random_crops_of_a_large_image_with_aligned_augmentation(tmp_path):
    make_pair(tmp_path, "big", size=(320, 288), seed=3)
    dataset = ChangeDataset(find_pairs(tmp_path), crop=64, samples_per_pair=40, augment=True, seed=1,
                            identical=0.0)
    assert len(dataset) == 40
    seen, jittered = set(), 0
    for i in range(len(dataset)):
        before, after, label = (t.numpy() for t in dataset[i])
        assert before.shape == after.shape == (3, 64, 64) and label.shape == (1, 64, 64)
        # the red band *is* the label: any misaligned flip, rotation or crop would show here
        np.testing.assert_array_equal(before[0] > 0.5, label[0] > 0.5)
        np.testing.assert_array_equal(after[0] > 0.5, label[0] > 0.5)
        jittered += not np.allclose(before[1], after[1])  # same pixels, per-date colour jitter
        seen.add(label.tobytes())
    assert jittered == len(dataset)
    assert len(seen) > 30  # random windows/orientations, not one fixed crop


def test_a_share_of_samples_are_identical_pairs_labelled_no_change(shared_data):
    pairs = find_pairs(shared_data / "LEVIR-CD", ["train_36*"])
    dataset = ChangeDataset(pairs, crop=64, samples_per_pair=200, seed=0, identical=0.25)
    identical = 0
    for i in range(len(dataset)):
        before, after, label = (t.numpy() for t in dataset[i])
        if np.array_equal(before, after):
            identical += 1
            assert not label.any()  # the same image twice: nothing changed
    assert 0.15 * len(dataset) < identical < 0.35 * len(dataset)
    none = ChangeDataset(pairs, crop=64, samples_per_pair=50, seed=0, identical=0.0)
    assert not any(np.array_equal(*(t.numpy() for t in none[i][:2])) for i in range(len(none)))


def test_small_images_are_padded_to_the_crop(tmp_path):
    make_pair(tmp_path, "small", size=(40, 50))
    before, _, label = ChangeDataset(find_pairs(tmp_path), crop=64, augment=False)[0]
    assert before.shape == (3, 64, 64) and label.shape == (1, 64, 64)


def test_shared_levir_samples_by_split_and_1024_crops(shared_data):
    levir = shared_data / "LEVIR-CD"
    counts = {s: len(find_pairs(levir, split=s)) for s in available_splits(levir)}
    assert counts == {"train": 3, "val": 1, "test": 3}
    pairs = find_pairs(shared_data / "LEVIR-CD-1024")
    dataset = ChangeDataset(pairs[:2], crop=256, samples_per_pair=2, seed=0)
    labels = []
    for i in range(len(dataset)):
        before, after, label = dataset[i]
        assert before.shape == after.shape == (3, 256, 256) and label.shape == (1, 256, 256)
        assert 0.0 <= float(before.min()) and float(before.max()) <= 1.0
        labels.append(label)
    assert set(np.unique(np.concatenate([lb.numpy().ravel() for lb in labels]))) <= {0.0, 1.0}
    whu = find_pairs(shared_data / "WHU-CD")
    assert len(whu) == 2 and ChangeDataset(whu, crop=256, samples_per_pair=1)[0][0].shape == (3, 256, 256)


def test_decoded_pairs_are_cached_up_to_a_byte_bound_and_files_opened_once(tmp_path, monkeypatch):
    import sam_cd_plugin.core.alignment as alignment  # the pair is read as the detector reads it

    for i in range(3):
        make_pair(tmp_path, f"p{i}", seed=i)
    opened = []
    real_open = alignment.open_raster
    monkeypatch.setattr(alignment, "open_raster", lambda path: opened.append(path) or real_open(path))
    pair_bytes = 2 * 3 * 64 * 64 * 4 + 64 * 64 * 4  # before, after float32 + label float32
    ds = ChangeDataset(find_pairs(tmp_path), crop=32, samples_per_pair=2, augment=False)
    ds.cache_bytes = 2 * pair_bytes  # room for two pairs: the least recently used one goes
    for index in (0, 1, 2, 3, 0, 4, 5):  # pairs 0, 0, 1, 1, 0, 2, 2
        ds[index]
    assert list(ds._images) == [0, 2]
    assert len(opened) == 3 * 2  # before and after of each pair decoded once, each file opened once
    ds[2]  # pair 1 was dropped: read again
    assert len(opened) == 4 * 2 and list(ds._images) == [2, 1]


def test_persistent_workers_draw_reproducible_per_epoch_crops(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from sam_cd_plugin.engine.datasets import seed_worker

    for i in range(2):
        make_pair(tmp_path, f"p{i}", size=(96, 96), seed=i)

    def epochs(seeds):
        ds = ChangeDataset(find_pairs(tmp_path), crop=32, samples_per_pair=4)
        loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=2, persistent_workers=True,
                            worker_init_fn=seed_worker)
        out = []
        for seed in seeds:
            ds.set_epoch(seed)
            out.append(torch.cat([b for b, _, _ in loader]))
        return out

    first, second = epochs([11, 12])
    again = epochs([12])[0]
    assert torch.equal(second, again)  # epoch 12 alone (a resumed run) draws what it drew after 11
    assert not torch.equal(first, second)
