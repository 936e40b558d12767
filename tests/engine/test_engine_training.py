"""Training engine: split layouts, validation with best-on-val, resume, δ sweep, methods, AMP."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from sam_cd_plugin.cli import main
from sam_cd_plugin.core.errors import CancelledError, InputError, WeightsError
from sam_cd_plugin.engine.datasets import find_pairs
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions
from sam_cd_plugin.engine.evaluation import evaluate_pairs
from sam_cd_plugin.engine.training import (EpochReport, TrainConfig, autocast_dtype, compute_loss,
                                           delta_checkpoint_path, resume_state_path, train,
                                           validate)
from sam_cd_plugin.models.checkpoint import load_checkpoint
from sam_cd_plugin.models.registry import build_model

TINY = dict(input_size=64, samples_per_pair=2, batch_size=2, optimizer="adamw", lr=1e-3,
            device="cpu", encoder="fastsam-s")


@pytest.fixture()
def split_dataset(shared_data, tmp_path) -> Path:
    """LEVIR-CD tiles copied into the ``{train,val}/{A,B,label}`` layout."""
    root = tmp_path / "levir_split"
    levir = shared_data / "LEVIR-CD"
    for split, names in (("train", ["train_36_0512_0512", "train_386_0512_0768"]),
                         ("val", ["val_27_0000_0256"])):
        for sub in ("A", "B", "label"):
            (root / split / sub).mkdir(parents=True)
            for name in names:
                shutil.copy(levir / sub / f"{name}.png", root / split / sub / f"{name}.png")
    return root


def test_train_validates_each_epoch_and_keeps_the_best(split_dataset, tmp_path):
    out = tmp_path / "model.pt"
    reports: list[EpochReport] = []
    config = TrainConfig(data=[split_dataset], out=out, epochs=3, **TINY)
    assert train(config, progress=reports.append) == out
    assert [r.epoch for r in reports] == [1, 2, 3] and all(r.val is not None for r in reports)
    assert "val F1" in reports[0].line() and "loss" in reports[0].line()
    _, meta = load_checkpoint(out)
    history = meta["training"]["history"]
    f1s = [h["val_f1"] for h in history]
    best = f1s.index(max(f1s)) + 1
    assert meta["training"]["best_epoch"] == best and meta["metrics"]["val"]["epoch"] == best
    assert meta["metrics"]["val"]["f1"] == pytest.approx(max(f1s), abs=1e-4)
    assert set(meta["metrics"]["val"]) >= {"precision", "recall", "f1", "iou", "oa", "kappa", "mf1", "miou"}
    assert meta["training"]["pairs"] == ["train_36_0512_0512", "train_386_0512_0768"]
    assert meta["training"]["validation"]["pairs"] == ["val_27_0000_0256"]
    assert not resume_state_path(out).exists()  # removed once training completed
    # the file holds the scored weights: validating or evaluating it gives exactly the stored score
    stored = meta["metrics"]["val"]
    counts = lambda cm: {k: cm.as_dict()[k] for k in ("tp", "fp", "fn", "tn")}  # noqa: E731
    state, _ = load_checkpoint(out)
    model = build_model(meta)
    model.load_state_dict(state)
    val_pairs = find_pairs(split_dataset, split="val")
    val = validate(model, val_pairs, 64, torch.device("cpu"), batch_size=TINY["batch_size"])
    assert counts(val) == {k: stored[k] for k in ("tp", "fp", "fn", "tn")}
    assert 0 < stored["tp"] + stored["fp"] < stored["tp"] + stored["fp"] + stored["tn"] + stored["fn"]
    evaluated = evaluate_pairs(ChangeDetector(out, "cpu"), val_pairs,
                               DetectionOptions(tile_size=64, overlap=16, batch_size=TINY["batch_size"])).total
    assert counts(evaluated) == counts(val)


def test_resume_after_cancel_matches_an_uninterrupted_run(shared_data, tmp_path):
    data = [shared_data / "LEVIR-CD"]
    common = dict(data=data, include=["train_36*"], epochs=2, **TINY)
    full = train(TrainConfig(out=tmp_path / "full.pt", **common))
    out = tmp_path / "cut.pt"
    calls = {"n": 0}

    def cancel_in_second_epoch() -> bool:  # 1 batch per epoch: the 2nd poll is epoch 2
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(CancelledError, match="resumed"):
        train(TrainConfig(out=out, **common), is_cancelled=cancel_in_second_epoch)
    assert out.is_file() and resume_state_path(out).is_file()
    assert load_checkpoint(out)[1]["training"]["epochs_done"] == 1
    with pytest.raises(InputError, match="other settings"):
        train(TrainConfig(out=out, resume=True, **{**common, "epochs": 3}))
    train(TrainConfig(out=out, resume=True, **common))
    (a, meta_a), (b, meta_b) = load_checkpoint(full), load_checkpoint(out)
    assert meta_b["training"]["epochs_done"] == 2 and len(meta_b["training"]["history"]) == 2
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-3, rtol=1e-2)
    with pytest.raises(InputError, match="does not exist"):
        train(TrainConfig(out=tmp_path / "never.pt", resume=True, **common))


def test_training_can_start_from_a_checkpoint_and_records_it(shared_data, tmp_path, tiny_checkpoint):
    """Fine-tuning: a run started from a checkpoint begins at its weights (one step at a tiny
    learning rate stays next to them; random initialisation is far away) and says so."""
    common = dict(data=[shared_data / "LEVIR-CD"], include=["train_36*"], epochs=1,
                  **{**TINY, "input_size": 128, "lr": 1e-7}, identical_share=0.5, seed=1)  # tiny: seed 0
    out = train(TrainConfig(out=tmp_path / "tuned.pt", checkpoint=tiny_checkpoint, **common))
    (start, _), (tuned, meta) = load_checkpoint(tiny_checkpoint), load_checkpoint(out)
    conv = next(k for k in start if k.endswith("weight") and start[k].dim() == 4)
    torch.testing.assert_close(tuned[conv], start[conv], atol=1e-3, rtol=0)
    assert meta["training"]["start"]["checkpoint"] == tiny_checkpoint.name
    assert meta["training"]["identical_pairs"] == 0.5
    fresh, _ = load_checkpoint(train(TrainConfig(out=tmp_path / "fresh.pt", **common)))
    assert not torch.allclose(fresh[conv], start[conv], atol=1e-3)
    with pytest.raises(InputError, match="cannot start a sam2-cd"):
        train(TrainConfig(out=tmp_path / "never.pt", checkpoint=tiny_checkpoint, method="sam2-cd",
                          **{**common, "encoder": "sam2-t"}))


def test_sam2_cd_loss_uses_deep_supervision():
    torch.manual_seed(0)
    model = build_model({"method": "sam2-cd", "encoder": "fastsam-s"}).eval()
    before, after = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    label = (torch.rand(1, 1, 64, 64) > 0.8).float()
    with torch.no_grad():
        outs = model.forward_train(before, after)
        expected = sum(torch.nn.functional.binary_cross_entropy_with_logits(o, label) for o in outs)
        main_only = torch.nn.functional.binary_cross_entropy_with_logits(outs[0], label)
        loss = compute_loss(model, before, after, label, delta=0.0)
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, main_only)


def test_sam_cd_prompts_need_clip_weights_and_methods_are_checked(shared_data, tmp_path):
    base = dict(data=[shared_data / "LEVIR-CD"], out=tmp_path / "x.pt", epochs=1, **TINY)
    with pytest.raises(WeightsError, match="ViT-B-32"):
        train(TrainConfig(method="sam-cd", prompts=["building"], **base))
    with pytest.raises(InputError, match="--method sam-cd"):
        train(TrainConfig(method="sam-cem-cd", prompts=["building"], **base))
    with pytest.raises(InputError, match="Unknown method"):
        train(TrainConfig(method="sam3", **base))
    assert not (tmp_path / "x.pt").exists()


def test_sam_cd_prompts_and_clip_reach_the_model(shared_data, tmp_path):
    pytest.importorskip("open_clip")
    from sam_cd_plugin.models.semantic_prior import ClipScorer

    clip = ClipScorer.random("ViT-S-32", seed=1)
    clip_file = tmp_path / "open_clip_pytorch_model.bin"
    torch.save({k: v.half() for k, v in clip.model.state_dict().items()}, clip_file)
    out = train(TrainConfig(data=[shared_data / "LEVIR-CD"], include=["val_*"], out=tmp_path / "p.pt",
                            method="sam-cd", prompts=["building"], clip_weights=clip_file,
                            clip_model="ViT-S-32", mask_generator="grid", epochs=1,
                            **{**TINY, "samples_per_pair": 1, "batch_size": 1}))
    _, meta = load_checkpoint(out)
    assert meta["method"] == "sam-cd" and meta["prompts"] == ["building"]
    assert meta["clip_model"] == "ViT-S-32" and meta["mask_generator"] == "grid"
    with pytest.raises(WeightsError, match="CLIP"):
        build_model(meta)  # the checkpoint needs the CLIP file again at run time


def test_delta_sweep_cli_writes_one_checkpoint_per_delta(shared_data, tmp_path, capsys):
    out = tmp_path / "sweep" / "levir.pt"
    code = main(["train", "--data", str(shared_data / "LEVIR-CD"), "--include", "train_36*",
                 "--val-include", "val_*", "--out", str(out), "--delta-sweep", "0.2,0.5",
                 "--epochs", "1", "--input-size", "64", "--samples-per-pair", "1",
                 "--batch-size", "1", "--optimizer", "adamw", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "val F1" in printed
    for delta in (0.2, 0.5):
        path = delta_checkpoint_path(out, delta)
        assert path.name == f"levir_delta{delta}.pt"
        _, meta = load_checkpoint(path)
        assert meta["delta"] == delta and meta["method"] == "sam-cem-cd"
        assert meta["encoder"] == "fastsam-s" and meta["training"]["data"] == ["LEVIR-CD"]
        assert 0.0 <= meta["metrics"]["val"]["f1"] <= 1.0 and "iou" in meta["metrics"]["val"]
        assert path.name in printed
    assert not out.exists()


def test_split_layout_without_split_is_refused_by_evaluate(split_dataset, tiny_checkpoint):
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(split_dataset)]) == 2


def test_autocast_only_on_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp16", cpu) is None
    assert autocast_dtype("off", cuda) is None
    assert autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("bf16", cuda) is torch.bfloat16
    with pytest.raises(InputError, match="amp"):
        TrainConfig(data=[], out=Path("x.pt"), amp="fp8").validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda(shared_data, tmp_path, amp):
    reports: list[EpochReport] = []
    out = train(TrainConfig(data=[shared_data / "LEVIR-CD"], val_include=["val_*"],
                            out=tmp_path / f"{amp}.pt", epochs=2, amp=amp,
                            **{**TINY, "device": "cuda"}), progress=reports.append)
    assert all(torch.isfinite(torch.tensor(r.loss)) for r in reports)
    state, meta = load_checkpoint(out)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
