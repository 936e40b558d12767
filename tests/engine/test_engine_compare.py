"""``evaluate --split`` and ``compare``: the papers' metrics from one confusion matrix, side by side."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sam_cd_plugin.cli import main
from sam_cd_plugin.core.metrics import ConfusionMatrix
from sam_cd_plugin.engine.evaluation import METRIC_TITLES, format_table
from sam_cd_plugin.models.checkpoint import save_checkpoint
from sam_cd_plugin.models.registry import build_model

METRICS = ("precision", "recall", "f1", "iou", "oa", "kappa", "mf1", "miou")


@pytest.fixture()
def test_split(shared_data, tmp_path) -> Path:
    """Two LEVIR-CD test tiles in the ``test/{A,B,label}`` layout."""
    root = tmp_path / "data"
    for sub in ("A", "B", "label"):
        (root / "test" / sub).mkdir(parents=True)
        for name in ("test_55_0256_0000", "test_77_0512_0256"):
            shutil.copy(shared_data / "LEVIR-CD" / sub / f"{name}.png", root / "test" / sub)
    return root


@pytest.fixture()
def second_checkpoint(tmp_path) -> Path:
    torch.manual_seed(1)
    meta = {"method": "sam-cd", "encoder": "fastsam-s", "delta": 0.5, "input_size": 128}
    return save_checkpoint(tmp_path / "ckpts" / "other.pt", build_model(meta).eval(), meta)


def test_evaluate_split_json_is_one_matrix_over_all_pixels(test_split, tiny_checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(test_split),
                 "--split", "test", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and len(report["pairs"]) == 2
    total = report["total"]
    assert set(METRICS) <= set(total)
    summed = sum((ConfusionMatrix(*(p[k] for k in ("tp", "fp", "fn", "tn")))
                  for p in report["pairs"].values()), ConfusionMatrix())
    assert [summed.tp, summed.fp, summed.fn, summed.tn] == [total[k] for k in ("tp", "fp", "fn", "tn")]
    assert summed.total == 2 * 256 * 256
    for key in METRICS:  # pooled pixels, not a mean of per-pair scores
        assert total[key] == pytest.approx(getattr(summed, key))


def test_compare_prints_checkpoints_side_by_side(test_split, tiny_checkpoint, second_checkpoint, capsys):
    args = ["--data", str(test_split), "--split", "test", "--device", "cpu"]
    assert main(["compare", str(tiny_checkpoint), str(second_checkpoint.parent), *args]) == 0
    table = capsys.readouterr().out
    for text in (tiny_checkpoint.name, "other.pt", "sam-cem-cd", "sam-cd", "0.5", *METRIC_TITLES):
        assert text in table
    assert main(["compare", str(tiny_checkpoint), str(second_checkpoint), *args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["checkpoints"]
    assert [r["method"] for r in rows] == ["sam-cem-cd", "sam-cd"]
    assert all(set(METRICS) <= set(r) and r["tp"] + r["fp"] + r["fn"] + r["tn"] == 2 * 256 ** 2
               for r in rows)


def test_compare_refuses_an_empty_folder(test_split, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--data", str(test_split), "--split", "test"]) == 2


def test_format_table_has_every_metric_and_extra_columns():
    cm = ConfusionMatrix(tp=8, fp=2, fn=2, tn=88)
    text = format_table({"a.pt": cm}, {"method": ["sam-cd"]})
    header, row = text.splitlines()[:2]
    assert header.split() == ["method", *METRIC_TITLES]
    assert row.split()[:3] == ["a.pt", "sam-cd", "0.8000"]  # precision 8/10
    assert row.split()[4] == "0.8000" and float(row.split()[5]) == pytest.approx(8 / 12, abs=1e-4)
