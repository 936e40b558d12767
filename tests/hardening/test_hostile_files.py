"""Hostile checkpoints and weights: refused before any code in them runs, with a clear message.

Extends tests/models/test_models_checkpoint.py and test_models_encoders.py (plain code payloads,
foreign and corrupt files) with: a shell-command payload through every loader the product uses
(engine, dock table metadata), truncation at several points, metadata that lies about the
architecture or holds absurd values, and tensors that claim more bytes than the file holds.
"""
from __future__ import annotations

import collections
import io
import json
import os
import pickle
import resource
import zipfile
from pathlib import Path

import pytest
import torch

from sam_cd_plugin.core.errors import CheckpointError, WeightsError
from sam_cd_plugin.engine import detector as detector_module
from sam_cd_plugin.engine.detector import ChangeDetector
from sam_cd_plugin.models.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, read_metadata
from sam_cd_plugin.models.encoders.weights import load_ultralytics_state_dict

GOOD_META = {"method": "sam-cem-cd", "encoder": "fastsam-s", "delta": 0.3, "input_size": 128}
HUGE_ELEMENTS = 4 * 1024 ** 3  # 8 GiB of fp16 claimed by a file of a few hundred bytes


class _ShellPayload:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _payload(meta, state=None, **extra) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "meta": meta if isinstance(meta, str) else json.dumps(meta),
            "state_dict": state if state is not None else {"w": torch.zeros(4, dtype=torch.float16)},
            **extra}


