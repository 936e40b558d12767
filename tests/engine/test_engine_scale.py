"""The detector on real imagery with the cases users bring: other CRS and resolution, partial or
no overlap, 16-bit, one band, nodata borders, tiny and odd sizes, crops; outputs (polygons,
uint8 probability, COG); throughput machinery (reader errors, OOM back-off); atomicity."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal, ogr

from samcd_engine_helpers import PIXEL, levir_pair, read
from sam_cd_plugin.core.alignment import AlignedPair
from sam_cd_plugin.core.errors import CancelledError, InputError, OutputError
from sam_cd_plugin.engine.batching import OomBackoff
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

gdal.UseExceptions()
ogr.UseExceptions()

FAST = dict(overlap=32)


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return ChangeDetector(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def small(shared_data, tmp_path_factory):
    """A 300×250 georeferenced 8-bit RGB pair (real LEVIR-CD imagery)."""
    return levir_pair(shared_data, tmp_path_factory.mktemp("small"), srcwin=(400, 300, 300, 250))


def run(detector, before, after, out, **options):
    return detector.detect(before, after, out, DetectionOptions(**{**FAST, **options}))


def grid(path):
    ds = gdal.Open(str(path))
    g = ds.GetGeoTransform(), ds.GetProjection(), ds.RasterXSize, ds.RasterYSize
    del ds
    return g


def test_other_crs_and_resolution_is_warped_onto_the_before_grid(detector, small, tmp_path):
    before, after = small
    after_3857 = tmp_path / "after_3857.tif"
    gdal.Warp(str(after_3857), str(after), dstSRS="EPSG:3857", xRes=0.9, yRes=0.9, resampleAlg="bilinear")
    out, prob = tmp_path / "change.tif", tmp_path / "prob.tif"
    result = run(detector, before, after_3857, out, probability_path=prob)
    assert grid(out) == grid(before)
    mask, nodata = read(out)
    p, _ = read(prob)
    assert nodata == 255 and set(np.unique(mask)) <= {0, 1, 255}
    valid = mask != 255
    assert valid.mean() > 0.95  # only a rim may fall outside the reprojected footprint
    assert np.array_equal(mask[valid] == 1, p[valid] >= 0.5)
    assert result.valid_pixels == int(valid.sum())


def test_partial_overlap_is_nodata_outside_the_after_raster(detector, shared_data, small, tmp_path):
    before, _ = small
    # the after image covers only columns 100.. and rows 50.. of the before raster
    _, after_part = levir_pair(shared_data, tmp_path, srcwin=(500, 350, 300, 250))
    out = tmp_path / "change.tif"
    run(detector, before, after_part, out)
    mask, _ = read(out)
    expected = np.zeros(mask.shape, bool)
    expected[50:, 100:] = True
    np.testing.assert_array_equal(mask != 255, expected)


def test_no_overlap_is_a_clear_error_naming_both_extents(detector, shared_data, small, tmp_path):
    before, _ = small
    far = tmp_path / "far.tif"
    gdal.Translate(str(far), str(small[1]), outputBounds=[600000, 5100000, 600150, 5099875])
    with pytest.raises(InputError, match="do not overlap") as info:
        run(detector, before, far, tmp_path / "change.tif")
    assert "before_" in str(info.value) and "far.tif" in str(info.value)
    assert "600000" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.tif"]


def test_16_bit_equals_its_float_copy(detector, shared_data, tmp_path):
    site = shared_data / "geotiff" / "oscd_norcia"
    b16, a16, b32, a32 = (tmp_path / f"{n}.tif" for n in ("b16", "a16", "b32", "a32"))
    for src, dst16, dst32 in ((site / "before.tif", b16, b32), (site / "after.tif", a16, a32)):
        gdal.Translate(str(dst16), str(src), srcWin=[100, 50, 200, 150])
        gdal.Translate(str(dst32), str(dst16), outputType=gdal.GDT_Float32)
    assert gdal.Open(str(b16)).GetRasterBand(1).DataType == gdal.GDT_UInt16
    r16 = run(detector, b16, a16, tmp_path / "c16.tif", batch_size=1)
    r32 = run(detector, b32, a32, tmp_path / "c32.tif", batch_size=1)
    m16, _ = read(tmp_path / "c16.tif")
    np.testing.assert_array_equal(m16, read(tmp_path / "c32.tif")[0])
    assert (m16 != 255).all() and r16.valid_pixels == m16.size
    # robust 16-bit statistics, not 0..255, are stored with the output
    assert r16.metadata["SAMCD_STATS_BEFORE"] == r32.metadata["SAMCD_STATS_BEFORE"]
    assert "high=(" in r16.metadata["SAMCD_STATS_BEFORE"]


def test_single_band_raster_is_replicated_to_three_channels(detector, small, tmp_path):
    before, after = small
    gray_b, gray_a = tmp_path / "gray_b.tif", tmp_path / "gray_a.tif"
    gdal.Translate(str(gray_b), str(before), bandList=[2], srcWin=[0, 0, 200, 150])
    gdal.Translate(str(gray_a), str(after), bandList=[2], srcWin=[0, 0, 200, 150])
    before, after = tmp_path / "rgb_b.tif", tmp_path / "rgb_a.tif"
    gdal.Translate(str(before), str(small[0]), srcWin=[0, 0, 200, 150])
    gdal.Translate(str(after), str(small[1]), srcWin=[0, 0, 200, 150])
    run(detector, gray_b, gray_a, tmp_path / "gray.tif", batch_size=1)
    run(detector, before, after, tmp_path / "rgb.tif", batch_size=1, bands_before=[2, 2, 2], bands_after=[2, 2, 2])
    gray = read(tmp_path / "gray.tif")[0]
    np.testing.assert_array_equal(gray, read(tmp_path / "rgb.tif")[0])
    assert (gray != 255).all()


def test_nodata_borders_become_output_nodata(detector, small, tmp_path):
    before, after = small
    masked = tmp_path / "after_nodata.tif"
    ds = gdal.Translate(str(masked), str(after))
    for i in (1, 2, 3):
        band = ds.GetRasterBand(i)
        arr = band.ReadAsArray()
        arr[:20], arr[:, -35:] = 0, 0
        band.WriteArray(arr)
        band.SetNoDataValue(0)
        del band
    del ds
    out = tmp_path / "change.tif"
    result = run(detector, before, masked, out)
    mask, _ = read(out)
    # nodata in any selected band of the after raster -> nodata in the output, nowhere else
    expected_invalid = np.any([read(masked, i)[0] == 0 for i in (1, 2, 3)], axis=0)
    assert expected_invalid[:20].all() and expected_invalid[:, -35:].all()
    np.testing.assert_array_equal(mask == 255, expected_invalid)
    assert result.valid_pixels == int((~expected_invalid).sum())


def test_raster_smaller_than_a_tile(detector, shared_data, tmp_path):
    before, after = levir_pair(shared_data, tmp_path, srcwin=(10, 20, 100, 60))
    out, prob = tmp_path / "change.tif", tmp_path / "prob.tif"
    result = run(detector, before, after, out, probability_path=prob)
    mask, _ = read(out)
    assert mask.shape == (60, 100) and (mask != 255).all()
    assert result.valid_pixels == 6000 and grid(out) == grid(before)


def test_odd_size_1001x777(detector, shared_data, tmp_path):
    before, after = levir_pair(shared_data, tmp_path, srcwin=(11, 200, 1001, 777))
    out, prob = tmp_path / "change.tif", tmp_path / "prob.tif"
    result = run(detector, before, after, out, probability_path=prob, batch_size=4)
    mask, _ = read(out)
    p, _ = read(prob)
    assert mask.shape == (777, 1001) and (mask != 255).all() and result.tiles > 1
    assert np.array_equal(mask == 1, p >= 0.5)


def test_crop_gives_the_same_pixels_as_the_full_raster(detector, shared_data, tmp_path):
    """Tiles are anchored on the map grid: a crop sees the full raster's windows (batch size 1:
    the model's float32 arithmetic depends on the batch by ~1e-7)."""
    full_b, full_a = levir_pair(shared_data, tmp_path / "full", srcwin=(0, 0, 520, 460))
    ox, oy, w, h = 137, 101, 330, 300
    crop_b, crop_a = levir_pair(shared_data, tmp_path / "crop", srcwin=(ox, oy, w, h))
    run(detector, full_b, full_a, tmp_path / "full.tif", batch_size=1, probability_path=tmp_path / "fp.tif")
    run(detector, crop_b, crop_a, tmp_path / "crop.tif", batch_size=1, probability_path=tmp_path / "cp.tif")
    m = 128  # every window covering a pixel this far inside the crop lies inside it
    full_p, crop_p = read(tmp_path / "fp.tif")[0], read(tmp_path / "cp.tif")[0]
    np.testing.assert_array_equal(crop_p[m:-m, m:-m], full_p[oy + m:oy + h - m, ox + m:ox + w - m])
    np.testing.assert_array_equal(read(tmp_path / "crop.tif")[0][m:-m, m:-m],
                                  read(tmp_path / "full.tif")[0][oy + m:oy + h - m, ox + m:ox + w - m])


