"""SAM2-CD and SAM-CD: every method × encoder builds offline and runs; MAM, priors, CLIP, overfit."""
from __future__ import annotations

import time
import warnings

import pytest
import torch

from sam_cd_plugin.core.errors import CheckpointError, WeightsError
from sam_cd_plugin.models.encoders import ENCODER_NAMES
from sam_cd_plugin.models.encoders.base import encoder_names
from sam_cd_plugin.models.registry import build_model
from sam_cd_plugin.models.sam2_cd import Sam2Cd
from sam_cd_plugin.models.sam_cd import MaskedAttention, SamCd, prior_at

NEW_METHODS = ("sam2-cd", "sam-cd")
LIGHT_ENCODERS = ("fastsam-s", "sam2-t", "mobilesam")  # gradient checks: the small encoders


def _require(encoder: str) -> None:
    if encoder not in encoder_names():
        pytest.skip(f"encoder {encoder} is not available in this build")


def _build(method: str, encoder: str, **meta) -> torch.nn.Module:
    _require(encoder)
    torch.manual_seed(0)
    return build_model({"method": method, "encoder": encoder, **meta})


# -- every method × every encoder ---------------------------------------------------------------

@pytest.mark.parametrize("encoder", ENCODER_NAMES)
@pytest.mark.parametrize("method", NEW_METHODS)
def test_method_builds_offline_and_runs_forward(method, encoder):
    model = _build(method, encoder).eval()
    before, after = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        logits = model(before, after)
    assert logits.shape == (1, 1, 256, 256)
    assert torch.isfinite(logits).all()
    assert model.method == method


@pytest.mark.parametrize("encoder", LIGHT_ENCODERS)
@pytest.mark.parametrize("method", NEW_METHODS)
def test_gradients_reach_head_and_encoder(method, encoder):
    model = _build(method, encoder).train()
    logits = model(torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128))
    assert logits.shape == (2, 1, 128, 128)
    (logits ** 2).mean().backward()
    if method == "sam2-cd":
        parts = [model.heads, model.gates, model.neck, model.fusion, model.temporal, model.context,
                 model.attention]
    else:
        parts = [model.decode, model.mam, model.fuse_local, model.temporal, model.proj]
    for part in parts + [model.encoder]:
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), part


def test_unknown_method_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="sam2-cd"):
        build_model({"method": "no-such-method", "encoder": "fastsam-s"})


# -- SAM2-CD ------------------------------------------------------------------------------------

def test_sam2_cd_deep_supervision_outputs():
    model = _build("sam2-cd", "fastsam-s")
    assert isinstance(model, Sam2Cd)
    model.eval()
    before, after = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        outs = model.forward_train(before, after)
        main = model(before, after)
    assert [tuple(o.shape) for o in outs] == [(1, 1, 128, 128)] * 3
    torch.testing.assert_close(outs[0], main)
    assert not torch.allclose(outs[1], outs[2])


def _sam2_cd(encoder: str = "sam2-t") -> Sam2Cd:
    model = _build("sam2-cd", encoder)
    assert isinstance(model, Sam2Cd)
    return model.eval()


def test_sam2_cd_gates_run_inside_the_trunk_after_its_global_attention_blocks():
    model = _sam2_cd()
    trunk = model.encoder.trunk
    calls: list[str] = []
    running = []
    trunk.register_forward_pre_hook(lambda m, i: running.append(True))
    trunk.register_forward_hook(lambda m, i, o: running.clear())
    for i, block in enumerate(trunk.blocks):
        block.register_forward_hook(lambda m, i_, o, i=i: calls.append(f"block{i}"), prepend=True)
    for k, gate in enumerate(model.gates):
        gate.register_forward_hook(
            lambda m, i_, o, k=k: calls.append(f"gate{k}" + ("" if running else " outside")))
    with torch.no_grad():
        model(torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128))
    global_blocks = list(trunk.global_att_blocks)  # sam2-t: 5, 7, 9, all at stride 16
    assert len(model.gates) == len(global_blocks) == 3
    for k, b in enumerate(global_blocks):
        assert calls[calls.index(f"block{b}") + 1] == f"gate{k}", calls
        assert trunk.blocks[b].dim_out == 384  # the stride-16 stage of Hiera-T
    calls.clear()
    with torch.no_grad():
        model.encoder(torch.rand(2, 3, 64, 64))  # the encoder alone: no gate
    assert not any(c.startswith("gate") for c in calls)


