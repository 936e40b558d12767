import math

import pytest
import torch

from sam_cd_plugin.models.cem_loss import cem_loss


def _bce(logit: float, y: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_cem_loss_matches_hand_computed_case():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    rand = torch.tensor([[[[0.1, 0.2], [0.9, 0.4]]]])
    # δ = 0.3: changed pixel kept; unchanged draws 0.2 (≤ δ) dropped, 0.9 and 0.4 kept.
    expected = (_bce(2.0, 1) + _bce(0.5, 0) + _bce(-3.0, 0)) / 3
    got = cem_loss(logits, target, delta=0.3, rand=rand)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_cem_loss_delta_zero_is_plain_bce_and_valid_mask_excludes():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert cem_loss(logits, target, delta=0.0).item() == pytest.approx(plain.item(), rel=1e-6)
    valid = torch.tensor([[[[True, False], [False, False]]]])
    assert cem_loss(logits, target, 0.0, valid=valid).item() == pytest.approx(_bce(2.0, 1), rel=1e-6)


def test_cem_drops_about_delta_of_negatives_and_keeps_all_positives():
    """Losses that tell the two classes apart, so the loss reveals how many of each were kept."""
    target = torch.zeros(1, 1, 200, 200)
    target[..., :20, :] = 1
    positives, negatives = int(target.sum()), int((target == 0).sum())
    small, log2 = -30.0, math.log(2)  # BCE ≈ 1e-13 and exactly log 2

    def loss(logit_pos: float, logit_neg: float) -> float:
        logits = torch.where(target > 0.5, logit_pos, logit_neg)
        return cem_loss(logits, target, delta=0.5, generator=torch.Generator().manual_seed(0)).item()

    # only negatives cost (positives predicted right): loss = kept_neg · log 2 / (positives + kept_neg)
    only_neg = loss(-small, 0.0)
    kept_neg = positives * only_neg / (log2 - only_neg)
    assert kept_neg / negatives == pytest.approx(0.5, abs=0.02)  # about δ of them dropped
    # only positives cost (same draws): loss = kept_pos · log 2 / (kept_pos + kept_neg)
    only_pos = loss(0.0, small)
    kept_pos = kept_neg * only_pos / (log2 - only_pos)
    assert kept_pos == pytest.approx(positives, rel=1e-3)  # every changed pixel kept
    with pytest.raises(ValueError):
        cem_loss(torch.zeros_like(target), target, delta=1.0)