def test_polygons_uint8_probability_and_cog(detector, small, tmp_path):
    before, after = small
    out, prob, gpkg = tmp_path / "change.tif", tmp_path / "prob.tif", tmp_path / "changes.gpkg"
    result = run(detector, before, after, out, probability_path=prob, probability_format="uint8",
                 polygons_path=gpkg, min_area=2.0, cog=True, threshold=0.3)
    for path in (out, prob):
        ds = gdal.Open(str(path))
        assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
        del ds
    mask, _ = read(out)
    pct, pct_nodata = read(prob)
    assert pct.dtype == np.uint8 and pct_nodata == 255 and pct.max() <= 100
    ds = gdal.Open(str(prob))
    assert ds.GetRasterBand(1).GetScale() == pytest.approx(0.01)
    del ds
    assert result.polygons_path == gpkg and result.polygon_count > 0
    src = ogr.Open(str(gpkg))
    layer = src.GetLayerByName("changes")
    feats = list(layer)
    assert len(feats) == result.polygon_count
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    assert {"area", "mean_probability", "method", "delta", "prompts", "before", "after"} <= set(names)
    for f in feats:
        assert f["area"] >= 2.0
        assert 0.3 - 0.006 <= f["mean_probability"] <= 1.0
        assert f["method"] == "sam-cem-cd" and f["delta"] == pytest.approx(0.3)
        assert f["before"] == before.name and f["after"] == after.name
    total = sum(f["area"] for f in feats)
    del feats, layer, src
    assert total <= (mask == 1).sum() * PIXEL * PIXEL + 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["change.tif", "changes.gpkg", "prob.tif"]