def test_sam2_cd_stride16_features_of_both_dates_change_when_one_date_changes():
    model = _sam2_cd()
    torch.manual_seed(1)
    before, after = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)
    other_after = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        gated, gated2 = model.encode(before, after)[2], model.encode(before, other_after)[2]
        plain = model.encoder(torch.cat([before, after]))[2]
        plain2 = model.encoder(torch.cat([before, other_after]))[2]
    assert (gated[0] - gated2[0]).abs().max() > 1e-4  # T1's features see T2 while encoded
    assert (gated[1] - gated2[1]).abs().max() > 1e-4
    torch.testing.assert_close(plain[0], plain2[0])  # without the gates the dates are separate


def test_sam2_cd_every_scale_receives_every_levels_branch():
    model = _sam2_cd()
    sizes = [(32, 32), (16, 16), (8, 8), (4, 4)]
    levels = [torch.randn(2, 256, *s, requires_grad=True) for s in sizes]
    outs = model.fusion(levels)
    assert [tuple(o.shape[-2:]) for o in outs] == sizes[:3]  # strides 4, 8, 16
    for s, out in enumerate(outs):
        grads = torch.autograd.grad(out.sum(), levels, retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads), f"scale {s} misses a level"
    assert len(model.fusion.branches) == 3 and all(len(b) == 4 for b in model.fusion.branches)


def test_sam2_cd_neck_is_sam2s_fpn_at_256_channels():
    model = _sam2_cd()
    feats = model.encode(torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128))
    neck = model.neck(feats)
    assert [tuple(n.shape[1:]) for n in neck] == [(256, 32, 32), (256, 16, 16), (256, 8, 8), (256, 4, 4)]
    assert type(model.neck.fpn).__name__ == "FpnNeck"


def test_sam2_cd_on_a_cnn_encoder_gates_its_stride16_output():
    model = _sam2_cd("fastsam-s")
    assert model.gate_after_encoder == 2 and len(model.gates) == 1
    gate = model.gates[0]
    seen = []
    gate.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    with torch.no_grad():
        model.encode(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
        assert seen == [(1, 4, 4, 256)]  # T1's stride-16 map (FastSAM-s: 256 ch), channels last
        x = torch.randn(2, 256, 4, 4)
        y = x.clone()
        y[1] += 1.0  # only T2 changes
        a, b = gate.channels_first(x), gate.channels_first(y)
    assert (a[0] - b[0]).abs().max() > 1e-3


def test_bce_dice_loss_is_bce_plus_one_minus_dice():
    from sam_cd_plugin.models.bce_dice_loss import bce_dice_loss

    label = torch.zeros(1, 1, 8, 8)
    label[..., :4, :] = 1
    perfect = (label * 2 - 1) * 50
    assert bce_dice_loss(perfect, label) < 1e-3
    assert bce_dice_loss(-perfect, label) > 1.9


# -- SAM-CD: masked attention -------------------------------------------------------------------

def _mask(b: int = 2, h: int = 8, w: int = 8) -> torch.Tensor:
    mask = torch.zeros(b, 1, h, w, dtype=torch.bool)
    mask[0, :, 1:5, 2:6] = True
    mask[1, :, 4:8, 0:3] = True
    return mask


def test_mam_ignores_features_outside_the_mask():
    torch.manual_seed(0)
    mam = MaskedAttention(32, heads=4).eval()
    mask = _mask()
    x = torch.randn(2, 32, 8, 8)
    changed = torch.where(mask, x, torch.randn(2, 32, 8, 8) * 10)  # new values outside only
    with torch.no_grad():
        out, out_changed = mam(x, mask), mam(changed, mask)
    torch.testing.assert_close(out, out_changed)
    assert (out * ~mask).abs().max() == 0  # no local feature outside the prior mask
    assert (out * mask).abs().sum() > 0


def test_mam_attends_across_the_mask():
    """A change at one masked token reaches the other masked tokens (it is attention, not 1×1)."""
    torch.manual_seed(0)
    mam = MaskedAttention(32, heads=4).eval()
    mask = _mask()
    x = torch.randn(2, 32, 8, 8)
    y = x.clone()
    y[0, :, 1, 2] += 5.0  # inside image 0's mask
    with torch.no_grad():
        diff = (mam(x, mask) - mam(y, mask)).abs().sum(dim=1)
    far = mask[0, 0].clone()
    far[0:4, 1:4] = False  # exclude the token and its 3×3 (positional conv) neighbourhood
    assert (diff[0][far] > 1e-6).all()
    assert diff[1].max() == 0  # the other image is untouched


def test_windowed_mam_attends_within_windows_only():
    torch.manual_seed(0)
    mam = MaskedAttention(16, heads=2, window=4).eval()
    mask = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    x = torch.randn(1, 16, 8, 8)
    y = x.clone()
    y[0, :, 0, 0] += 5.0  # top-left window
    with torch.no_grad():
        diff = (mam(x, mask) - mam(y, mask)).abs().sum(dim=1)[0]
    assert (diff[:4, :4] > 1e-6).all() and diff[4:, 4:].max() == 0
    whole, plain = MaskedAttention(16, heads=2, window=8).eval(), MaskedAttention(16, heads=2).eval()
    whole.load_state_dict(mam.state_dict())
    plain.load_state_dict(mam.state_dict())
    with torch.no_grad():  # a window as large as the map is plain masked attention
        torch.testing.assert_close(whole(x, mask), plain(x, mask))


def test_sam_cd_defaults_to_mam_at_every_level():
    model = _build("sam-cd", "sam2-t")
    assert sorted(model.mam) == ["0", "1", "2", "3"]
    assert [model.mam[str(i)].window for i in range(4)] == [16, 16, None, None]


def test_mam_with_empty_mask_gives_zeros_not_nan():
    mam = MaskedAttention(16, heads=2)
    out = mam(torch.randn(1, 16, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.bool))
    assert torch.equal(out, torch.zeros_like(out))


def test_prior_at_keeps_tokens_touched_by_the_mask():
    prior = torch.zeros(1, 1, 64, 64)
    prior[0, 0, 17, 40] = 1.0  # one pixel in cell (1, 2) of a 16-px grid
    tokens = prior_at(prior, (4, 4))
    assert tokens.shape == (1, 1, 4, 4)
    assert tokens.sum() == 1 and tokens[0, 0, 1, 2]


def test_sam_cd_prompt_free_prior_is_documented_all_ones():
    model = _build("sam-cd", "fastsam-s").eval()
    assert isinstance(model, SamCd) and model.prompts == []
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.semantic_prior(images), torch.ones(2, 1, 64, 64))
    assert "prompt-free" in model.prior_description()


