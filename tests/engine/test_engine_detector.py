"""ChangeDetector on real georeferenced imagery: grid, values, probability, cancel, errors."""
from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from sam_cd_plugin.core.errors import CancelledError, CheckpointError, InputError, OutputError
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

gdal.UseExceptions()


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return ChangeDetector(tiny_checkpoint, device="cpu")


@pytest.fixture()
def norcia(shared_data):
    site = shared_data / "geotiff" / "oscd_norcia"
    return site / "before.tif", site / "after.tif"


def _grid(path):
    ds = gdal.Open(str(path))
    try:
        return ds.GetGeoTransform(), ds.GetProjection(), ds.RasterXSize, ds.RasterYSize
    finally:
        del ds


def test_detect_writes_mask_on_the_before_grid(detector, norcia, tmp_path):
    before, after = norcia
    out = tmp_path / "change.tif"
    prob = tmp_path / "prob.tif"
    seen = []
    result = detector.detect(before, after, out,
                             DetectionOptions(bands_before=[3, 2, 1], bands_after=[3, 2, 1],
                                              probability_path=prob),
                             progress=seen.append)
    assert _grid(out) == _grid(before)
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    mask = band.ReadAsArray()
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    assert set(np.unique(mask)) <= {0, 1, 255}
    assert ds.GetMetadataItem("SAMCD_METHOD") == "sam-cem-cd"
    # one stretch for both dates (uint16 Sentinel-2: percentiles), stored with the result
    assert ds.GetMetadataItem("SAMCD_NORMALISATION") == "joint"
    assert ds.GetMetadataItem("SAMCD_STATS_BEFORE") == ds.GetMetadataItem("SAMCD_STATS_AFTER")
    del band, ds
    assert result.changed_pixels == int((mask == 1).sum())
    assert result.valid_pixels == int((mask != 255).sum()) > 0
    p = gdal.Open(str(prob))
    probability = p.GetRasterBand(1).ReadAsArray()
    del p
    valid = mask != 255
    assert np.all((probability[valid] >= 0) & (probability[valid] <= 1))
    assert np.array_equal(probability[valid] >= 0.5, mask[valid] == 1)
    assert seen and seen[-1] == pytest.approx(100.0) and seen == sorted(seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["change.tif", "prob.tif"]


def test_cancel_mid_run_leaves_no_output(detector, norcia, tmp_path):
    before, after = norcia
    calls = []
    out = tmp_path / "change.tif"
    with pytest.raises(CancelledError):
        detector.detect(before, after, out, DetectionOptions(batch_size=1, probability_path=tmp_path / "p.tif"),
                        progress=calls.append, is_cancelled=lambda: bool(calls))
    assert calls  # it really started before being cancelled
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_give_clear_errors(detector, norcia, tmp_path):
    before, after = norcia
    with pytest.raises(InputError, match="missing.tif"):
        detector.detect(tmp_path / "missing.tif", after, tmp_path / "o.tif")
    with pytest.raises(InputError, match="[Tt]hreshold"):
        detector.detect(before, after, tmp_path / "o.tif", DetectionOptions(threshold=1.5))
    with pytest.raises(OutputError):
        detector.detect(before, after, tmp_path / "no" / "such" / "dir" / "o.tif")
    with pytest.raises(OutputError):
        detector.detect(before, after, before)
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ChangeDetector(tmp_path / "nope.pt")


def test_per_date_normalisation_stretches_each_date_on_its_own(detector, norcia, tmp_path):
    out = tmp_path / "change.tif"
    detector.detect(*norcia, out, DetectionOptions(bands_before=[3, 2, 1], bands_after=[3, 2, 1],
                                                   normalisation="per-date", tile_size=64, overlap=0))
    ds = gdal.Open(str(out))
    assert ds.GetMetadataItem("SAMCD_NORMALISATION") == "per-date"
    assert ds.GetMetadataItem("SAMCD_STATS_BEFORE") != ds.GetMetadataItem("SAMCD_STATS_AFTER")
    del ds
    with pytest.raises(InputError, match="joint, per-date"):
        detector.detect(*norcia, tmp_path / "x.tif", DetectionOptions(normalisation="global"))
