"""Feeding the model: several reader threads give the same pixels as one, in order; raw 8/16-bit
tiles normalised by torch equal the numpy normalisation; cancel and reader errors with readers
in flight leave nothing behind; windows outside the pair's overlap are never read."""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from osgeo import gdal

from samcd_engine_helpers import levir_pair, read
from sam_cd_plugin.core.alignment import AlignedPair, PairReader
from sam_cd_plugin.core.errors import CancelledError, InputError
from sam_cd_plugin.core.normalisation import BandStats, normalise
from sam_cd_plugin.core.tiling import Tile
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions
from sam_cd_plugin.engine.feed import DeviceFeed, normalise_tensor
from sam_cd_plugin.engine.tile_reader import BackgroundReader, read_batch

gdal.UseExceptions()

FAST = dict(overlap=32, batch_size=2)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sam-cd-tile-reader"]


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return ChangeDetector(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def pairs(shared_data, tmp_path_factory):
    """8-bit (LEVIR-CD, UTM) and 16-bit (OSCD Norcia, EPSG:4326) pairs, each on the same grid
    and with the after raster on another CRS and resolution (warped)."""
    folder = tmp_path_factory.mktemp("feed")
    b8, a8 = levir_pair(shared_data, folder, srcwin=(400, 300, 260, 200))
    a8w = folder / "a8_3857.tif"
    gdal.Warp(str(a8w), str(a8), dstSRS="EPSG:3857", xRes=0.9, yRes=0.9, resampleAlg="bilinear")
    site = shared_data / "geotiff" / "oscd_norcia"
    b16, a16, a16w = folder / "b16.tif", folder / "a16.tif", folder / "a16_utm.tif"
    gdal.Translate(str(b16), str(site / "before.tif"), srcWin=[60, 20, 260, 200])
    gdal.Translate(str(a16), str(site / "after.tif"), srcWin=[60, 20, 260, 200])
    gdal.Warp(str(a16w), str(a16), dstSRS="EPSG:32633", xRes=13.0, yRes=13.0, resampleAlg="bilinear")
    return {"8-bit": (b8, a8), "8-bit warped": (b8, a8w), "16-bit": (b16, a16),
            "16-bit warped": (b16, a16w)}


@pytest.mark.parametrize("kind", ["8-bit", "8-bit warped", "16-bit", "16-bit warped"])
def test_several_readers_and_raw_tiles_give_the_pixels_of_one_reader(detector, pairs, kind, tmp_path):
    before, after = pairs[kind]
    with AlignedPair(before, after) as pair:
        assert pair.warped == kind.endswith("warped")
        assert pair.raw_dtypes == ((np.dtype(np.uint8),) * 2 if kind.startswith("8") else
                                   (np.dtype(np.uint16),) * 2)
    outputs = {}
    for readers, raw in ((1, False), (4, False), (3, True)):
        detector.raw_feed = raw
        try:
            name = f"r{readers}{raw}"
            detector.detect(before, after, tmp_path / f"{name}.tif", DetectionOptions(
                readers=readers, probability_path=tmp_path / f"{name}_p.tif", **FAST))
        finally:
            detector.raw_feed = None
        outputs[name] = read(tmp_path / f"{name}.tif")[0], read(tmp_path / f"{name}_p.tif")[0]
    (mask, prob), *others = outputs.values()
    assert (mask != 255).any() and np.unique(prob).size > 100
    for other_mask, other_prob in others:
        np.testing.assert_array_equal(other_mask, mask)
        np.testing.assert_array_equal(other_prob, prob)
    assert not reader_threads()


def test_readers_deliver_batches_in_order_whatever_their_speed():
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.01) for _ in range(40)]
    opened = []

    class Handle:
        def __init__(self):
            opened.append(self)
            self.closed = False

        def close(self):
            self.closed = True

    def read(handle, batch):
        assert isinstance(handle, Handle)
        time.sleep(delays[batch[0]])
        return batch[0]

    with BackgroundReader(read, [[i] for i in range(40)], depth=2, readers=5,
                          open_handle=Handle) as reader:
        assert list(reader) == list(range(40))
    assert len(opened) == 5 and all(h.closed for h in opened)
    assert not reader_threads()