def test_polygons_without_probability_output_leave_no_scratch_file(detector, small, tmp_path):
    before, after = small
    result = run(detector, before, after, tmp_path / "c.tif", polygons_path=tmp_path / "p.gpkg", threshold=0.3)
    assert result.probability_path is None and result.polygon_count > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif", "p.gpkg"]


def test_cancel_mid_run_leaves_no_output_at_all(detector, small, tmp_path):
    before, after = small
    seen = []
    with pytest.raises(CancelledError):
        detector.detect(before, after, tmp_path / "c.tif",
                        DetectionOptions(batch_size=1, probability_path=tmp_path / "p.tif", cog=True,
                                         polygons_path=tmp_path / "p.gpkg", **FAST),
                        progress=seen.append, is_cancelled=lambda: len(seen) >= 3)
    assert 0 < seen[-1] < 100
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "sam-cd-tile-reader"]


def test_unwritable_output_folder_is_an_output_error(detector, small, tmp_path):
    before, after = small
    if os.geteuid() == 0:  # root writes anywhere a permission allows: use a pseudo file system
        folder = Path("/proc")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
    with pytest.raises(OutputError, match="Cannot write to folder"):
        run(detector, before, after, folder / "change.tif")
    with pytest.raises(OutputError, match="Cannot write to folder"):
        run(detector, before, after, tmp_path / "ok.tif", polygons_path=folder / "p.gpkg")
    assert not (tmp_path / "ok.tif").exists()


