"""GPU checks for the detector's device path (run on a CUDA machine; not a test, CI has no GPU).

Checks, with the bundled checkpoint:
1. autocast + channels_last prediction agrees with fp32 prediction (max abs probability error,
   share of mask pixels that flip at 0.5);
2. the automatic batch size from free device memory;
3. a real CUDA out-of-memory (most of the free memory is taken first) makes the detector halve
   its batch and finally fall back to the CPU, with the same probabilities as an undisturbed run;
4. tiles/s of ``ChangeDetector.predict`` at the automatic batch size vs the bare encoder forward.

GPU images without GDAL's Python bindings (``osgeo``) can still run this: only the model path is
exercised, so an empty ``osgeo`` module is registered when the real one is missing, before the
detector module is imported. Usage: ``python bench/gpu_check.py [--json OUT]``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

if importlib.util.find_spec("osgeo") is None:  # model-path checks only; see module docstring
    osgeo = types.ModuleType("osgeo")
    for name in ("gdal", "osr", "ogr", "gdal_array"):
        sub = types.ModuleType(f"osgeo.{name}")
        sub.UseExceptions = lambda: None  # type: ignore[attr-defined]
        setattr(osgeo, name, sub)
        sys.modules[f"osgeo.{name}"] = sub
    sys.modules["osgeo"] = osgeo

from sam_cd_plugin.engine.batching import OomBackoff  # noqa: E402
from sam_cd_plugin.engine.detector import ChangeDetector  # noqa: E402


def _tiles(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    before = rng.random((n, 3, size, size), dtype=np.float32)
    after = before.copy()
    after[:, :, size // 4: size // 2, size // 4: size // 2] = rng.random((n, 3, size // 4, size // 4))
    return before, after


def _take_device_memory(spare_mib: int) -> list[torch.Tensor]:
    """Blocks holding all free device memory but about ``spare_mib`` MiB."""
    torch.cuda.empty_cache()
    blocks: list[torch.Tensor] = []
    for mib in (1024, 64, 16, 2):
        while True:
            try:
                blocks.append(torch.empty(mib * 1024 ** 2, dtype=torch.uint8, device="cuda"))
            except torch.OutOfMemoryError:
                break
    freed = 0
    while blocks and freed < spare_mib * 1024 ** 2:
        freed += blocks.pop().numel()
    torch.cuda.empty_cache()
    return blocks


def _timed(fn, repeats: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    det = ChangeDetector(None, "cuda")
    size = det.input_size
    before, after = _tiles(16, size)

    # 1. autocast/channels_last vs fp32 on the same device
    fast = det.predict(before, after)
    with torch.autocast("cuda", enabled=False):
        ref_model = det.model.to(memory_format=torch.contiguous_format).float()
        with torch.inference_mode():
            ref = torch.sigmoid(ref_model(torch.from_numpy(before).cuda(),
                                          torch.from_numpy(after).cuda()))[:, 0].float().cpu().numpy()
    det.model = det.model.to(memory_format=torch.channels_last)
    report["amp_max_abs_prob_error"] = float(np.abs(fast - ref).max())
    report["amp_mask_flip_share"] = float(((fast >= 0.5) != (ref >= 0.5)).mean())

    # 2. automatic batch size
    batch = det.batch_size(size)
    report["auto_batch_size"] = batch

    # 4. throughput: detector predict vs bare encoder forward, same tiles
    many_b, many_a = _tiles(batch * 4, size, seed=1)
    backoff = OomBackoff(batch, det.fall_back_to_cpu)
    t_pipe = _timed(lambda: backoff.run(det.predict, many_b, many_a))
    enc = det.model.encoder
    x = torch.from_numpy(many_b).cuda().contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        with torch.inference_mode(), det._amp():
            for i in range(0, x.shape[0], batch):
                xb = x[i:i + batch]
                enc(torch.cat([xb, xb]))  # the heads encode both dates in one batch
    t_enc = _timed(bare)
    xa = torch.from_numpy(many_a).cuda().contiguous(memory_format=torch.channels_last)

    def model_only() -> None:  # the whole network on device-resident tiles: no copies, no sigmoid
        with torch.inference_mode(), det._amp():
            for i in range(0, x.shape[0], batch):
                det.model(x[i:i + batch], xa[i:i + batch])
    t_model = _timed(model_only)
    report["predict_tiles_per_s"] = round(many_b.shape[0] / t_pipe, 1)
    report["bare_encoder_pairs_per_s"] = round(many_b.shape[0] / t_enc, 1)
    report["model_forward_pairs_per_s"] = round(many_b.shape[0] / t_model, 1)
    report["predict_over_encoder_ratio"] = round(t_enc / t_pipe, 3)
    report["predict_over_model_forward_ratio"] = round(t_model / t_pipe, 3)

    # 3. real out-of-memory: take nearly all free memory (leaving `spare`), run a big batch
    expected = OomBackoff(4, lambda: None).run(det.predict, before, after)
    for spare_mib in (96, 0):
        hog = _take_device_memory(spare_mib)
        backoff = OomBackoff(16, det.fall_back_to_cpu)
        try:
            got = backoff.run(det.predict, before, after)
        finally:
            del hog
            torch.cuda.empty_cache()
        report[f"oom_spare{spare_mib}MiB"] = {
            "final_batch_size": backoff.batch_size, "fell_back_to_cpu": backoff.fell_back,
            "device_after": str(det.device),
            "max_abs_prob_difference": float(np.abs(got - expected).max()),
            "mask_flip_share": float(((got >= 0.5) != (expected >= 0.5)).mean())}

    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