def test_sam_cd_output_depends_on_the_prior():
    model = _build("sam-cd", "fastsam-s").eval()
    before, after = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)
    ones, zeros = torch.ones(1, 1, 128, 128), torch.zeros(1, 1, 128, 128)
    with torch.no_grad():
        default = model(before, after)
        explicit = model(before, after, ones, ones)
        masked_out = model(before, after, zeros, ones)
    torch.testing.assert_close(default, explicit)
    assert not torch.allclose(default, masked_out)


# -- SAM-CD: prompts, CLIP and mask generators ----------------------------------------------------

def test_prompts_without_clip_weights_name_the_file(tmp_path):
    meta = {"method": "sam-cd", "encoder": "fastsam-s", "prompts": ["building"]}
    with pytest.raises(WeightsError) as info:
        build_model(meta)
    assert "ViT-B-32" in str(info.value) and "ViT-B-32.pt" in str(info.value)
    with pytest.raises(WeightsError, match="does not exist"):
        build_model(meta, clip_weights=tmp_path / "missing.pt")


def test_prompted_model_without_clip_refuses_to_run():
    from sam_cd_plugin.models.encoders import build_encoder
    from sam_cd_plugin.models.semantic_prior import GridMaskGenerator

    model = SamCd(build_encoder("fastsam-s"), prompts=["building"],
                  mask_generator=GridMaskGenerator()).eval()
    with pytest.raises(WeightsError, match="building"):
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


