"""``detect --dask`` against a real ``dask scheduler`` and ``dask worker`` on loopback: without the
package on the cluster, one clear error saying what every machine needs; with the wheel
installed in the cluster's venv, the local run's pixels."""
from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from samcd_package_helpers import venv_with
from sam_cd_plugin.core.errors import DependencyError
from sam_cd_plugin.core.raster import read_image
from sam_cd_plugin.runtime.location import venv_python
from sam_cd_plugin.runtime.pip_runner import child_environment

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"
OPTIONS = dict(bands_before=[3, 2, 1], bands_after=[3, 2, 1], overlap=32, batch_size=2, threshold=0.45)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dask_cluster(python: Path, cwd: Path):
    """``dask scheduler`` + one ``dask worker`` (one thread) run by ``python`` in ``cwd``."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    # One torch thread in the worker, as in the local run below: equal thread counts, equal bits.
    env = child_environment({"OMP_NUM_THREADS": "1"})
    logs = cwd / "dask.log"
    with open(logs, "w") as log:
        scheduler = subprocess.Popen([str(python), "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                                      address.rsplit(":", 1)[1], "--no-dashboard"], cwd=cwd, env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        worker = subprocess.Popen([str(python), "-m", "dask", "worker", address, "--nthreads", "1", "--no-nanny",
                                   "--no-dashboard", "--host", "127.0.0.1"], cwd=cwd, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            with Client(address, timeout="60s") as client:
                client.wait_for_workers(1, timeout=90)
            yield address
        finally:
            for proc in (worker, scheduler):
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def local_run(detector, out: Path):
    import torch

    from sam_cd_plugin.engine.detector import DetectionOptions

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return detector.detect(DEMO / "before.tif", DEMO / "after.tif", out,
                               DetectionOptions(probability_path=out.with_name("local_p.tif"), **OPTIONS))
    finally:
        torch.set_num_threads(threads)


def test_cluster_without_the_package_says_what_every_machine_needs(tiny_checkpoint, tmp_path):
    from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

    detector = ChangeDetector(tiny_checkpoint, "cpu")
    with dask_cluster(Path(sys.executable), tmp_path) as address:  # this venv lacks sam_cd_plugin
        with pytest.raises(DependencyError) as err:
            detector.detect(DEMO / "before.tif", DEMO / "after.tif", tmp_path / "c.tif",
                            DetectionOptions(dask_scheduler=address, **OPTIONS))
    message = str(err.value)
    assert "The scheduler and worker tcp://127.0.0.1:" in message and "cannot import sam_cd_plugin" in message
    assert "every worker need the sam-cd package" in message and "[engine,dask]" in message
    assert not (tmp_path / "c.tif").exists()


def test_cluster_with_the_wheel_gives_the_local_pixels(wheel, tiny_checkpoint, tmp_path):
    from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

    venv = venv_with(wheel, tmp_path / "venv", see_test_packages=True)
    python = venv_python(venv)
    where = subprocess.run([str(python), "-c", "import sam_cd_plugin; print(sam_cd_plugin.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True, env=child_environment())
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the wheel's copy, not this checkout
    detector = ChangeDetector(tiny_checkpoint, "cpu")
    local = local_run(detector, tmp_path / "local.tif")
    with dask_cluster(python, tmp_path) as address:
        remote = detector.detect(DEMO / "before.tif", DEMO / "after.tif", tmp_path / "dask.tif",
                                 DetectionOptions(probability_path=tmp_path / "dask_p.tif",
                                                  dask_scheduler=address, **OPTIONS))
    np.testing.assert_array_equal(read_image(tmp_path / "dask.tif"), read_image(tmp_path / "local.tif"))
    np.testing.assert_array_equal(read_image(tmp_path / "dask_p.tif"), read_image(tmp_path / "local_p.tif"))
    assert (remote.changed_pixels, remote.valid_pixels) == (local.changed_pixels, local.valid_pixels)
