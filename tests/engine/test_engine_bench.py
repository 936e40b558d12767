"""``bench``: timings per encoder × method; runs with torch and the models only (no GDAL/open_clip)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sam_cd_plugin.core.errors import InputError
from sam_cd_plugin.engine.model_bench import BenchConfig, format_bench, run_bench

REPO = Path(__file__).resolve().parents[2]


def test_bench_rows_and_ratios():
    report = run_bench(BenchConfig(encoders=["fastsam-s"], methods=["sam-cem-cd", "sam2-cd"],
                                   sizes=[64, 96], repeats=1, warmup=0, device="cpu"))
    rows = {(r.method, r.size): r for r in report.rows}
    assert set(rows) == {(m, s) for m in ("encoder", "sam-cem-cd", "sam2-cd") for s in (64, 96)}
    for (method, size), row in rows.items():
        assert row.skipped is None and row.pairs_per_s > 0 and row.ms_per_batch > 0
        base = rows[("encoder", size)]
        assert row.ratio == pytest.approx(row.ms_per_batch / base.ms_per_batch)
    text = format_bench(report)
    assert "| fastsam-s | sam2-cd | 96 | 1 |" in text and report.device.startswith("CPU")


def test_bench_rejects_bad_settings():
    with pytest.raises(InputError, match="sam-cem-cd"):
        run_bench(BenchConfig(methods=["nope"], device="cpu"))
    with pytest.raises(InputError, match="multiples of 32"):
        run_bench(BenchConfig(sizes=[100], device="cpu"))


def test_bench_cli_runs_without_gdal_and_open_clip():
    """The GPU box has torch but neither GDAL nor open_clip: bench must not import them, and
    commands that need GDAL say so instead of breaking the whole CLI."""
    code = ("import sys; sys.modules['osgeo'] = None; sys.modules['open_clip'] = None\n"
            "from sam_cd_plugin.cli import main\n"
            "raise SystemExit(main(['bench', '--device', 'cpu', '--encoders', 'fastsam-s', "
            "'--methods', 'sam-cd,sam-cd+prompts', '--sizes', '64', '--repeats', '1', '--json']))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)["rows"]
    by_method = {r["method"]: r for r in rows}
    assert by_method["sam-cd"]["pairs_per_s"] > 0
    assert by_method["sam-cd+prompts"]["pairs_per_s"] is None
    assert "open_clip" in by_method["sam-cd+prompts"]["skipped"]
    assert "osgeo" not in done.stderr
    detect = subprocess.run([sys.executable, "-c", code.split("raise")[0] + "raise SystemExit(main("
                             "['detect', 'a.tif', 'b.tif', 'c.tif']))"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert detect.returncode == 2 and "osgeo" in detect.stderr  # says what is missing