def test_cancel_with_readers_in_flight_leaves_nothing(detector, pairs, tmp_path):
    before, after = pairs["8-bit warped"]
    seen = []
    with pytest.raises(CancelledError):
        detector.detect(before, after, tmp_path / "c.tif",
                        DetectionOptions(readers=4, probability_path=tmp_path / "p.tif",
                                         polygons_path=tmp_path / "p.gpkg", overlap=32, batch_size=1),
                        progress=seen.append, is_cancelled=lambda: len(seen) >= 2)
    assert 0 < seen[-1] < 100
    assert list(tmp_path.iterdir()) == []
    assert not reader_threads()


def test_a_failing_reader_thread_surfaces_as_one_input_error(detector, pairs, tmp_path, monkeypatch):
    before, after = pairs["8-bit"]
    calls = []
    original = PairReader.read

    def flaky(self, *window, **kw):
        calls.append(window)
        if len(calls) == 5:
            raise RuntimeError("simulated I/O error")
        return original(self, *window, **kw)

    monkeypatch.setattr(PairReader, "read", flaky)
    with pytest.raises(InputError, match="simulated I/O error") as info:
        detector.detect(before, after, tmp_path / "c.tif", DetectionOptions(readers=3, **FAST))
    assert "before_" in str(info.value) and "failed" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert not reader_threads()


def test_windows_outside_the_overlap_are_not_read(shared_data, tmp_path, monkeypatch):
    before, _ = levir_pair(shared_data, tmp_path / "b", srcwin=(400, 300, 300, 250))
    _, after = levir_pair(shared_data, tmp_path / "a", srcwin=(560, 440, 300, 250))
    tiles = [Tile(x, y, 64, x, y, x + 64, y + 64) for y in range(0, 250, 64) for x in range(0, 300, 64)]
    with AlignedPair(before, after) as pair:
        assert pair.overlap_window == (160, 140, 300, 250)
        full = read_batch(pair, tiles)
        read_windows = []
        original = PairReader.read

        def counting(self, *window, **kw):
            read_windows.append(window)
            return original(self, *window, **kw)

        monkeypatch.setattr(PairReader, "read", counting)
        with pair.open_reader() as handle:
            batch = read_batch(pair, tiles, handle)
    assert read_windows == [(t.x, t.y, 64, 64) for t in tiles if t.x + 64 > 160 and t.y + 64 > 140]
    np.testing.assert_array_equal(batch.valid, full.valid)
    assert batch.work == full.work and np.array_equal(batch.before, full.before)


@pytest.mark.parametrize("dtype,high", [(np.uint8, 255), (np.uint16, 65535)])
def test_device_normalisation_equals_the_cpu_normalisation(dtype, high):
    """The same torch code runs on CUDA; here on the CPU device against core.normalise."""
    rng = np.random.default_rng(1)
    raw = rng.integers(0, high + 1, size=(5, 3, 32, 32)).astype(dtype)
    raw[0, :, :2] = 0
    raw[1, :, :2] = high
    stats = BandStats((0.0, 17.25, 300.5), (255.0, 1500.75, 300.5)) if dtype == np.uint16 \
        else BandStats((0.0,) * 3, (255.0,) * 3)
    from sam_cd_plugin.core.normalisation import normalise_coefficients

    low, scale = normalise_coefficients(stats)
    feed = DeviceFeed(__import__("torch").device("cpu"))
    got = normalise_tensor(feed.upload("x", raw), low, scale, unsigned16=dtype == np.uint16).numpy()
    want = np.stack([normalise(tile, stats) for tile in raw])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got, want)  # in fact bit-identical: same float32 operations


def test_block_cache_is_set_for_a_run_and_restored_after_overlapping_runs():
    from sam_cd_plugin.engine.tile_reader import gdal_block_cache

    original = gdal.GetCacheMax()
    with gdal_block_cache(40 << 20):
        assert gdal.GetCacheMax() == 40 << 20
        with gdal_block_cache(60 << 20):
            assert gdal.GetCacheMax() == 60 << 20
        assert gdal.GetCacheMax() == 40 << 20
    assert gdal.GetCacheMax() == original
