"""``detect --dask``: the tile function mapped over a Dask LocalCluster of processes gives the
local run's pixels (same batches; one torch thread on both sides, as Dask workers use)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from distributed import LocalCluster

from samcd_engine_helpers import levir_pair, read
from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.engine import distributed
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions


def test_dask_path_equals_local_path(tiny_checkpoint, shared_data, tmp_path):
    before, after = levir_pair(shared_data, tmp_path / "in", srcwin=(100, 140, 330, 250))
    detector = ChangeDetector(tiny_checkpoint, "cpu")
    common = dict(overlap=32, batch_size=2, threshold=0.45)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = detector.detect(before, after, tmp_path / "local.tif",
                                DetectionOptions(probability_path=tmp_path / "local_p.tif", **common))
    finally:
        torch.set_num_threads(threads)
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        remote = detector.detect(before, after, tmp_path / "dask.tif",
                                 DetectionOptions(probability_path=tmp_path / "dask_p.tif",
                                                  dask_scheduler=cluster.scheduler_address, **common))
    mask = read(tmp_path / "dask.tif")[0]
    np.testing.assert_array_equal(mask, read(tmp_path / "local.tif")[0])
    np.testing.assert_array_equal(read(tmp_path / "dask_p.tif")[0], read(tmp_path / "local_p.tif")[0])
    assert (remote.changed_pixels, remote.valid_pixels) == (local.changed_pixels, local.valid_pixels)
    assert (mask != 255).all()


def test_unreachable_scheduler_is_a_clear_error(tiny_checkpoint, shared_data, tmp_path, monkeypatch):
    before, after = levir_pair(shared_data, tmp_path / "in", srcwin=(0, 0, 64, 64))
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", "1s")
    detector = ChangeDetector(tiny_checkpoint, "cpu")
    with pytest.raises(InputError, match="Dask scheduler at 'tcp://127.0.0.1:9'"):
        detector.detect(before, after, tmp_path / "c.tif", DetectionOptions(dask_scheduler="tcp://127.0.0.1:9"))
    assert not (tmp_path / "c.tif").exists()
