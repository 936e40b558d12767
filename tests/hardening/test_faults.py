"""Faults during a run: out-of-memory, a failing reader thread, a killed process.

* GPU out-of-memory is simulated by a forward that raises ``torch.cuda.OutOfMemoryError`` for
  batches above one tile, and once more at one tile: the detector halves the batch, then moves to
  the CPU with a warning, and the result equals an undisturbed run.
* An exception in the background reader surfaces once, as a clear ``InputError``, with the
  reader thread stopped and nothing left on disk.
* A CLI run killed with SIGKILL mid-write leaves only hidden ``.<name>.partial`` files (no file
  that looks finished), and the next run replaces them and leaves none.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal

from hardening_helpers import REPO_ROOT
from sam_cd_plugin.core.alignment import AlignedPair
from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

gdal.UseExceptions()

OPTIONS = dict(tile_size=64, overlap=16)  # 100x90 crop: 6 tiles


def _read(path: Path) -> np.ndarray:
    ds = gdal.Open(str(path))
    try:
        return ds.GetRasterBand(1).ReadAsArray()
    finally:
        ds = None


@pytest.fixture(scope="module")
def detector(tiny_checkpoint) -> ChangeDetector:
    return ChangeDetector(tiny_checkpoint, device="cpu")


def test_out_of_memory_halves_the_batch_then_falls_back_to_cpu(detector, real_crops, tmp_path, monkeypatch,
                                                              caplog):
    ref_mask, ref_prob = tmp_path / "ref.tif", tmp_path / "ref_prob.tif"
    detector.detect(real_crops["before"], real_crops["after"], ref_mask,  # undisturbed reference
                    DetectionOptions(batch_size=1, probability_path=ref_prob, **OPTIONS))
    forward = detector.model.forward
    seen: list[int] = []

    def tight_memory(before, after, *args, **kwargs):
        seen.append(before.shape[0])
        if before.shape[0] > 1 or seen.count(1) == 1:  # and the first single tile too
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(before, after, *args, **kwargs)

    monkeypatch.setattr(detector.model, "forward", tight_memory)
    out, prob = tmp_path / "change.tif", tmp_path / "prob.tif"
    with caplog.at_level(logging.WARNING):
        detector.detect(real_crops["before"], real_crops["after"], out,
                        DetectionOptions(batch_size=4, probability_path=prob, **OPTIONS))

    assert seen[:4] == [4, 2, 1, 1], f"batch sizes tried: {seen}"  # halved twice, 1 failed once
    assert set(seen[4:]) == {1}
    assert detector.device.type == "cpu"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "batch size 2" in messages and "continuing on the CPU" in messages
    assert np.array_equal(_read(out), _read(ref_mask))
    np.testing.assert_allclose(_read(prob), _read(ref_prob), atol=1e-5)


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sam-cd-tile-reader" and t.is_alive()]


@pytest.mark.parametrize("fail_at", [1, 3])
def test_reader_thread_failure_is_one_clear_error(detector, real_crops, tmp_path, monkeypatch, fail_at):
    original = AlignedPair.read
    calls = []

    def flaky_read(pair, *args, **kwargs):
        calls.append(threading.current_thread().name)
        if len(calls) == fail_at:
            raise RuntimeError("/mnt/share/before.tif: IReadBlock failed (network drive gone)")
        return original(pair, *args, **kwargs)

    monkeypatch.setattr(AlignedPair, "read", flaky_read)
    with pytest.raises(InputError) as info:
        detector.detect(real_crops["before"], real_crops["after"], tmp_path / "change.tif",
                        DetectionOptions(probability_path=tmp_path / "prob.tif", **OPTIONS))
    message = str(info.value)
    assert "network drive gone" in message and "no longer available" in message
    assert "sam-cd-tile-reader" in calls  # it really failed in the background thread
    deadline = time.monotonic() + 5
    while _reader_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _reader_threads(), "the reader thread outlived the failed run"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def large_pair(real_crops, tmp_path_factory) -> tuple[Path, Path]:
    """The real crops resampled to 1000x900 px, so a CLI run lasts seconds on a CPU."""
    folder = tmp_path_factory.mktemp("large")
    pair = []
    for name in ("before", "after"):
        out = folder / f"{name}.tif"
        gdal.Translate(str(out), str(real_crops[name]), width=1000, height=900)
        pair.append(out)
    return pair[0], pair[1]


def _cli(pair, out: Path, checkpoint: Path) -> list[str]:
    return [sys.executable, "-m", "sam_cd_plugin", "detect", str(pair[0]), str(pair[1]), str(out),
            "--checkpoint", str(checkpoint), "--device", "cpu", "--tile-size", "64", "--overlap", "16",
            "--probability", str(out.with_name("probability.tif"))]


def test_killed_run_leaves_nothing_that_looks_finished(large_pair, real_crops, tiny_checkpoint, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "change.tif"
    run = subprocess.Popen(_cli(large_pair, out, tiny_checkpoint), cwd=REPO_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out_dir.glob("*.partial")) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be killed; make the input larger"
        time.sleep(0.5)  # well into writing tiles
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == -signal.SIGKILL
    left = sorted(p.name for p in out_dir.iterdir())
    assert left, "nothing was written before the kill"
    assert all(name.startswith(".") and name.endswith(".partial") for name in left), left

    small = (real_crops["before"], real_crops["after"])  # same output names, quick
    done = subprocess.run(_cli(small, out, tiny_checkpoint), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out_dir.iterdir()) == ["change.tif", "probability.tif"]
    assert os.path.getsize(out) > 0 and set(np.unique(_read(out))) <= {0, 1, 255}
