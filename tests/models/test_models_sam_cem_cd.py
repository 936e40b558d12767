import pytest
import torch

from sam_cd_plugin.models.encoders import build_encoder
from sam_cd_plugin.models.sam_cem_cd import SamCemCd


@pytest.fixture(scope="module")
def fastsam_s():
    torch.manual_seed(0)
    return build_encoder("fastsam-s")


def test_fastsam_s_pyramid(fastsam_s):
    feats = fastsam_s(torch.rand(1, 3, 256, 256))
    assert [f.shape[1] for f in feats] == fastsam_s.channels == [64, 128, 256, 512]
    assert [256 // f.shape[-1] for f in feats] == fastsam_s.strides == [4, 8, 16, 32]


def test_sam_cem_cd_forward_and_gradients(fastsam_s):
    model = SamCemCd(fastsam_s)
    before, after = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    logits = model(before, after)
    assert logits.shape == (2, 1, 128, 128)
    logits.mean().backward()
    assert model.head.weight.grad is not None
    assert model.encoder.layers[0].conv.weight.grad is not None


def test_frozen_encoder_has_no_trainable_parameters():
    enc = build_encoder("fastsam-s", freeze=True)
    assert not any(p.requires_grad for p in enc.parameters())
    enc = build_encoder("fastsam-s", freeze=True, trainable_last_stage=True)
    trainable = [p for p in enc.parameters() if p.requires_grad]
    assert trainable and len(trainable) < len(list(enc.parameters()))