@pytest.fixture(scope="module")
def random_clip():
    pytest.importorskip("open_clip")
    from sam_cd_plugin.models.semantic_prior import ClipScorer

    return ClipScorer.random("ViT-B-32", seed=0)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A random ViT-S-32 CLIP saved as an open_clip state-dict file (stands in for the user's).

    Returns ``(path, scorer)``; the scorer's weights are rounded to fp16 like the file's.
    """
    pytest.importorskip("open_clip")
    from sam_cd_plugin.models.semantic_prior import ClipScorer

    scorer = ClipScorer.random("ViT-S-32", seed=1)
    scorer.model.half().float()
    path = tmp_path_factory.mktemp("clip") / "open_clip_pytorch_model.bin"
    torch.save({k: v.half() for k, v in scorer.model.state_dict().items()}, path)
    return path, scorer


def test_grid_prior_with_random_clip(random_clip):
    from sam_cd_plugin.models.semantic_prior import GridMaskGenerator, SemanticPrior

    prior = SemanticPrior(random_clip, GridMaskGenerator(cells=(2,)), ["building"])
    out = prior(torch.rand(2, 3, 96, 96))
    assert out.shape == (2, 1, 96, 96) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.max() > 0
    for b in range(2):  # one CLIP score per grid window: constant on each quadrant
        for quadrant in (out[b, 0, :48, :48], out[b, 0, 48:, 48:]):
            assert quadrant.unique().numel() == 1


def test_prompted_sam_cd_runs_end_to_end_with_random_clip(random_clip):
    from sam_cd_plugin.models.encoders import build_encoder
    from sam_cd_plugin.models.semantic_prior import GridMaskGenerator

    model = SamCd(build_encoder("fastsam-s"), prompts=["building"],
                  mask_generator=GridMaskGenerator(cells=(2,))).eval()
    model.attach_clip(random_clip)
    before, after = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        prior = model.semantic_prior(before)
        logits = model(before, after)
        free = model(before, after, torch.ones_like(prior), torch.ones_like(prior))
    assert prior.shape == (1, 1, 64, 64) and 0 < prior.max() <= 1
    assert logits.shape == (1, 1, 64, 64) and not torch.allclose(logits, free)
    assert "'building'" in model.prior_description() and "random" in model.prior_description()


def test_fastsam_prior_with_random_clip(random_clip):
    from sam_cd_plugin.models.semantic_prior import FastSamMaskGenerator, SemanticPrior

    torch.manual_seed(0)
    generator = FastSamMaskGenerator("fastsam-s", conf=0.0, max_masks=3, require_weights=False)
    odd = generator(torch.rand(3, 100, 120))  # not a multiple of 32: padded internally
    assert odd.dtype == torch.bool and odd.shape[1:] == (100, 120) and odd.shape[0] <= 3
    image = torch.rand(3, 128, 128)
    masks = generator(image)
    assert masks.dtype == torch.bool and 0 < masks.shape[0] <= 3
    out = SemanticPrior(random_clip, generator, ["building", "tree"])(image[None])
    assert out.shape == (1, 1, 128, 128)
    assert 0.0 <= out.min() and out.max() <= 1.0
    covered = masks.any(dim=0)
    assert (out[0, 0][~covered] == 0).all() and (out[0, 0][covered] > 0).all()


def test_untrained_fastsam_generator_is_refused():
    from sam_cd_plugin.models.semantic_prior import build_mask_generator

    generator = build_mask_generator("fastsam-s")
    with pytest.raises(WeightsError, match="FastSAM-s.pt"):
        generator(torch.rand(3, 64, 64))


def test_clip_weights_file_loads_and_bad_file_is_refused(clip_file, tmp_path):
    from sam_cd_plugin.models.semantic_prior import ClipScorer

    path, original = clip_file
    loaded = ClipScorer.load(path, "ViT-S-32")
    assert loaded.source == path.name
    torch.testing.assert_close(loaded.encode_text(["a building"]),
                               original.encode_text(["a building"]))
    with pytest.raises(WeightsError, match="ViT-B-32"):
        ClipScorer.load(path)  # a ViT-S-32 file is not ViT-B-32 weights
    bad = tmp_path / "ViT-B-32.pt"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(WeightsError, match="ViT-B-32.pt"):
        ClipScorer.load(bad)
    wrong = tmp_path / "wrong.bin"
    torch.save({"visual.conv1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsError, match="does not match"):
        ClipScorer.load(wrong, "ViT-S-32")
    with pytest.raises(CheckpointError, match="Unknown CLIP"):
        ClipScorer.load(path, "no-such-clip")


def test_openai_torchscript_clip_file_loads_with_quick_gelu(tmp_path):
    """OpenAI's release files are TorchScript archives of a QuickGELU CLIP."""
    open_clip = pytest.importorskip("open_clip")
    from sam_cd_plugin.models.semantic_prior import ClipScorer

    torch.manual_seed(2)
    original = open_clip.create_model("ViT-S-32", force_quick_gelu=True).eval().half()
    path = tmp_path / "ViT-S-32.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(original), str(path))
    loaded = ClipScorer.load(path, "ViT-S-32")
    assert any(type(m).__name__ == "QuickGELU" for m in loaded.model.modules())
    reference = ClipScorer(original.float(), loaded.tokenizer, "ViT-S-32", "reference")
    torch.testing.assert_close(loaded.encode_text(["a building"]),
                               reference.encode_text(["a building"]))


def test_prompted_checkpoint_round_trip(clip_file, tmp_path):
    """Prompts and the mask generator's weights travel in the checkpoint; CLIP does not."""
    from sam_cd_plugin.models.checkpoint import load_checkpoint, save_checkpoint

    clip_path = clip_file[0]
    encoder = "mobilesam" if "mobilesam" in encoder_names() else "fastsam-s"  # quicker to build
    meta = {"method": "sam-cd", "encoder": encoder, "input_size": 64, "clip_model": "ViT-S-32",
            "prompts": ["building"], "mask_generator": "fastsam-s"}
    model = build_model(meta, clip_weights=clip_path)
    assert not bool(model.mask_generator.has_weights)
    fastsam_file = tmp_path / "FastSAM-s.pt"  # stands in for the official file (a state dict)
    torch.save(model.mask_generator.model.state_dict(), fastsam_file)
    model.mask_generator.load_weights(fastsam_file)
    assert bool(model.mask_generator.has_weights)
    path = save_checkpoint(tmp_path / "sam_cd.pt", model.eval(), meta)
    state, loaded_meta = load_checkpoint(path)
    assert loaded_meta["prompts"] == ["building"]
    assert not any(k.startswith("_clip") or "visual." in k for k in state)
    with pytest.raises(WeightsError, match="CLIP"):
        build_model(loaded_meta)
    rebuilt = build_model(loaded_meta, clip_weights=clip_path)
    assert not bool(rebuilt.mask_generator.has_weights)
    rebuilt.load_state_dict(state)
    assert bool(rebuilt.mask_generator.has_weights)
    assert "'building'" in rebuilt.prior_description()
    generator_state = {k[len("mask_generator."):]: v for k, v in state.items()
                       if k.startswith("mask_generator.model.")}
    assert generator_state and len(generator_state) == len(model.mask_generator.model.state_dict())


# -- overfitting on real LEVIR-CD crops -----------------------------------------------------------

def _f1(pred: torch.Tensor, label: torch.Tensor) -> float:
    from sam_cd_plugin.core.metrics import ConfusionMatrix

    return float(ConfusionMatrix().update(pred.numpy(), label.numpy()).f1)


def _overfit(method: str, shared_data, max_steps: int, target: float = 0.93) -> tuple[float, int]:
    """Train from random init on fixed 128-px LEVIR-CD crops; return (best eval F1, steps)."""
    from sam_cd_plugin.engine.datasets import ChangeDataset, find_pairs
    from sam_cd_plugin.engine.training import compute_loss, recalibrate_batchnorm

    pairs = find_pairs(shared_data / "LEVIR-CD")
    dataset = ChangeDataset(pairs, crop=128, samples_per_pair=1, augment=False, seed=0)
    crops = [dataset[i] for i in range(len(dataset))]
    crops = [c for c in crops if c[2].sum() > 0]  # crops with change (F1 of the change class)
    before, after, label = (torch.stack(t) for t in zip(*crops))
    truth = label[:, 0] > 0.5
    torch.manual_seed(0)
    model = build_model({"method": method, "encoder": "fastsam-s"})
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    best, step = 0.0, 0
    while step < max_steps and best < target:
        model.train()
        for _ in range(10):
            for group in optimizer.param_groups:
                group["lr"] = 2e-3 * (1 - step / max_steps) ** 0.9
            loss = compute_loss(model, before, after, label, 0.3, generator)  # the trainer's loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        recalibrate_batchnorm(model, [(before, after, label)], torch.device("cpu"))
        with torch.no_grad():
            best = max(best, _f1(model(before, after)[:, 0] > 0, truth))
    return best, step


@pytest.mark.slow
@pytest.mark.parametrize("method", ("sam-cem-cd",) + NEW_METHODS)
def test_overfits_real_levir_crops(method, shared_data):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    f1, steps = _overfit(method, shared_data, max_steps=120)
    seconds = time.perf_counter() - started
    print(f"{method}: change-class F1 {f1:.3f} after {steps} steps ({seconds:.0f} s)")
    assert f1 >= 0.9, f"{method}: change-class F1 {f1:.3f} after {steps} steps ({seconds:.0f} s)"
