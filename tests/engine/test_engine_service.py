"""The engine service without QGIS: its import cost, protocol, request round trip, and the
review fixes that live in the engine (outputs as a set, uint8 percent vs mask, overlap, errors,
the bundled checkpoint reference, the allocator setting, CLI progress)."""
from __future__ import annotations

import io
import os
import fcntl
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sam_cd_plugin.core.errors import CheckpointError, EngineError, InputError, OutputError
from sam_cd_plugin.engine import memory
from sam_cd_plugin.engine.options import DetectionOptions
from sam_cd_plugin.engine.protocol import PROTOCOL_VERSION, Progress, ProtocolError, Request, decode, encode
from sam_cd_plugin.engine.service import DetectRequest, InProcessEngine
from sam_cd_plugin.paths import BUNDLED, DEFAULT_CHECKPOINT_NAME, default_checkpoint, resolve_checkpoint

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"
FAST = dict(bands_before=[3, 2, 1], bands_after=[3, 2, 1], overlap=32)


@pytest.fixture(scope="module")
def engine():
    engine = InProcessEngine()
    yield engine
    engine.close()


def demo_request(checkpoint: Path, out: Path, **options) -> DetectRequest:
    return DetectRequest(str(DEMO / "before.tif"), str(DEMO / "after.tif"), str(out), checkpoint=str(checkpoint),
                         device="cpu", options=DetectionOptions(**{**FAST, **options}))


def band(path: Path) -> np.ndarray:
    ds = gdal.Open(str(path))
    array = ds.GetRasterBand(1).ReadAsArray()
    del ds
    return array


def test_importing_the_service_and_client_does_not_import_torch():
    code = ("import sys; import sam_cd_plugin.engine.service, sam_cd_plugin.engine.client; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_protocol_lines_round_trip_and_another_version_is_a_clear_error():
    request = demo_request(Path("model.pt"), Path("/tmp/c.tif"), probability_path=Path("/tmp/p.tif"))
    line = encode(Request("1", "detect", {"request": request.to_dict()}))
    message = decode(line)
    assert DetectRequest.from_dict(message.params["request"]) == request
    assert decode(encode(Progress("1", 42.0))) == Progress("1", 42.0)
    with pytest.raises(ProtocolError, match="protocol version 99.*another sam-cd version"):
        decode(line.replace(f'"v": {PROTOCOL_VERSION}', '"v": 99'))
    with pytest.raises(ProtocolError, match="not part of its protocol"):
        decode("Downloading weights... 10%")


def test_overlap_of_a_whole_tile_is_refused_not_clamped(engine, tiny_checkpoint, tmp_path):
    with pytest.raises(InputError, match="smaller than the tile size 128"):
        engine.detect(demo_request(tiny_checkpoint, tmp_path / "c.tif", overlap=128))
    with pytest.raises(InputError, match="smaller than the tile size 64"):
        DetectionOptions(tile_size=64, overlap=64).validate()
    assert not list(tmp_path.iterdir())


def test_uint8_percent_agrees_with_the_mask_just_below_the_threshold(engine, tiny_checkpoint, tmp_path):
    engine.detect(demo_request(tiny_checkpoint, tmp_path / "f.tif", probability_path=tmp_path / "fp.tif"))
    prob = band(tmp_path / "fp.tif")
    frac = np.mod(prob * 100.0, 1.0)
    # p whose percent rounds up: with the threshold at that percent, p is no change but rounds to it
    candidates = prob[(prob >= 0) & (frac >= 0.5) & (frac <= 0.9)]
    assert candidates.size, "the random model gives no probability to test with"
    threshold = float(np.ceil(candidates[0] * 100.0)) / 100.0
    engine.detect(demo_request(tiny_checkpoint, tmp_path / "m.tif", probability_path=tmp_path / "p.tif",
                               probability_format="uint8", threshold=threshold))
    mask, stored = band(tmp_path / "m.tif"), band(tmp_path / "p.tif")
    valid = mask != 255
    least = int(np.ceil(threshold * 100))
    assert np.count_nonzero(valid & (band(tmp_path / "fp.tif") == candidates[0]))
    assert np.array_equal(stored[valid] >= least, mask[valid] == 1)


def test_outputs_are_published_all_or_none(engine, tiny_checkpoint, tmp_path):
    """The mask's rename fails (its name became a folder during the run): the probability raster
    must not be published either, and an older probability file stays as it was."""
    out, prob = tmp_path / "c.tif", tmp_path / "p.tif"
    prob.write_bytes(b"older result")

    def block_the_mask(_percent: float) -> None:
        out.mkdir(exist_ok=True)
        (out / "keep").write_text("x")

    with pytest.raises(OutputError, match="none of them was written"):
        engine.detect(demo_request(tiny_checkpoint, out, probability_path=prob), progress=block_the_mask)
    assert prob.read_bytes() == b"older result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif", "p.tif"]  # no temporary files


