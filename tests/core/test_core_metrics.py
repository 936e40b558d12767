"""Confusion matrix metrics against hand-computed values, including the zero-division cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sam_cd_plugin.core.metrics import ConfusionMatrix

# 10 pixels: tp=3, fp=1, fn=2, tn=4
PRED = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
LABEL = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], dtype=np.uint8) * 255


def test_counts_and_metrics_by_hand():
    cm = ConfusionMatrix().update(PRED, LABEL)
    assert (cm.tp, cm.fp, cm.fn, cm.tn) == (3, 1, 2, 4)
    assert cm.precision == pytest.approx(3 / 4)
    assert cm.recall == pytest.approx(3 / 5)
    assert cm.f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert cm.iou == pytest.approx(3 / 6)
    assert cm.oa == pytest.approx(7 / 10)
    # po = 0.7, pe = 0.4*0.5 + 0.6*0.5 = 0.5 -> kappa = 0.2 / 0.5
    assert cm.kappa == pytest.approx(0.4)
    # no-change class: tp=4, fp=2 (missed changes), fn=1 (false alarms)
    assert cm.mf1 == pytest.approx((6 / 9 + 8 / 11) / 2)
    assert cm.miou == pytest.approx((3 / 6 + 4 / 7) / 2)
    d = cm.as_dict()
    assert d["tp"] == 3 and d["kappa"] == pytest.approx(0.4)
    json.dumps(d)


def test_valid_mask_excludes_pixels():
    valid = np.ones(10, dtype=bool)
    valid[[0, 3, 9]] = False  # drop one tp, the fp, one tn
    cm = ConfusionMatrix().update(PRED.reshape(2, 5), LABEL.reshape(2, 5), valid.reshape(2, 5))
    assert (cm.tp, cm.fp, cm.fn, cm.tn) == (2, 0, 2, 3)
    assert cm.precision == 1.0
    assert cm.recall == pytest.approx(0.5)


def test_add_equals_update_on_concatenation():
    rng = np.random.default_rng(1)
    p1, l1, p2, l2 = (rng.random((20, 30)) > 0.6 for _ in range(4))
    total = ConfusionMatrix().update(p1, l1) + ConfusionMatrix().update(p2, l2)
    both = ConfusionMatrix().update(np.concatenate([p1, p2]), np.concatenate([l1, l2]))
    assert total == both
    assert total.total == 1200
    acc = ConfusionMatrix()
    acc += ConfusionMatrix(1, 2, 3, 4)
    assert acc == ConfusionMatrix(1, 2, 3, 4)


def test_nothing_to_find_and_nothing_found():
    cm = ConfusionMatrix().update(np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8))
    assert (cm.tp, cm.fp, cm.fn, cm.tn) == (0, 0, 0, 16)
    for name in ("precision", "recall", "f1", "iou", "oa", "kappa", "mf1", "miou"):
        assert getattr(cm, name) == 1.0, name


def test_false_alarms_on_unchanged_label():
    cm = ConfusionMatrix(tp=0, fp=5, fn=0, tn=95)
    assert cm.precision == 0.0
    assert cm.recall == 0.0
    assert cm.f1 == 0.0 and cm.iou == 0.0
    assert cm.oa == pytest.approx(0.95)
    assert cm.kappa == pytest.approx(0.0)  # pe = 0.95 = po


def test_missed_changes_without_predictions():
    cm = ConfusionMatrix(tp=0, fp=0, fn=7, tn=3)
    assert cm.precision == 0.0
    assert cm.recall == 0.0
    assert cm.f1 == 0.0 and cm.iou == 0.0


def test_kappa_edge_cases():
    assert ConfusionMatrix(tp=10).kappa == 1.0  # everything changed and found: pe = po = 1
    assert ConfusionMatrix(tn=10).kappa == 1.0
    assert ConfusionMatrix(fp=10).kappa == 0.0  # pe = 0, po = 0
    assert ConfusionMatrix(fn=10).kappa == 0.0
    assert ConfusionMatrix(tp=5, tn=5).kappa == pytest.approx(1.0)
    assert ConfusionMatrix(fp=5, fn=5).kappa == pytest.approx(-1.0)


def test_empty_matrix_is_perfect_not_nan():
    cm = ConfusionMatrix()
    values = cm.as_dict()
    assert all(values[k] == 1.0 for k in ("precision", "recall", "f1", "iou", "oa", "kappa", "mf1", "miou"))


def test_large_counts_do_not_overflow():
    n = 3 * 10**10
    cm = ConfusionMatrix(tp=n, fp=n, fn=n, tn=n) + ConfusionMatrix(tp=n, fp=n, fn=n, tn=n)
    assert cm.total == 8 * n
    assert cm.f1 == pytest.approx(0.5) and cm.kappa == pytest.approx(0.0)


def test_uint8_update_counts_beyond_255():
    pred = np.ones((40, 40), np.uint8)
    cm = ConfusionMatrix().update(pred, pred)
    assert cm.tp == 1600 and isinstance(cm.tp, int)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        ConfusionMatrix().update(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError):
        ConfusionMatrix().update(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((2, 3), bool))
