"""Binary change-detection metrics from a confusion matrix.

Counts are exact Python integers (no overflow, whatever the number of pixels). Unless prefixed
with ``m`` the metrics are for the *change* class; ``mf1`` / ``miou`` average the change and
no-change classes (the no-change class swaps tp<->tn and fp<->fn).

Zero-division conventions (a metric is never NaN):

* ``precision`` = tp / (tp + fp); with no predicted change it is 1.0 if the label has no change
  either (tp + fn == 0), else 0.0.
* ``recall`` = tp / (tp + fn); with no change in the label it is 1.0 if nothing was predicted
  as change (fp == 0), else 0.0.
* ``f1`` = 2tp / (2tp + fp + fn) and ``iou`` = tp / (tp + fp + fn) are 1.0 when
  tp = fp = fn = 0 (nothing to find and nothing found).
* ``oa`` (overall accuracy) is 1.0 for an empty matrix.
* ``kappa`` = (po - pe) / (1 - pe); when pe == 1 it is 1.0 if po == 1 else 0.0
  (also 1.0 for an empty matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ConfusionMatrix"]


def _f1(tp: int, fp: int, fn: int) -> float:
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom


def _iou(tp: int, fp: int, fn: int) -> float:
    denom = tp + fp + fn
    return 1.0 if denom == 0 else tp / denom


@dataclass
class ConfusionMatrix:
    """Pixel counts of a binary change map against a label (change = positive class)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def update(self, pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None
               ) -> "ConfusionMatrix":
        """Add the pixels of ``pred`` vs ``label`` (nonzero = change) where ``valid`` is True.

        Arrays must have the same shape. Returns ``self``.
        """
        p = np.asarray(pred).astype(bool, copy=False)
        t = np.asarray(label).astype(bool, copy=False)
        if p.shape != t.shape:
            raise ValueError(f"prediction shape {p.shape} differs from label shape {t.shape}")
        if valid is not None:
            v = np.asarray(valid).astype(bool, copy=False)
            if v.shape != p.shape:
                raise ValueError(f"valid mask shape {v.shape} differs from prediction shape {p.shape}")
            n = int(np.count_nonzero(v))
            p = p & v
            t = t & v
        else:
            n = int(p.size)
        tp = int(np.count_nonzero(p & t))
        pos_pred = int(np.count_nonzero(p))
        pos_label = int(np.count_nonzero(t))
        self.tp += tp
        self.fp += pos_pred - tp
        self.fn += pos_label - tp
        self.tn += n - pos_pred - pos_label + tp
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return ConfusionMatrix(self.tp + other.tp, self.fp + other.fp,
                               self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        if self.tp + self.fp == 0:
            return 1.0 if self.tp + self.fn == 0 else 0.0
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        if self.tp + self.fn == 0:
            return 1.0 if self.fp == 0 else 0.0
        return self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _f1(self.tp, self.fp, self.fn)

    @property
    def iou(self) -> float:
        return _iou(self.tp, self.fp, self.fn)

    @property
    def oa(self) -> float:
        n = self.total
        return 1.0 if n == 0 else (self.tp + self.tn) / n

    @property
    def kappa(self) -> float:
        n = self.total
        if n == 0:
            return 1.0
        po = (self.tp + self.tn) / n
        pred_pos, label_pos = (self.tp + self.fp) / n, (self.tp + self.fn) / n
        pe = pred_pos * label_pos + (1.0 - pred_pos) * (1.0 - label_pos)
        if pe >= 1.0:
            return 1.0 if po >= 1.0 else 0.0
        return (po - pe) / (1.0 - pe)

    @property
    def mf1(self) -> float:
        return 0.5 * (_f1(self.tp, self.fp, self.fn) + _f1(self.tn, self.fn, self.fp))

    @property
    def miou(self) -> float:
        return 0.5 * (_iou(self.tp, self.fp, self.fn) + _iou(self.tn, self.fn, self.fp))

    def as_dict(self) -> dict[str, float | int]:
        """Counts and all metrics in one flat dictionary (JSON-serialisable)."""
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "precision": self.precision, "recall": self.recall, "f1": self.f1, "iou": self.iou,
            "oa": self.oa, "kappa": self.kappa, "mf1": self.mf1, "miou": self.miou,
        }