def test_failures_become_one_clear_engine_error(engine, tiny_checkpoint, tmp_path):
    from sam_cd_plugin.engine.failures import user_error

    cuda = user_error(RuntimeError("CUDA error: an illegal memory access was encountered"), "Change detection")
    assert isinstance(cuda, EngineError) and "device 'cpu'" in str(cuda)
    disk = user_error(OSError(28, "No space left on device", "/data/c.tif"), "Change detection")
    assert isinstance(disk, EngineError) and "/data/c.tif" in str(disk) and "disk" in str(disk)
    # a real torch RuntimeError: a checkpoint whose declared input size the network cannot take
    broken = _odd_size_checkpoint(tmp_path / "odd_size.pt")
    with pytest.raises((EngineError, InputError, CheckpointError)) as info:
        engine.detect(demo_request(broken, tmp_path / "c.tif"))
    assert "Traceback" not in str(info.value) and str(info.value)
    assert not (tmp_path / "c.tif").exists()


def _odd_size_checkpoint(path: Path) -> Path:
    import torch

    from sam_cd_plugin.models.checkpoint import save_checkpoint
    from sam_cd_plugin.models.registry import build_model

    torch.manual_seed(0)
    meta = {"method": "sam-cem-cd", "encoder": "fastsam-s", "delta": 0.3, "input_size": 100,
            "training": {"data": [], "note": "input size the network cannot take, for tests"}, "metrics": {}}
    return save_checkpoint(path, build_model(meta).eval(), meta)


def test_bundled_checkpoint_is_a_reference_resolved_now(tmp_path):
    assert resolve_checkpoint(BUNDLED) == resolve_checkpoint("") == resolve_checkpoint(None) == default_checkpoint()
    moved = tmp_path / "old_profile" / "sam_cd_plugin" / "resources" / "checkpoints" / DEFAULT_CHECKPOINT_NAME
    assert resolve_checkpoint(str(moved)) == default_checkpoint()  # saved before the plugin moved
    own = tmp_path / "mine.pt"
    assert resolve_checkpoint(str(own)) == own


def wide_strip_request(checkpoint: Path, folder: Path) -> DetectRequest:
    """A pair as wide as :data:`memory.WIDE_RASTER_PX` (and 64 rows: cheap), from the demo pair."""
    paths = []
    for name in ("before", "after"):
        path = folder / f"wide_{name}.tif"
        gdal.Translate(str(path), str(DEMO / f"{name}.tif"), width=memory.WIDE_RASTER_PX, height=64)
        paths.append(str(path))
    return DetectRequest(*paths, str(folder / "wide_change.tif"), checkpoint=str(checkpoint), device="cpu",
                         options=DetectionOptions(**FAST))


def test_in_process_detection_leaves_the_allocator_alone(engine, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "_pinned", False)
    engine.detect(wide_strip_request(tiny_checkpoint, tmp_path))
    assert memory._pinned is False  # process-wide tuning is the worker's business


def test_the_worker_pins_the_allocator_for_wide_rasters_only(tiny_checkpoint, tmp_path):
    from sam_cd_plugin.engine.client import WorkerEngine

    worker = WorkerEngine(Path(sys.executable))
    try:
        worker.detect(demo_request(tiny_checkpoint, tmp_path / "small.tif"))
        assert worker.stats()["allocator_pinned"] is False  # small runs keep glibc's fast path
        worker.detect(wide_strip_request(tiny_checkpoint, tmp_path))
        assert worker.stats()["allocator_pinned"] is True  # peak memory flat in the width
    finally:
        worker.close()


def test_cli_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    from sam_cd_plugin.cli.progress import progress_bar

    plain = io.StringIO()
    with progress_bar("detect", plain) as progress:
        for p in (3.0, 12.0, 55.0, 100.0):
            progress(p)
    assert plain.getvalue().splitlines() == ["detect: 0 %", "detect: 10 %", "detect: 50 %", "detect: 100 %"]

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    with os.fdopen(slave, "w") as terminal:
        with progress_bar("detect", terminal) as progress:
            progress(50.0)
            progress(100.0)
    chunks = []
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunks.append(os.read(master, 65536))
        except OSError:  # the terminal's other end is closed: everything was read
            break
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert "detect: 100%|" in shown and "█" in shown