@pytest.fixture()
def no_model_built(monkeypatch):
    """Fails the test if the engine gets as far as building a model from the file."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built from a checkpoint that should have been refused")
    monkeypatch.setattr(detector_module, "build_model", refuse)


def _loaders(path: Path):
    """Every way the product opens a checkpoint: engine, CLI/training, dock table."""
    return (lambda: ChangeDetector(path, device="cpu"), lambda: load_checkpoint(path),
            lambda: read_metadata(path))


def test_shell_payload_never_runs(tmp_path, no_model_built):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(_payload(GOOD_META, extra=_ShellPayload(marker)), path)
    for load in _loaders(path):
        with pytest.raises(CheckpointError, match="refused for safety") as info:
            load()
        assert "system" in str(info.value)  # names what it would have run
    assert not marker.exists()


def test_payload_hidden_in_the_state_dict_never_runs(tmp_path, no_model_built):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_state.pt"
    torch.save(_payload(GOOD_META, state={"w": torch.zeros(2), "x": _ShellPayload(marker)}), path)
    with pytest.raises(CheckpointError, match="refused for safety"):
        ChangeDetector(path, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_checkpoint(tiny_checkpoint, tmp_path, keep, no_model_built):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="corrupt, truncated") as info:
        ChangeDetector(path, device="cpu")
    assert "cut.pt" in str(info.value)


def test_metadata_that_lies_about_the_architecture(tiny_checkpoint, tmp_path):
    """Weights of SAM-CEM-CD/FastSAM-s under metadata that says SAM2-CD."""
    state, meta = load_checkpoint(tiny_checkpoint)
    path = tmp_path / "liar.pt"
    torch.save(_payload({**meta, "method": "sam2-cd"}, state={k: v.half() for k, v in state.items()}), path)
    with pytest.raises(CheckpointError, match="does not match the sam2-cd / fastsam-s architecture") as info:
        ChangeDetector(path, device="cpu")
    assert "pick another checkpoint" in str(info.value)


@pytest.mark.parametrize(("meta", "says"), [
    ({**GOOD_META, "input_size": 10 ** 9}, "input size of 1000000000"),
    ({**GOOD_META, "input_size": 100}, "multiple of 32"),
    ({**GOOD_META, "input_size": "256"}, "input size of '256'"),
    ({**GOOD_META, "input_size": True}, "input size of True"),
    ({**GOOD_META, "delta": -0.3}, "δ = -0.3"),
    ({**GOOD_META, "delta": float("inf")}, "δ = inf"),
    ({**GOOD_META, "method": "rm -rf"}, "unknown method 'rm -rf'"),
    ({**GOOD_META, "encoder": "resnet-9000"}, "unknown encoder 'resnet-9000'"),
    ({**GOOD_META, "method": None}, "unknown method None"),
    ({"method": "sam-cem-cd"}, "lacks encoder, input_size"),
    (["sam-cem-cd", "fastsam-s"], "not an object"),
    ("just a string", "not an object"),
    (42, "not an object"),
])
def test_absurd_metadata_is_refused_before_building(tmp_path, meta, says, no_model_built):
    path = tmp_path / "absurd.pt"
    torch.save(_payload(json.dumps(meta)), path)
    for load in _loaders(path):
        with pytest.raises(CheckpointError) as info:
            load()
        assert says in str(info.value) and "absurd.pt" in str(info.value)


@pytest.mark.parametrize("text", ["{" * 100_000, "x" * 2_000_000, "not json"])
def test_unparseable_or_huge_metadata(tmp_path, text, no_model_built):
    path = tmp_path / "meta.pt"
    torch.save(_payload(text), path)
    with pytest.raises(CheckpointError, match="unreadable metadata"):
        ChangeDetector(path, device="cpu")


class _ClaimedStorage:
    """Stands for a storage in the pickle; its persistent id claims ``numel`` elements."""

    def __init__(self, numel: int) -> None:
        self.numel = numel


class _ClaimedTensor:
    def __init__(self, numel: int) -> None:
        self.storage = _ClaimedStorage(numel)

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, (self.storage.numel,), (1,), False,
                                                 collections.OrderedDict())


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _ClaimedStorage):
            return ("storage", torch.HalfStorage, "0", "cpu", obj.numel)
        return None


def _write_claiming_file(path: Path, payload: dict, record: bytes = b"\0" * 8,
                         compress: int = zipfile.ZIP_STORED) -> Path:
    """A torch zip archive (the format torch.save writes) whose ``data.pkl`` is ``payload``."""
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(payload)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", record, compress_type=compress)
        archive.writestr("archive/version", "3\n")
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_tiny_file_claiming_gigabytes_is_refused_before_allocation(tmp_path, no_model_built):
    path = _write_claiming_file(tmp_path / "claims.pt",
                                _payload(GOOD_META, state={"w": _ClaimedTensor(HUGE_ELEMENTS)}))
    assert path.stat().st_size < 4096
    before = _peak_rss_mb()
    for load in _loaders(path):
        with pytest.raises(CheckpointError, match="does not hold") as info:
            load()
        assert "claims.pt" in str(info.value)
    assert _peak_rss_mb() - before < 256, "memory was allocated for the claimed tensor"


def test_honest_handmade_archive_loads(tmp_path):
    """The same hand-made format with a claim the file can hold passes the inspection, so the
    refusal above is about the claim, not about the format."""
    path = _write_claiming_file(tmp_path / "honest.pt",
                                _payload(GOOD_META, state={"w": _ClaimedTensor(4)}))
    state, meta = load_checkpoint(path)
    assert state["w"].shape == (4,) and meta == GOOD_META


def test_compressed_member_claiming_gigabytes_is_refused(tmp_path, no_model_built):
    """A zip bomb: 64 MiB of zeros stored deflated (a few hundred KiB on disk)."""
    path = _write_claiming_file(tmp_path / "bomb.pt", _payload(GOOD_META, state={"w": _ClaimedTensor(4)}),
                                record=b"\0" * (64 * 1024 ** 2), compress=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1024 ** 2
    with pytest.raises(CheckpointError, match="compressed or larger than the file"):
        ChangeDetector(path, device="cpu")


def test_weights_file_claiming_gigabytes_is_refused(tmp_path):
    """The encoder weights loader faces the same crafted claim (an ultralytics-style dict)."""
    path = _write_claiming_file(tmp_path / "FastSAM-s.pt", {"model": {"w": _ClaimedTensor(HUGE_ELEMENTS)}})
    before = _peak_rss_mb()
    with pytest.raises(WeightsError) as info:
        load_ultralytics_state_dict(path)
    assert "FastSAM-s.pt" in str(info.value)
    assert _peak_rss_mb() - before < 256, "memory was allocated for the claimed tensor"


def test_weights_shell_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mobile_sam.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "x": _ShellPayload(marker)}, path)
    with pytest.raises(WeightsError, match="refused instead of executed"):
        load_ultralytics_state_dict(path)
    assert not marker.exists()
