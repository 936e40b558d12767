"""sam_cd:detectchanges headless through the qgis_process executable.

The commands these tests run, for a source checkout on Debian/Ubuntu (copy for the README):

    # once: a plugin folder holding the packaged plugin (`make package` + unzip, or any QGIS
    # profile's python/plugins folder), and enable it in the QGIS profile qgis_process uses
    export QT_QPA_PLATFORM=offscreen
    export QGIS_PLUGINPATH=/path/to/folder/containing/sam_cd_plugin
    export PYTHONPATH=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    #   ^ the venv's site-packages (here .venv/lib/python3.11/site-packages): torch + ultralytics
    /usr/bin/qgis_process.bin plugins enable sam_cd_plugin
    # every run
    /usr/bin/qgis_process.bin run sam_cd:detectchanges -- \
        BEFORE=before.tif AFTER=after.tif DEVICE=auto THRESHOLD=0.5 OUTPUT=change.tif
    # optional: CHECKPOINT=model.pt OUTPUT_PROBABILITY=probability.tif BANDS_BEFORE=3,2,1 ...
    # add --json before `run` for machine-readable results

Use ``qgis_process.bin`` on Debian: the ``/usr/bin/qgis_process`` wrapper script passes a flag
the 3.22 binary rejects. Elsewhere (OSGeo4W, macOS, QGIS >= 3.34 packages) plain ``qgis_process``
works the same way. Without QGIS_PLUGINPATH the plugin is found in the profile's plugins folder.
QGIS_CUSTOM_CONFIG_PATH (used below to keep the tests out of the user's profile) is optional.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from samcd_qgis_helpers import ALGORITHM_ID, QGIS_PROCESS, gdal_array, qgis_process_env, summarize_raster


@pytest.fixture(scope="module")
def qgis_process(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Runs qgis_process with the plugin enabled in a throw-away QGIS profile; returns a runner."""
    if not Path(QGIS_PROCESS).is_file():
        found = shutil.which("qgis_process")
        assert found, "qgis_process not found"
        executable = found
    else:
        executable = QGIS_PROCESS
    env = qgis_process_env(plugin_dir, tmp_path_factory.mktemp("qgis_profile"))

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([executable, *args], env=env, capture_output=True, text=True, timeout=timeout)

    enabled = run("plugins", "enable", "sam_cd_plugin")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return run


def test_plugin_is_listed_and_enabled(qgis_process) -> None:
    listing = qgis_process("plugins")
    assert listing.returncode == 0
    assert "* sam_cd_plugin" in listing.stdout  # '*' = loaded Processing plugin
    help_text = qgis_process("help", ALGORITHM_ID)
    assert help_text.returncode == 0, help_text.stderr
    for name in ("BEFORE", "AFTER", "CHECKPOINT", "THRESHOLD", "DEVICE", "OUTPUT", "OUTPUT_PROBABILITY"):
        assert f"{name}:" in help_text.stdout


def test_run_headless(qgis_process, norcia, tiny_checkpoint, tmp_path) -> None:
    out = tmp_path / "change.tif"
    done = qgis_process(
        "--json", "run", ALGORITHM_ID, "--",
        f"BEFORE={norcia.before}", f"AFTER={norcia.after}", f"CHECKPOINT={tiny_checkpoint}",
        "DEVICE=cpu", "THRESHOLD=0.5", "OVERLAP=32", f"OUTPUT={out}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)  # stdout must be pure JSON for scripts
    assert report["algorithm_details"]["id"] == ALGORITHM_ID
    assert Path(report["results"]["OUTPUT"]) == out

    mask, before = summarize_raster(out), summarize_raster(norcia.before)
    assert (mask.crs_authid, mask.width, mask.height, mask.geotransform) == (
        before.crs_authid, before.width, before.height, before.geotransform)
    values, nodata, _ = gdal_array(out)
    assert nodata == 255 and set(np.unique(values)) <= {0, 1, 255}
    assert report["results"]["CHANGED_PIXELS"] == int((values == 1).sum())
    assert out.with_suffix(".qml").is_file()


def test_errors_give_a_nonzero_exit_and_the_message(qgis_process, norcia, tmp_path) -> None:
    missing = tmp_path / "missing_model.pt"
    done = qgis_process(
        "run", ALGORITHM_ID, "--",
        f"BEFORE={norcia.before}", f"AFTER={norcia.after}", f"CHECKPOINT={missing}", f"OUTPUT={tmp_path / 'c.tif'}",
    )
    assert done.returncode != 0
    assert "missing_model.pt" in done.stdout + done.stderr
    assert not (tmp_path / "c.tif").exists()
