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
