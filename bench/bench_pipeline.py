#!/usr/bin/env python3
"""Engine benchmarks (a script, not a test): throughput ratio, peak memory, megapixels/s.

(a) **ratio**: the whole pipeline (read, warp-free alignment, normalise, model, blend, write)
    against the bare model forward on the same tiles, same batch size, in one process:
    ``ratio = model-only time / pipeline time`` (1.0 = the pipeline adds nothing).
(b) **peak RSS** of a full detection for each ``--sizes`` raster (each run in its own
    subprocess; its ``ru_maxrss``), on synthetic pairs mirror-tiled from a real LEVIR-CD
    1024² pair, georeferenced, written as tiled DEFLATE GeoTIFFs.
(c) **Mpx/s** end to end for each size.
(d) ``--null-model``: the pipeline's own ceiling — ``detect`` on the ``--ratio-size`` pair with a
    model that returns zeros at once (tiles/s, ``--readers`` reader threads), nothing else.

Usage: ``python bench/bench_pipeline.py [--sizes 2000,10000,20000] [--checkpoint PT]
[--device cpu] [--overlap 64] [--readers N] [--workdir DIR] [--json OUT]``, or
``python bench/bench_pipeline.py --null-model --readers N --ratio-size S --json OUT``. Results
print as a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".ultralytics"))

SAMPLE = REPO.parent / "shared" / "data" / "LEVIR-CD-1024"
PIXEL = 0.5
SIZES = "2000,10000,20000"
ORIGIN = (500000.0, 5000000.0)


def synthetic_pair(size: int, workdir: Path, name: str = "test_102") -> tuple[Path, Path]:
    """``size``² before/after GeoTIFFs mirror-tiled from a real 1024² pair (cached in workdir)."""
    from osgeo import gdal

    gdal.UseExceptions()
    out = []
    for tag in ("A", "B"):
        path = workdir / f"{name}_{tag}_{size}.tif"
        out.append(path)
        if path.exists():
            continue
        src = gdal.Open(str(SAMPLE / tag / f"{name}.png"))
        img = src.ReadAsArray()  # (3, 1024, 1024)
        del src
        n = img.shape[1]
        tmp = path.with_suffix(".partial.tif")
        ds = gdal.GetDriverByName("GTiff").Create(
            str(tmp), size, size, 3, gdal.GDT_Byte,
            options=["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS"])
        ds.SetGeoTransform((ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL))
        srs = gdal.osr.SpatialReference()
        srs.ImportFromEPSG(32633)
        ds.SetProjection(srs.ExportToWkt())
        for ty, y in enumerate(range(0, size, n)):
            rows = img[:, ::-1] if ty % 2 else img
            strip = np.concatenate([rows[:, :, ::-1] if tx % 2 else rows
                                    for tx in range((size + n - 1) // n)], axis=2)[:, :, :size]
            h = min(n, size - y)
            for b in range(3):
                ds.GetRasterBand(b + 1).WriteArray(strip[b, :h], 0, y)
            ds.FlushCache()
        del ds
        os.replace(tmp, path)
    return out[0], out[1]


class NullModel:
    """Stands in for the change model: zeros of the right shape at once (``--null-model``)."""

    uses_prior = False

    def __call__(self, before, after, *extra):
        return before.new_zeros((before.shape[0], 1) + tuple(before.shape[2:]))

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self

    cpu = eval


def make_detector(args: argparse.Namespace):
    from sam_cd_plugin.engine.detector import ChangeDetector

    detector = ChangeDetector(args.checkpoint, args.device)
    if getattr(args, "null_model", False):
        detector.model = NullModel()
    return detector


def gpu_peak_mib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None


def child(size: int, args: argparse.Namespace) -> dict:
    """One full detection in this process; reports its own peak RSS (and GPU memory)."""
    from sam_cd_plugin.engine.detector import DetectionOptions

    before, after = synthetic_pair(size, Path(args.workdir))
    detector = make_detector(args)
    out = Path(args.workdir) / f"change_{size}.tif"
    prob = None if args.no_probability else Path(args.workdir) / f"prob_{size}.tif"
    options = DetectionOptions(overlap=args.overlap, batch_size=args.batch_size,
                               probability_path=prob, readers=args.readers)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = detector.detect(before, after, out, options)
    return {"size": size, "seconds": result.seconds, "tiles": result.tiles,
            "tiles_per_s": result.tiles / result.seconds, "readers": detector.reader_threads(args.readers),
            "mpx_per_s": size * size / 1e6 / result.seconds, "device": result.device,
            "with_probability": prob is not None, "null_model": bool(args.null_model),
            "rss_before_run_mib": base_rss / 1024,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mib": gpu_peak_mib()}


def null_pipeline(args: argparse.Namespace) -> dict:
    """``detect`` with :class:`NullModel` on the ``--ratio-size`` pair: what the pipeline feeds."""
    from sam_cd_plugin.engine.detector import DetectionOptions

    size = args.ratio_size
    before, after = synthetic_pair(size, Path(args.workdir))
    detector = make_detector(args)
    batch = detector.batch_size(detector.input_size, args.batch_size)
    opts = DetectionOptions(overlap=args.overlap, batch_size=batch, readers=args.readers)
    runs = [detector.detect(before, after, Path(args.workdir) / "null_change.tif", opts)
            for _ in range(args.repeats)]
    seconds = float(np.median([r.seconds for r in runs]))
    return {"null_model": True, "size": size, "tiles": runs[0].tiles, "batch": batch,
            "readers": detector.reader_threads(args.readers), "runs_s": [r.seconds for r in runs],
            "seconds": seconds, "tiles_per_s": runs[0].tiles / seconds,
            "mpx_per_s": size * size / 1e6 / seconds, "device": detector.device_description,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ratio(args: argparse.Namespace, size: int) -> dict:
    """Pipeline vs bare forward on the same tiles (all read into memory first)."""
    import torch

    from sam_cd_plugin.core.alignment import AlignedPair
    from sam_cd_plugin.core.tiling import grid_origin, lattice_tiles
    from sam_cd_plugin.engine.detector import DetectionOptions, batches_of
    from sam_cd_plugin.engine.tile_reader import read_batch

    before, after = synthetic_pair(size, Path(args.workdir))
    detector = make_detector(args)
    tile = detector.input_size
    overlap = min(args.overlap, tile // 2)
    batch = detector.batch_size(tile, args.batch_size)
    with AlignedPair(before, after) as pair:
        tiles = lattice_tiles(pair.width, pair.height, tile, overlap, grid_origin(pair.geotransform))
        batches = [read_batch(pair, b) for b in batches_of(tiles, batch)]

    def model_only() -> float:
        if detector.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for b in batches:
            detector.predict(b.before, b.after)
        if detector.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    def model_on_device() -> float:
        """The bare forward on device-resident normalised tiles (no transfer at all)."""
        resident = [(detector._to_device("b", b.before), detector._to_device("a", b.after))
                    for b in batches if len(b.work)]
        sync = torch.cuda.synchronize if detector.device.type == "cuda" else (lambda: None)
        with torch.inference_mode(), detector._amp():
            sync()
            t = time.perf_counter()
            for b, a in resident:
                detector.model(b, a)
            sync()
        return time.perf_counter() - t

    detector.predict(batches[0].before, batches[0].after)  # warm-up
    out = Path(args.workdir) / "ratio_change.tif"
    opts = DetectionOptions(overlap=overlap, batch_size=batch, readers=args.readers, probability_path=(
        Path(args.workdir) / "ratio_prob.tif" if args.ratio_probability else None))
    # interleaved (model, pipeline, model, ...): slow drifts of a shared machine hit both
    models, pipelines, resident = [model_only()], [], []
    for _ in range(args.repeats):
        pipelines.append(detector.detect(before, after, out, opts).seconds)
        models.append(model_only())
        if args.device_resident:
            resident.append(model_on_device())
    model, pipeline = float(np.median(models)), float(np.median(pipelines))
    row = {"size": size, "tiles": len(tiles), "batch": batch, "model_s": model,
           "model_runs_s": models, "pipeline_runs_s": pipelines, "pipeline_s": pipeline,
           "ratio": model / pipeline, "readers": detector.reader_threads(args.readers),
           "model_tiles_per_s": len(tiles) / model, "pipeline_tiles_per_s": len(tiles) / pipeline,
           "with_probability": bool(args.ratio_probability),
           "device": detector.device_description, "peak_gpu_mib": gpu_peak_mib()}
    if resident:
        row["model_resident_s"] = float(np.median(resident))
        row["ratio_to_resident"] = row["model_resident_s"] / pipeline
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=SIZES, help="comma-separated raster sizes (px)")
    p.add_argument("--ratio-size", type=int, default=2048)
    p.add_argument("--checkpoint", default=str(REPO / "resources" / "checkpoints" / "sam_cem_cd_fastsam-s.pt"))
    p.add_argument("--device", default="auto")
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="torch CPU threads, the same in every part (default: all CPUs)")
    p.add_argument("--workdir", default="/tmp/samcd_bench")
    p.add_argument("--skip-ratio", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="pipeline runs in the ratio (medians)")
    p.add_argument("--ratio-probability", action="store_true",
                   help="the ratio's pipeline also writes the float32 probability raster")
    p.add_argument("--readers", type=int, default=None,
                   help="reader threads (default: the detector's choice, 8 on CUDA, 1 on the CPU)")
    p.add_argument("--null-model", action="store_true",
                   help="only the pipeline's ceiling: detect with a model that returns zeros at once")
    p.add_argument("--no-probability", action="store_true",
                   help="the --sizes runs write the mask only")
    p.add_argument("--device-resident", action="store_true",
                   help="the ratio also times the bare forward on device-resident tiles")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)  # ultralytics exports OMP_NUM_THREADS=1 to children
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.child is not None:
        from sam_cd_plugin.engine.memory import allow_pinning

        allow_pinning()  # as the engine worker does: peak RSS as the worker has it
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return 0
    if args.null_model and args.sizes == SIZES:  # the ceiling alone
        row = null_pipeline(args)
        print(f"null model on {row['size']}² ({row['tiles']} tiles, batch {row['batch']}, "
              f"{row['readers']} reader(s), {row['device']}): {row['seconds']:.2f} s, "
              f"{row['tiles_per_s']:.0f} tiles/s, {row['mpx_per_s']:.1f} Mpx/s", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(row, indent=2))
        return 0

    results: dict = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                                f"{os.cpu_count()} CPUs, {platform.python_version()}", "sizes": [], "threads": args.threads}
    if not args.skip_ratio and not args.null_model:
        results["ratio"] = r = ratio(args, args.ratio_size)
        what = "mask + probability" if r["with_probability"] else "mask"
        print(f"ratio ({what}) on {r['size']}² ({r['tiles']} tiles, batch {r['batch']}, {r['device']}): model "
              f"{r['model_s']:.1f} s, pipeline {r['pipeline_s']:.1f} s -> {r['ratio']:.2f}", flush=True)
    for size in [int(s) for s in args.sizes.split(",") if s]:
        synthetic_pair(size, Path(args.workdir))  # build outside the measured child
        cmd = [sys.executable, __file__, "--child", str(size), "--checkpoint", args.checkpoint,
               "--device", args.device, "--overlap", str(args.overlap), "--workdir", args.workdir,
               "--threads", str(args.threads)]
        cmd += [flag for flag, on in (("--null-model", args.null_model),
                                      ("--no-probability", args.no_probability)) if on]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        if args.readers:
            cmd += ["--readers", str(args.readers)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        row = json.loads(line[len("RESULT "):])
        results["sizes"].append(row)
        gpu = f", peak GPU {row['peak_gpu_mib']:.0f} MiB" if row["peak_gpu_mib"] is not None else ""
        print(f"{size}²: {row['seconds']:.1f} s, {row['tiles']} tiles, {row['mpx_per_s']:.2f} Mpx/s, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB{gpu} ({row['device']})", flush=True)
    print("\n| raster | tiles | time (s) | Mpx/s | peak RSS (MiB) |\n|---|---|---|---|---|")
    for row in results["sizes"]:
        print(f"| {row['size']}² | {row['tiles']} | {row['seconds']:.1f} | {row['mpx_per_s']:.2f} | "
              f"{row['peak_rss_mib']:.0f} |")
    if len(results["sizes"]) > 1:
        first, last = min(results["sizes"], key=lambda r: r["size"]), max(results["sizes"], key=lambda r: r["size"])
        print(f"\npeak RSS {last['size']}² / {first['size']}²: {last['peak_rss_mib'] / first['peak_rss_mib']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
