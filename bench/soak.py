"""Soak benchmark: many detections back to back in one QGIS process; does memory grow?

Runs ``processing.run("sam_cd:detectchanges")`` COUNT times in one process with QGIS initialised
(QgsApplication + Processing + the sam_cd provider), on a small real pair (default: the bundled
Sentinel-2 demo pair, bands 3,2,1), each run writing a fresh mask + probability raster that is
deleted afterwards. Reports resident memory (RSS) and, on CUDA, allocated/reserved GPU memory
after QGIS start-up, after the first (warm-up) run and at the end, plus the growth from the
warm-up to the end (the first run imports torch and allocates the model's caches: that is not a
leak). Not a test: a measurement, printed as a table and one JSON line.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/soak.py --count 200
    # options: --checkpoint model.pt --before a.tif --after b.tif --bands 3,2,1 --device cpu
    #          --max-seconds 900 (stop early, reporting how many runs were done)
    #          --engine worker|inprocess (the transport, as SAM_CD_ENGINE)
    #          --cold (free the engine's models before every run: each run builds the network and
    #          reads the checkpoint again, as every run did before the engine kept its models)

The seconds of each run are printed too (``run_seconds`` in the JSON): with ``--count 10`` that is
the batch benchmark of ``bench/README.md`` (runs 2-10 against run 1, warm against ``--cold``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"
for extra in (str(REPO), QGIS_PYTHON_PLUGINS):
    if extra not in sys.path:
        sys.path.append(extra)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".ultralytics"))


@dataclass
class Sample:
    runs: int
    seconds: float
    rss_mib: float
    gpu_allocated_mib: float | None
    gpu_reserved_mib: float | None


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 ** 2
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 1024 ** 2


def sample(runs: int, started: float) -> Sample:
    gc.collect()
    allocated = reserved = None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            allocated = torch.cuda.memory_allocated() / 1024 ** 2
            reserved = torch.cuda.memory_reserved() / 1024 ** 2
    return Sample(runs, time.perf_counter() - started, rss_mib(), allocated, reserved)


def growth(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else 100.0 * (b - a) / a


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--before", type=Path, default=REPO / "resources" / "demo" / "before.tif")
    p.add_argument("--after", type=Path, default=REPO / "resources" / "demo" / "after.tif")
    p.add_argument("--bands", default="3,2,1")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled one")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--every", type=int, default=10, help="print a sample every N runs")
    p.add_argument("--max-seconds", type=float, default=None, help="stop early after this long")
    p.add_argument("--engine", choices=("auto", "worker", "inprocess"), default="auto")
    p.add_argument("--cold", action="store_true", help="free the cached models before every run")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    os.environ["SAM_CD_ENGINE"] = args.engine
    if args.engine == "worker":
        os.environ.setdefault("SAM_CD_ENGINE_PYTHON", sys.executable)
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import processing

    from sam_cd_plugin.engine.service import get_engine, shutdown_engine
    from sam_cd_plugin.processing.provider import PROVIDER_ID, SamCdProvider

    provider = SamCdProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    work = Path(tempfile.mkdtemp(prefix="samcd-soak-"))
    started = time.perf_counter()
    samples = [sample(0, started)]
    try:
        before, after = work / "before.tif", work / "after.tif"  # never touch the originals
        shutil.copyfile(args.before, before)
        shutil.copyfile(args.after, after)
        params = {"BEFORE": str(before), "AFTER": str(after), "DEVICE": args.device, "THRESHOLD": 0.5,
                  "BANDS_BEFORE": args.bands, "BANDS_AFTER": args.bands}
        if args.checkpoint:
            params["CHECKPOINT"] = str(args.checkpoint)
        done = 0
        run_seconds: list[float] = []
        for i in range(1, args.count + 1):
            out, prob = work / f"change_{i}.tif", work / f"probability_{i}.tif"
            if args.cold:
                get_engine().free_models()
            run_start = time.perf_counter()
            result = processing.run("sam_cd:detectchanges",
                                    {**params, "OUTPUT": str(out), "OUTPUT_PROBABILITY": str(prob)})
            run_seconds.append(round(time.perf_counter() - run_start, 2))
            del result
            for path in work.glob(f"*_{i}.*"):
                path.unlink()
            done = i
            if i == 1 or i % args.every == 0 or i == args.count:
                samples.append(sample(i, started))
                s = samples[-1]
                print(f"run {i:4d}  {s.seconds:7.1f} s (this run {run_seconds[-1]:.2f} s)  RSS {s.rss_mib:8.1f} MiB"
                      + (f"  GPU {s.gpu_allocated_mib:.1f}/{s.gpu_reserved_mib:.1f} MiB"
                         if s.gpu_allocated_mib is not None else ""), flush=True)
            if args.max_seconds and time.perf_counter() - started > args.max_seconds:
                break
        if samples[-1].runs != done:
            samples.append(sample(done, started))
        stats = get_engine().stats()
    finally:
        QgsApplication.processingRegistry().removeProvider(PROVIDER_ID)
        shutdown_engine()
        shutil.rmtree(work, ignore_errors=True)
    start, warm, end = samples[0], samples[1], samples[-1]
    report = {
        "runs": end.runs, "requested": args.count, "seconds": round(end.seconds, 1),
        "engine": args.engine, "cold": args.cold, "run_seconds": run_seconds,
        "engine_model_loads": stats["model_loads"],
        "seconds_per_run_after_warmup": round((end.seconds - warm.seconds) / max(1, end.runs - 1), 2),
        "rss_mib": {"qgis_started": round(start.rss_mib, 1), "after_first_run": round(warm.rss_mib, 1),
                    "end": round(end.rss_mib, 1), "max": round(max(s.rss_mib for s in samples), 1)},
        "rss_growth_pct_after_warmup": round(growth(warm.rss_mib, end.rss_mib), 2),
        "gpu_allocated_mib": None if end.gpu_allocated_mib is None else
        {"after_first_run": round(warm.gpu_allocated_mib, 1), "end": round(end.gpu_allocated_mib, 1)},
        "gpu_reserved_growth_pct_after_warmup": growth(warm.gpu_reserved_mib, end.gpu_reserved_mib),
        "samples": [asdict(s) for s in samples],
    }
    print(json.dumps(report))
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