def test_a_reader_failure_surfaces_once_and_stops_the_reader(detector, small, tmp_path, monkeypatch):
    before, after = small
    calls = []
    original = AlignedPair.read

    def flaky(self, *window):
        calls.append(window)
        if len(calls) == 5:
            raise RuntimeError("simulated I/O error")
        return original(self, *window)

    monkeypatch.setattr(AlignedPair, "read", flaky)
    with pytest.raises(InputError, match="simulated I/O error") as info:
        run(detector, before, after, tmp_path / "c.tif", batch_size=2)
    assert "before_" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "sam-cd-tile-reader"]


def test_out_of_memory_halves_the_batch_and_gives_the_same_result(detector, small, tmp_path, monkeypatch, caplog):
    before, after = tmp_path / "b.tif", tmp_path / "a.tif"
    gdal.Translate(str(before), str(small[0]), srcWin=[0, 0, 200, 150])
    gdal.Translate(str(after), str(small[1]), srcWin=[0, 0, 200, 150])
    run(detector, before, after, tmp_path / "normal.tif", batch_size=1, probability_path=tmp_path / "np.tif")
    original = ChangeDetector.predict
    sizes = []

    def small_memory(self, b, a):
        sizes.append(len(b))
        if len(b) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, b, a)

    monkeypatch.setattr(ChangeDetector, "predict", small_memory)
    with caplog.at_level(logging.WARNING):
        run(detector, before, after, tmp_path / "oom.tif", batch_size=4, probability_path=tmp_path / "op.tif")
    assert sizes[:3] == [4, 2, 1] and max(sizes[3:]) == 1
    assert "batch size 2" in caplog.text and "batch size 1" in caplog.text
    np.testing.assert_array_equal(read(tmp_path / "oom.tif")[0], read(tmp_path / "normal.tif")[0])
    np.testing.assert_array_equal(read(tmp_path / "op.tif")[0], read(tmp_path / "np.tif")[0])


def test_out_of_memory_at_batch_one_falls_back_to_the_cpu(caplog):
    moved = []
    state = {"gpu": True}

    def predict(b, a):
        if state["gpu"]:
            raise torch.cuda.OutOfMemoryError("simulated")
        return b[:, 0] + a[:, 0]

    def to_cpu():
        moved.append(True)
        state["gpu"] = False

    x = np.random.default_rng(0).random((3, 3, 4, 4)).astype(np.float32)
    backoff = OomBackoff(2, to_cpu)
    with caplog.at_level(logging.WARNING):
        out = backoff.run(predict, x, x)
    assert moved == [True] and backoff.batch_size == 1 and backoff.fell_back
    assert "continuing on the CPU" in caplog.text
    np.testing.assert_array_equal(out, 2 * x[:, 0])
    state["gpu"] = True  # a second failure after the fallback is not swallowed
    with pytest.raises(torch.cuda.OutOfMemoryError):
        backoff.run(predict, x, x)


def test_cli_detect_writes_every_output(tiny_checkpoint, small, tmp_path, capsys):
    from sam_cd_plugin.cli import main

    before, after = small
    code = main(["detect", str(before), str(after), str(tmp_path / "c.tif"), "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu", "--overlap", "32", "--probability", str(tmp_path / "p.tif"),
                 "--probability-format", "uint8", "--polygons", str(tmp_path / "c.gpkg"), "--min-area", "1",
                 "--cog", "--threshold", "0.3", "--batch-size", "3", "--normalisation", "per-date"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "polygons:" in printed and "features" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.gpkg", "c.tif", "p.tif"]
    assert read(tmp_path / "p.tif")[0].dtype == np.uint8
    assert gdal.Open(str(tmp_path / "c.tif")).GetMetadataItem("SAMCD_NORMALISATION") == "per-date"
