#!/usr/bin/env python3
"""Feeding the GPU (issue 14), all in one run: a script, not a test. Needs torch and GDAL's Python
bindings (``osgeo``); on a GPU image without them, carry the binary wheel along:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 -d .whl gdal-wheel==3.13.3
    pip install --no-deps .whl/gdal_wheel-*.whl      # on the GPU machine (provides osgeo)

What it runs (each part through ``bench/bench_pipeline.py``, in its own process):

1. the pipeline's ceiling: ``--null-model`` (a model returning zeros at once) on a
   ``--null-size``² pair for 1, 2, 4, 8 and 16 reader threads (tiles/s);
2. for SAM-CEM-CD on FastSAM-s (the bundled checkpoint) and FastSAM-x (randomly initialised,
   same architecture and cost as a trained one): the model-only rate on the ``--ratio-size``²
   tiles (``predict`` from host arrays, and the bare forward on device-resident tiles), the
   pipeline on the same pair, and end-to-end ``detect`` (mask only) on a ``--size``² pair
   (default 10 000², 100 Mpx): seconds, Mpx/s, tiles/s, the ratio of end-to-end tiles/s to the
   model-only rates, peak RSS and peak GPU memory.

Pairs are the LEVIR-CD 1024² pair mirror-tiled (as ``bench_pipeline.py`` builds them).
``--dry-run``: the same steps on the CPU at small sizes (checks the script, measures nothing).
Prints a Markdown table and writes every figure to ``--json``.

Usage: ``python bench/gpu_feed.py [--json OUT] [--size 10000] [--dry-run]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PIPELINE = REPO / "bench" / "bench_pipeline.py"
BUNDLED = REPO / "resources" / "checkpoints" / "sam_cem_cd_fastsam-s.pt"
READERS = (1, 2, 4, 8, 16)


def checkpoint(encoder: str, workdir: Path) -> Path:
    """The bundled FastSAM-s checkpoint, or a randomly initialised one of ``encoder``."""
    if encoder == "fastsam-s":
        return BUNDLED
    path = workdir / f"random_sam_cem_cd_{encoder}.pt"
    if not path.exists():
        import torch

        from sam_cd_plugin.models.checkpoint import save_checkpoint
        from sam_cd_plugin.models.registry import build_model

        torch.manual_seed(0)
        meta = {"method": "sam-cem-cd", "encoder": encoder, "delta": 0.3, "input_size": 256,
                "training": {"data": [], "note": "random initialisation, for benchmarks"},
                "metrics": {}}
        save_checkpoint(path, build_model(meta).eval(), meta)
    return path


def pipeline(args: argparse.Namespace, *options: str) -> dict:
    """Run ``bench_pipeline.py`` with ``options``; its JSON."""
    out = Path(args.workdir) / "part.json"
    cmd = [sys.executable, str(PIPELINE), "--device", args.device, "--workdir", args.workdir,
           "--json", str(out), *options]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=True, check=False)
    print(proc.stdout.strip(), flush=True)
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"bench_pipeline.py failed ({proc.returncode})")
    return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=10000, help="end-to-end raster size (px)")
    p.add_argument("--ratio-size", type=int, default=4096, help="model-only vs pipeline pair (px)")
    p.add_argument("--null-size", type=int, default=8192, help="null-model pair (px)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--encoders", default="fastsam-s,fastsam-x")
    p.add_argument("--readers", default=",".join(map(str, READERS)))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--workdir", default="/tmp/samcd_bench")
    p.add_argument("--dry-run", action="store_true", help="CPU, small sizes: checks the script only")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.dry_run:
        args.device, args.size, args.ratio_size, args.null_size = "cpu", 640, 384, 1024
        args.batch_size, args.repeats, args.readers, args.threads = 4, 1, "1,2", 1
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python "
                                f"{platform.python_version()}", "dry_run": args.dry_run,
                     "null_model": [], "models": []}
    try:
        import torch

        results["torch"] = torch.__version__
        if torch.cuda.is_available():
            results["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - reported by bench_pipeline.py too
        pass
    common = ["--batch-size", str(args.batch_size), "--overlap", "64"]
    for n in (int(r) for r in args.readers.split(",")):
        results["null_model"].append(pipeline(
            args, "--null-model", "--readers", str(n), "--ratio-size", str(args.null_size),
            "--repeats", str(args.repeats), *common))
    for encoder in args.encoders.split(","):
        ckpt = checkpoint(encoder, Path(args.workdir))
        row = pipeline(args, "--checkpoint", str(ckpt), "--ratio-size", str(args.ratio_size),
                       "--sizes", str(args.size), "--no-probability", "--device-resident",
                       "--repeats", str(args.repeats), *common)
        ratio, e2e = row["ratio"], row["sizes"][0]
        row.update(encoder=encoder,
                   e2e_vs_predict=e2e["tiles_per_s"] / ratio["model_tiles_per_s"],
                   e2e_vs_resident=(e2e["tiles"] / e2e["seconds"]) /
                   (ratio["tiles"] / ratio["model_resident_s"]))
        results["models"].append(row)
    print(f"\n{results.get('gpu', 'no GPU')} — {results['machine']}\n")
    print("| null model: readers | tiles/s | Mpx/s |\n|---|---|---|")
    for r in results["null_model"]:
        print(f"| {r['readers']} | {r['tiles_per_s']:.0f} | {r['mpx_per_s']:.1f} |")
    print("\n| SAM-CEM-CD on | model-only tiles/s (predict / resident) | pipeline / model "
          f"({args.ratio_size}²) | end-to-end {args.size}² s | Mpx/s | tiles/s | e2e / predict | "
          "e2e / resident | peak RSS MiB | peak GPU MiB |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in results["models"]:
        q, e = r["ratio"], r["sizes"][0]
        gpu = f"{e['peak_gpu_mib']:.0f}" if e["peak_gpu_mib"] is not None else "—"
        print(f"| {r['encoder']} | {q['model_tiles_per_s']:.0f} / "
              f"{q['tiles'] / q['model_resident_s']:.0f} | {q['ratio']:.2f} | {e['seconds']:.1f} | "
              f"{e['mpx_per_s']:.1f} | {e['tiles_per_s']:.0f} | {r['e2e_vs_predict']:.2f} | "
              f"{r['e2e_vs_resident']:.2f} | {e['peak_rss_mib']:.0f} | {gpu} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
