"""The training CLI learns: trained on the real LEVIR-CD samples, it scores F1 ≥ 0.8 on them."""
from __future__ import annotations

import json

import pytest

from sam_cd_plugin.cli import main
from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.engine.datasets import find_pairs
from sam_cd_plugin.models.checkpoint import load_checkpoint


# Hiera-T from random initialisation learns slowly on a CPU: the two LEVIR-CD training tiles that
# hold change (train_386 has none), 64 px crops, 160 steps at lr 1e-3 (measured: 0.78 / 0.71 val
# F1 after 80 steps, still rising; 2e-3 on all four pairs oscillated around 0.5 for 240 steps).
CHANGE_TILES = ["train_36_*", "train_412_*"]
TRANSFORMER_RUN = ["--epochs", "20", "--input-size", "64", "--samples-per-pair", "32",
                   "--batch-size", "8", "--lr", "1e-3"]


@pytest.mark.slow
def test_train_cli_overfits_levir_pairs(shared_data, tmp_path, capsys):
    data = shared_data / "LEVIR-CD"
    out = tmp_path / "levir.pt"
    pairs = ["--include", "train_*", "--include", "val_*"]
    code = main(["train", "--data", str(data), *pairs, "--val-include", "train_*",
                 "--val-include", "val_*", "--out", str(out), "--epochs", "80", "--input-size", "128",
                 "--samples-per-pair", "8", "--batch-size", "4", "--optimizer", "adamw",
                 "--lr", "2e-3", "--delta", "0.3", "--device", "cpu"])
    assert code == 0
    assert "val F1" in capsys.readouterr().out  # the per-epoch progress line
    _, meta = load_checkpoint(out)
    assert meta["delta"] == 0.3 and meta["training"]["pairs"]
    assert meta["metrics"]["val"]["f1"] >= 0.8, meta["metrics"]
    # the detector (overlapping tiles, the users' path) agrees on the same pairs
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(data), *pairs, "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert total["f1"] >= 0.8, total


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sam2-cd", "sam-cd"])
def test_train_cli_learns_with_the_papers_methods(method, shared_data, tmp_path, capsys):
    """SAM2-CD (in-trunk gates, three supervised masks, BCE + Dice, one-cycle AdamW: its recipe)
    and SAM-CD (MAM at every level) on Hiera-T from random init, 64 px crops of the LEVIR-CD
    training tiles with change, scored on those tiles."""
    data = shared_data / "LEVIR-CD"
    out = tmp_path / f"{method}.pt"
    tiles = [arg for glob in CHANGE_TILES for arg in ("--include", glob)]
    scored = [arg for glob in CHANGE_TILES for arg in ("--val-include", glob)]
    extra = ["--augment", "base"] if method == "sam2-cd" else ["--optimizer", "adamw"]
    code = main(["train", "--data", str(data), *tiles, *scored, "--out", str(out), "--method", method,
                 "--encoder", "sam2-t", *TRANSFORMER_RUN, *extra, "--device", "cpu"])
    assert code == 0
    _, meta = load_checkpoint(out)
    settings = meta["training"]["settings"]
    if method == "sam2-cd":  # the recipe's defaults reached the run
        assert (settings["loss"], settings["schedule"], settings["optimizer"]) == \
            ("bce-dice", "one-cycle", "adamw")
    assert meta["metrics"]["val"]["f1"] >= 0.8, meta["metrics"]


def test_dataset_folder_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="A/, B/ and label/"):
        find_pairs(tmp_path)
