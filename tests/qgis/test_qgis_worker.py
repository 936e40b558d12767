"""processing.run("sam_cd:detectchanges") with the engine in its worker process, as a user's QGIS
runs it once the engine is installed: same pixels as in-process, the model loaded once for a
batch, a killed worker becomes one clear error (QGIS lives on, nothing published), cancel leaves
nothing. The worker's Python is this test's own (it has torch, like an installed runtime)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import processing
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from sam_cd_plugin.engine import service
from samcd_qgis_helpers import ALGORITHM_ID, gdal_array

pytestmark = pytest.mark.usefixtures("sam_cd_provider")

FAST = {"DEVICE": "cpu", "OVERLAP": 32}


@pytest.fixture
def worker_engine(monkeypatch):
    """The worker transport for one test; the worker is stopped afterwards."""
    monkeypatch.setenv("SAM_CD_ENGINE", "worker")
    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)
    service.shutdown_engine()
    engine = service.get_engine()
    assert engine.transport == "worker"
    yield engine
    service.shutdown_engine()


def _params(pair, checkpoint: Path, out_dir: Path, **extra) -> dict:
    return {"BEFORE": str(pair.before), "AFTER": str(pair.after), "CHECKPOINT": str(checkpoint),
            "OUTPUT": str(out_dir / "change.tif"), "OUTPUT_PROBABILITY": str(out_dir / "prob.tif"),
            **FAST, **extra}


def _run_into(folder: Path, pair, checkpoint: Path, feedback=None) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    processing.run(ALGORITHM_ID, _params(pair, checkpoint, folder), feedback=feedback)
    return gdal_array(folder / "change.tif")[0], gdal_array(folder / "prob.tif")[0]


def test_worker_gives_the_in_process_pixels(norcia, tiny_checkpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SAM_CD_ENGINE", "inprocess")
    service.shutdown_engine()
    mask_here, prob_here = _run_into(tmp_path / "inprocess", norcia, tiny_checkpoint)
    monkeypatch.setenv("SAM_CD_ENGINE", "worker")
    monkeypatch.setenv("SAM_CD_ENGINE_PYTHON", sys.executable)
    # what a Dask LocalCluster leaves in os.environ (found when the whole suite ran): the worker
    # must still compute with this process's thread counts
    for var in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    service.shutdown_engine()
    try:
        mask_worker, prob_worker = _run_into(tmp_path / "worker", norcia, tiny_checkpoint)
        assert service.get_engine().stats()["pid"] != os.getpid()  # it really ran elsewhere
    finally:
        service.shutdown_engine()
    np.testing.assert_array_equal(mask_worker, mask_here)
    np.testing.assert_array_equal(prob_worker, prob_here)  # bit-identical probabilities too


def test_a_batch_of_ten_runs_loads_the_model_once(norcia, tiny_checkpoint, tmp_path, worker_engine) -> None:
    for i in range(10):
        _run_into(tmp_path / f"run{i}", norcia, tiny_checkpoint)
    stats = worker_engine.stats()  # the worker's own counter
    assert stats["model_loads"] == 1, stats
    assert stats["pid"] != os.getpid()


class KillWorkerMidRun(QgsProcessingFeedback):
    """SIGKILLs the engine worker (as the kernel's OOM killer would) at the first mid-run progress."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self.killed = False
        self.progressChanged.connect(self._kill)

    def _kill(self, value: float) -> None:
        if 0 < value < 100 and not self.killed:
            self.killed = True
            os.kill(self.pid, signal.SIGKILL)


def test_a_killed_worker_is_one_clear_error_and_the_next_run_works(norcia, tiny_checkpoint, tmp_path,
                                                                    worker_engine) -> None:
    pid = worker_engine.stats()["pid"]  # starts the worker
    out_dir = tmp_path / "killed"
    out_dir.mkdir()
    feedback = KillWorkerMidRun(pid)
    with pytest.raises(QgsProcessingException, match="engine stopped") as err:
        processing.run(ALGORITHM_ID, _params(norcia, tiny_checkpoint, out_dir),
                       feedback=feedback)
    assert feedback.killed
    assert "SIGKILL" in str(err.value) and "out of memory" in str(err.value)
    assert sorted(p.name for p in out_dir.iterdir()) == []  # no mask, probability or partial file
    # QGIS (this process) is alive, and the next run starts a fresh worker that succeeds
    mask, _ = _run_into(tmp_path / "after", norcia, tiny_checkpoint)
    assert set(np.unique(mask)) <= {0, 1, 255}
    assert worker_engine.stats()["pid"] != pid


class CancelMidRun(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.progressChanged.connect(lambda v: 0 < v < 100 and self.cancel())


def test_cancel_in_the_worker_leaves_nothing(norcia, tiny_checkpoint, tmp_path, worker_engine) -> None:
    out_dir = tmp_path / "cancelled"
    out_dir.mkdir()
    feedback = CancelMidRun()
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run(ALGORITHM_ID, _params(norcia, tiny_checkpoint, out_dir), feedback=feedback)
    assert feedback.isCanceled()
    deadline = time.monotonic() + 10  # the worker finishes its current batch, then cleans up
    while any(out_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(p.name for p in out_dir.iterdir()) == []
    assert worker_engine.stats()["model_loads"] == 1  # the same worker still answers
