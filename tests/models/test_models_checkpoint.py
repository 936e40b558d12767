import pickle

import pytest
import torch

from sam_cd_plugin.core.errors import CheckpointError
from sam_cd_plugin.models.checkpoint import load_checkpoint, save_checkpoint
from sam_cd_plugin.models.registry import build_model

META = {"method": "sam-cem-cd", "encoder": "fastsam-s", "delta": 0.4, "input_size": 128,
        "training": {"data": ["LEVIR-CD"]}, "metrics": {"train": {"f1": 0.9}}}


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path):
    torch.manual_seed(1)
    model = build_model(META).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, META)
    state, meta = load_checkpoint(path)
    assert meta == META
    restored = build_model(meta)
    restored.load_state_dict(state)
    restored.eval()
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x, y), restored(x, y)
    assert a.shape == (1, 1, 64, 64)
    assert torch.allclose(a, b, atol=5e-2)  # weights stored as fp16
    assert path.stat().st_size < 30 * 1024 ** 2
    assert not list(tmp_path.glob("*.partial"))


class _Evil:
    def __reduce__(self):
        return (exec, ("open('/tmp/samcd_pwned', 'w').write('x')",))


def test_checkpoint_with_code_payload_is_refused_before_running(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "sam-cd-checkpoint", "meta": "{}", "state_dict": {}, "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused for safety"):
        load_checkpoint(path)
    import os
    assert not os.path.exists("/tmp/samcd_pwned")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps({"a": 1})[:5]])
def test_corrupt_or_foreign_files_give_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_sam_cd_checkpoint(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a sam-cd checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def _format1(path, method, encoder="fastsam-s"):
    """A checkpoint as sam-cd's format 1 wrote it (the weights layout is the same)."""
    import json

    torch.manual_seed(0)
    meta = {"method": method, "encoder": encoder, "input_size": 64, "delta": 0.3}
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in build_model(meta).state_dict().items()}
    torch.save({"format": "sam-cd-checkpoint", "format_version": 1,
                "meta": json.dumps(meta), "state_dict": state}, path)
    return path


@pytest.mark.parametrize("method", ["sam2-cd", "sam-cd"])
def test_format1_checkpoints_of_changed_architectures_are_refused_with_advice(tmp_path, method):
    from sam_cd_plugin.models.checkpoint import upgrade_checkpoint

    old = _format1(tmp_path / "old.pt", method)
    with pytest.raises(CheckpointError, match="older sam-cd.*Retrain"):
        load_checkpoint(old)
    with pytest.raises(CheckpointError, match="older sam-cd"):
        upgrade_checkpoint(old, tmp_path / "new.pt")


def test_format1_sam_cem_cd_loads_and_converts(tmp_path):
    from sam_cd_plugin.models.checkpoint import FORMAT_VERSION, upgrade_checkpoint
    from sam_cd_plugin.paths import default_checkpoint

    old = _format1(tmp_path / "old.pt", "sam-cem-cd")
    state, meta = load_checkpoint(old)
    new = upgrade_checkpoint(old, tmp_path / "new.pt")
    assert torch.load(new, weights_only=True)["format_version"] == FORMAT_VERSION == 2
    state2, meta2 = load_checkpoint(new)
    assert meta2 == meta and all(torch.equal(state[k], state2[k]) for k in state)
    _, bundled = load_checkpoint(default_checkpoint())  # the shipped SAM-CEM-CD checkpoint
    assert bundled["method"] == "sam-cem-cd"
