"""The bad-input matrix: every case through every front end that applies.

Rows (:data:`CASES`) are inputs a real user can produce; columns are the front ends: the engine
API (``ChangeDetector.detect``), ``processing.run("sam_cd:detectchanges")``, the ``qgis_process``
executable and the CLI (``python -m sam_cd_plugin detect``; exit code 2 and ``error: ...``).
The subprocess front ends cost seconds per call, so they run a representative subset.

Every row asserts:

* a failing case raises the right error (engine: the :mod:`~sam_cd_plugin.core.errors` class;
  Processing: ``QgsProcessingException``; subprocesses: a non-zero exit that is not a crash)
  whose message holds the row's key words — what went wrong and what to do;
* the process is alive and usable afterwards (QGIS still answers; no signal, no traceback);
* no output, temporary file or sidecar is left, and a pre-existing file at the output path is
  untouched;
* the inputs are byte-for-byte untouched (sha256 of every file in the inputs folder);
* a case that is valid input succeeds, and nodata pixels are 255 in the mask.
"""
from __future__ import annotations

import contextlib
import errno
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, gdal_array, ogr, osr

from hardening_helpers import IS_ROOT, REPO_ROOT, Workspace, full_disk, read_only_folder, snapshot
from sam_cd_plugin.core.alignment import AlignedPair
from sam_cd_plugin.core.errors import CancelledError, InputError, OutputError, SamCdError
from sam_cd_plugin.engine.detector import ChangeDetector, DetectionOptions

gdal.UseExceptions()

ENGINE, PROCESSING, QGIS_PROCESS, CLI = "engine", "processing", "qgis_process", "cli"
IN_PROCESS = (ENGINE, PROCESSING)
#: Rows whose Processing run only passes the engine's message through (each run there builds a
#: model, seconds on a busy 2-core CI): the engine proves them, the other rows prove the pass-through.
ENGINE_ONLY = (ENGINE,)
ALL = (ENGINE, PROCESSING, QGIS_PROCESS, CLI)
ALGORITHM_ID = "sam_cd:detectchanges"
#: 100x90 crops in 64 px tiles with a 16 px overlap: 4 tiles, 2 CPU batches (cancel mid-run).
SMALL_TILES = 64
OVERLAP = 16


# ----------------------------------------------------------------------------- run description
@dataclass
class Run:
    """One detection request, independent of the front end that makes it."""

    before: Path
    after: Path
    out: Path
    threshold: float = 0.5
    tile_size: int | None = None
    bands_before: tuple[int, ...] | None = None
    bands_after: tuple[int, ...] | None = None
    probability: Path | None = None
    cancel: str | None = None  # "start" | "reading" | "batches" | "finalisation"
    watch: tuple[Path, ...] = ()  # extra folders that must stay free of outputs


@dataclass
class Outcome:
    ok: bool
    message: str = ""
    error: type | None = None


@dataclass(frozen=True)
class Case:
    """A row: how to build the request, and what must come out of it."""

    id: str
    build: Callable[["Env"], Run]
    error: type[SamCdError] | None  # None: valid input, must succeed
    words: tuple[str, ...] = ()
    fronts: tuple[str, ...] = IN_PROCESS
    qgis_words: tuple[str, ...] | None = None  # when QGIS validates a parameter before the algorithm
    check: Callable[[np.ndarray, Run], None] | None = None


@dataclass
class Env:
    ws: Workspace
    stack: contextlib.ExitStack
    monkeypatch: pytest.MonkeyPatch
    front: str

    def pair(self) -> tuple[Path, Path]:
        return self.ws.copy("before"), self.ws.copy("after")

    def run(self, before: Path | None = None, after: Path | None = None, **kw) -> Run:
        b, a = (before, after) if before and after else self.pair()
        kw.setdefault("out", self.ws.outputs / "change.tif")
        return Run(before=b, after=a, **kw)


# ----------------------------------------------------------------------------- input builders
def _write_geojson(path: Path) -> Path:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds = ogr.GetDriverByName("GeoJSON").CreateDataSource(str(path))
    layer = ds.CreateLayer("parcels", srs, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POLYGON ((13.07 42.80,13.08 42.80,13.08 42.81,13.07 42.80))"))
    layer.CreateFeature(feature)
    feature = layer = ds = None
    return path


def _fill(path: Path, fn: Callable[[int, np.ndarray], np.ndarray], nodata: float | None = None) -> Path:
    ds = gdal.Open(str(path), gdal.GA_Update)
    try:
        for i in range(1, ds.RasterCount + 1):
            band = ds.GetRasterBand(i)
            band.WriteArray(fn(i, band.ReadAsArray()))
            if nodata is not None:
                band.SetNoDataValue(nodata)
            del band
    finally:
        ds = None
    return path


def missing_input(env: Env) -> Run:
    return env.run(env.ws.inputs / "no_such_before.tif", env.ws.copy("after"))


def unreadable_input(env: Env) -> Run:
    if IS_ROOT:
        pytest.skip("running as root: file permissions cannot make a file unreadable")
    before = env.ws.copy("before")
    before.chmod(0)
    env.stack.callback(before.chmod, 0o644)
    return env.run(before, env.ws.copy("after"))


def folder_as_raster(env: Env) -> Run:
    folder = env.ws.inputs / "scene.tif"
    folder.mkdir()
    return env.run(folder, env.ws.copy("after"))


def vector_as_raster(env: Env) -> Run:
    return env.run(_write_geojson(env.ws.inputs / "parcels.geojson"), env.ws.copy("after"))


def corrupt_header(env: Env) -> Run:
    bad = env.ws.inputs / "corrupt.tif"
    data = bytearray(env.ws.copy("before", "good.tif").read_bytes())
    data[4:8] = b"\xff\xff\xff\x7f"  # offset of the first image directory: far past the end
    bad.write_bytes(bytes(data))
    return env.run(bad, env.ws.copy("after"))


def truncated_pixels(env: Env) -> Run:
    """8-bit, so no statistics pass reads it first: the damage is met while reading tiles."""
    whole = env.ws.translate("before", "whole8.tif", outputType=gdal.GDT_Byte, scaleParams=[[]],
                             creationOptions=["TILED=NO", "COMPRESS=NONE"])
    cut = env.ws.inputs / "truncated.tif"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    return env.run(cut, env.ws.copy("after"))


def zero_size(env: Env) -> Run:
    vrt = env.ws.inputs / "empty.vrt"  # GDAL refuses to create a 0x0 GeoTIFF; a VRT can claim it
    vrt.write_text('<VRTDataset rasterXSize="0" rasterYSize="0">'
                   '<VRTRasterBand dataType="Byte" band="1"/></VRTDataset>')
    return env.run(vrt, env.ws.copy("after"))


def one_pixel(env: Env) -> Run:
    return env.run(env.ws.translate("before", "b1.tif", srcWin=[10, 10, 1, 1]),
                   env.ws.translate("after", "a1.tif", srcWin=[10, 10, 1, 1]))


def no_overlap(env: Env) -> Run:
    after = env.ws.copy("after")
    ds = gdal.Open(str(after), gdal.GA_Update)
    gt = list(ds.GetGeoTransform())
    gt[0] += 1.0  # one degree east: far outside the 100 px crop
    ds.SetGeoTransform(gt)
    ds = None
    return env.run(env.ws.copy("before"), after)


def _strip_georeferencing(path: Path) -> Path:
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.SetProjection("")
    ds.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    ds = None
    aux = path.with_name(path.name + ".aux.xml")
    if aux.exists():
        aux.unlink()
    return path


def crs_on_one_side(env: Env) -> Run:
    return env.run(env.ws.copy("before"), _strip_georeferencing(env.ws.copy("after")))


def no_crs_different_sizes(env: Env) -> Run:
    before = _strip_georeferencing(env.ws.copy("before"))
    after = _strip_georeferencing(env.ws.translate("after", "after_small.tif", srcWin=[0, 0, 80, 70]))
    return env.run(before, after)


def no_crs_same_size(env: Env) -> Run:
    return env.run(_strip_georeferencing(env.ws.copy("before")),
                   _strip_georeferencing(env.ws.copy("after")))


def all_nodata(env: Env) -> Run:
    before = _fill(env.ws.copy("before"), lambda i, a: np.zeros_like(a), nodata=0)
    return env.run(before, env.ws.copy("after"))


def nan_inf_float(env: Env) -> Run:
    def poison(_: int, a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32)
        a[:7] = np.nan
        a[:, :5] = np.inf
        a[40, 40] = -np.inf
        return a
    before = _fill(env.ws.translate("before", "float.tif", outputType=gdal.GDT_Float32), poison)
    return env.run(before, env.ws.copy("after"))


def check_nan_inf(mask: np.ndarray, _: Run) -> None:
    assert (mask[:7] == 255).all() and (mask[:, :5] == 255).all() and mask[40, 40] == 255
    assert set(np.unique(mask[7:, 5:][mask[7:, 5:] != 255])) <= {0, 1}
    assert (mask != 255).sum() == (90 - 7) * (100 - 5) - 1


def five_bands(env: Env, bands: tuple[int, ...] | None = None) -> Run:
    before = env.ws.translate("before", "five.tif", bandList=[1, 2, 3, 4, 1])
    return env.run(before, env.ws.copy("after"), bands_before=bands)


def one_band(env: Env) -> Run:
    return env.run(env.ws.translate("before", "grey.tif", bandList=[2]), env.ws.copy("after"))


def int16_negative(env: Env) -> Run:
    before = env.ws.translate("before", "int16.tif", outputType=gdal.GDT_Int16,
                              scaleParams=[[0, 3000, -2000, 2000]])
    ds = gdal.Open(str(before))
    assert ds.GetRasterBand(1).ReadAsArray().min() < 0
    ds = None
    return env.run(before, env.ws.copy("after"))


def nodata_border(env: Env) -> Run:
    def border(_: int, a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[:, :12] = 0
        return a
    return env.run(_fill(env.ws.copy("before"), border, nodata=0), env.ws.copy("after"))


def check_border(mask: np.ndarray, _: Run) -> None:
    assert (mask[:, :12] == 255).all()
    assert set(np.unique(mask[:, 12:])) <= {0, 1}


def all_valid(mask: np.ndarray, run: Run) -> None:
    assert set(np.unique(mask)) <= {0, 1}, "every pixel of these inputs is valid"


def readonly_output_folder(env: Env) -> Run:
    folder = env.stack.enter_context(read_only_folder(env.ws.root / "readonly"))
    return env.run(out=folder / "change.tif", watch=(folder,))


def disk_full_tmpfs(env: Env) -> Run:
    folder = env.stack.enter_context(full_disk(env.ws.outputs / "full"))
    return env.run(out=folder / "change.tif", probability=folder / "probability.tif",
                   tile_size=SMALL_TILES)


def disk_full_patched(env: Env) -> Run:
    """GDAL's second band write (the probability; the mask is written) fails with ENOSPC."""
    original = gdal_array.BandWriteArray
    calls = []

    def band_write_array(band, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(band, *args, **kwargs)

    run = env.run(probability=env.ws.outputs / "probability.tif")  # inputs first: building them writes too
    env.monkeypatch.setattr(gdal_array, "BandWriteArray", band_write_array)
    return run


def existing_output_kept(env: Env) -> Run:
    """A failing run must not replace or delete a finished file already at the output path."""
    out = env.ws.outputs / "change.tif"
    out.write_bytes(b"previous result")
    return env.run(env.ws.inputs / "missing.tif", env.ws.copy("after"), out=out)


def cancel_at(stage: str) -> Callable[[Env], Run]:
    def build(env: Env) -> Run:
        return env.run(tile_size=SMALL_TILES, probability=env.ws.outputs / "probability.tif",
                       cancel=stage)
    build.__name__ = f"cancel_{stage}"
    return build


CASES: list[Case] = [
    Case("missing_file", missing_input, InputError, ("not found", "no_such_before.tif", "check"), ALL),
    Case("unreadable_file", unreadable_input, InputError, ("cannot open",), (ENGINE, CLI)),
    Case("folder_as_raster", folder_as_raster, InputError, ("folder", "choose"), (ENGINE, CLI)),
    Case("vector_as_raster", vector_as_raster, InputError, ("vector", "raster", "parcels.geojson"), ALL),
    Case("corrupt_header", corrupt_header, InputError, ("corrupt.tif", "damaged"), (ENGINE, PROCESSING, CLI)),
    Case("truncated_pixels", truncated_pixels, InputError, ("truncated.tif", "damaged"), ENGINE_ONLY),
    Case("zero_size", zero_size, InputError, ("empty.vrt", "0"), IN_PROCESS),
    Case("one_pixel", one_pixel, None, check=all_valid, fronts=ENGINE_ONLY),
    Case("no_overlap", no_overlap, InputError, ("do not overlap", "same area"), ALL),
    Case("crs_on_one_side", crs_on_one_side, InputError, ("coordinate reference system", "assign"), ENGINE_ONLY),
    Case("no_crs_different_sizes", no_crs_different_sizes, InputError, ("different sizes", "georeference"),
         ENGINE_ONLY),
    Case("no_crs_same_size", no_crs_same_size, None, check=all_valid, fronts=ENGINE_ONLY),
    Case("all_nodata", all_nodata, InputError, ("no valid pixel", "nodata"), (ENGINE, PROCESSING, CLI)),
    Case("nan_inf_float", nan_inf_float, None, check=check_nan_inf, fronts=ENGINE_ONLY),
    Case("nodata_border", nodata_border, None, check=check_border, fronts=ENGINE_ONLY),
    Case("five_bands_default", five_bands, None, check=all_valid, fronts=ENGINE_ONLY),
    Case("five_bands_chosen", lambda env: five_bands(env, (3, 2, 1)), None, check=all_valid, fronts=ALL),
    Case("five_bands_two_chosen", lambda env: five_bands(env, (1, 2)), InputError, ("three bands",)),
    Case("band_out_of_range", lambda env: five_bands(env, (6, 2, 1)), InputError, ("band 6", "between 1 and 5"),
         ENGINE_ONLY),
    Case("one_band", one_band, None, check=all_valid),
    Case("int16_negative", int16_negative, None, check=all_valid, fronts=ENGINE_ONLY),
    Case("threshold_above_1", lambda env: env.run(threshold=1.5), InputError, ("threshold", "[0, 1]"),
         ALL, qgis_words=("threshold", "from 0 to 1")),
    Case("threshold_negative", lambda env: env.run(threshold=-0.1), InputError, ("threshold", "[0, 1]"),
         qgis_words=("threshold", "from 0 to 1")),
    Case("threshold_nan", lambda env: env.run(threshold=float("nan")), InputError, ("threshold", "[0, 1]"),
         ENGINE_ONLY),
    Case("tile_below_stride", lambda env: env.run(tile_size=16), InputError, ("tile size", "multiple of 32")),
    Case("tile_not_multiple", lambda env: env.run(tile_size=48), InputError, ("tile size", "multiple of 32"),
         ENGINE_ONLY),
    Case("output_folder_missing", lambda env: env.run(out=env.ws.root / "nowhere" / "change.tif"),
         OutputError, ("does not exist", "create"), (ENGINE, PROCESSING, CLI)),
    Case("output_folder_readonly", readonly_output_folder, OutputError, ("cannot write", "choose")),
    Case("output_same_as_input", lambda env: (lambda b, a: env.run(b, a, out=b))(*env.pair()),
         OutputError, ("also an input", "another output"), (ENGINE, PROCESSING, QGIS_PROCESS)),
    Case("output_is_folder", lambda env: env.run(out=env.ws.outputs), OutputError, ("folder", "file name"),
         qgis_words=("file name", ".tif")),
    Case("probability_same_as_output", lambda env: env.run(probability=env.ws.outputs / "change.tif"),
         OutputError, ("also an input", "another output"), ENGINE_ONLY),
    Case("existing_output_kept", existing_output_kept, InputError, ("not found",)),
    Case("disk_full_tmpfs", disk_full_tmpfs, OutputError, ("disk",), (ENGINE, PROCESSING, CLI)),
    Case("disk_full_patched_writer", disk_full_patched, OutputError, ("disk space",)),
    *[Case(f"cancel_{stage}", cancel_at(stage), CancelledError, ("cancel", "no output"),
           ENGINE_ONLY if stage == "reading" else IN_PROCESS)
      for stage in ("start", "reading", "batches", "finalisation")],
]


# ----------------------------------------------------------------------------- front ends
class Canceller:
    """Raises the cancel flag at one stage of a run (progress is a percentage)."""

    def __init__(self, stage: str | None, cancel: Callable[[], None]) -> None:
        self.stage = stage
        self._cancel = cancel
        self.progress_seen: list[float] = []
        if stage == "start":
            cancel()

    def on_progress(self, value: float) -> None:
        self.progress_seen.append(value)
        if (self.stage == "batches" and 0 < value < 100) or (self.stage == "finalisation" and value >= 100):
            self._cancel()

    def spy_reading(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Cancel from inside the first tile read (whatever thread reads)."""
        original = AlignedPair.read

        def read(pair, *args, **kwargs):
            self._cancel()
            return original(pair, *args, **kwargs)

        monkeypatch.setattr(AlignedPair, "read", read)


def run_engine(run: Run, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    detector: ChangeDetector = request.getfixturevalue("detector")
    flag = {"cancelled": False}
    canceller = Canceller(run.cancel, lambda: flag.update(cancelled=True))
    if run.cancel == "reading":
        canceller.spy_reading(monkeypatch)
    options = DetectionOptions(threshold=run.threshold, tile_size=run.tile_size, overlap=OVERLAP,
                               bands_before=run.bands_before, bands_after=run.bands_after,
                               probability_path=run.probability)
    try:
        detector.detect(run.before, run.after, run.out, options, progress=canceller.on_progress,
                        is_cancelled=lambda: flag["cancelled"])
    except SamCdError as exc:
        return Outcome(False, str(exc), type(exc))
    return Outcome(True)


def _bands_text(bands: tuple[int, ...] | None) -> str:
    return ",".join(map(str, bands)) if bands else ""


def run_processing(run: Run, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    request.getfixturevalue("sam_cd_provider")
    import processing
    from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    canceller = Canceller(run.cancel, feedback.cancel)
    feedback.progressChanged.connect(canceller.on_progress)
    if run.cancel == "reading":
        canceller.spy_reading(monkeypatch)
    params = {
        "BEFORE": str(run.before), "AFTER": str(run.after),
        "CHECKPOINT": str(request.getfixturevalue("tiny_checkpoint")), "DEVICE": "cpu",
        "THRESHOLD": run.threshold, "TILE_SIZE": run.tile_size or 0, "OVERLAP": OVERLAP,
        "BANDS_BEFORE": _bands_text(run.bands_before), "BANDS_AFTER": _bands_text(run.bands_after),
        "OUTPUT": str(run.out),
    }
    if run.probability:
        params["OUTPUT_PROBABILITY"] = str(run.probability)
    try:
        processing.run(ALGORITHM_ID, params, feedback=feedback)
        outcome = Outcome(True)
    except QgsProcessingException as exc:
        outcome = Outcome(False, str(exc), QgsProcessingException)
    finally:
        feedback.progressChanged.disconnect(canceller.on_progress)
    # QGIS is alive and usable: the registry still answers and the algorithm can be created
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALGORITHM_ID)
    assert alg is not None
    del alg
    return outcome


def _cli_args(run: Run, checkpoint: Path) -> list[str]:
    args = [str(run.before), str(run.after), str(run.out), "--checkpoint", str(checkpoint),
            "--device", "cpu", "--threshold", str(run.threshold), "--overlap", str(OVERLAP)]
    if run.tile_size is not None:
        args += ["--tile-size", str(run.tile_size)]
    for flag, bands in (("--bands-before", run.bands_before), ("--bands-after", run.bands_after)):
        if bands:
            args += [flag, _bands_text(bands)]
    if run.probability:
        args += ["--probability", str(run.probability)]
    return args


def run_cli(run: Run, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    checkpoint = request.getfixturevalue("tiny_checkpoint")
    done = subprocess.run([sys.executable, "-m", "sam_cd_plugin", "detect", *_cli_args(run, checkpoint)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if done.returncode == 0:
        return Outcome(True)
    assert done.returncode == 2, f"exit {done.returncode} (crash?): {done.stderr[-3000:]}"
    assert "error: " in done.stderr
    return Outcome(False, done.stderr, SamCdError)


def run_qgis_process(run: Run, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    qgis_process = request.getfixturevalue("qgis_process")
    checkpoint = request.getfixturevalue("tiny_checkpoint")
    args = [f"BEFORE={run.before}", f"AFTER={run.after}", f"CHECKPOINT={checkpoint}", "DEVICE=cpu",
            f"THRESHOLD={run.threshold}", f"OVERLAP={OVERLAP}", f"OUTPUT={run.out}"]
    if run.tile_size:
        args.append(f"TILE_SIZE={run.tile_size}")
    for key, bands in (("BANDS_BEFORE", run.bands_before), ("BANDS_AFTER", run.bands_after)):
        if bands:
            args.append(f"{key}={_bands_text(bands)}")
    done = qgis_process("--json", "run", ALGORITHM_ID, "--", *args)
    assert done.returncode >= 0, f"qgis_process killed by signal {-done.returncode}"
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text[-3000:]
    if done.returncode == 0:
        assert json.loads(done.stdout)["results"]["OUTPUT"] == str(run.out)
        return Outcome(True)
    return Outcome(False, text, SamCdError)


RUNNERS = {ENGINE: run_engine, PROCESSING: run_processing, QGIS_PROCESS: run_qgis_process, CLI: run_cli}


@pytest.fixture(scope="module")
def detector(tiny_checkpoint: Path) -> ChangeDetector:
    return ChangeDetector(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def qgis_process(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from samcd_qgis_helpers import QGIS_PROCESS, qgis_process_env

    if not Path(QGIS_PROCESS).is_file():
        pytest.skip(f"{QGIS_PROCESS} not installed")
    env = qgis_process_env(plugin_dir, tmp_path_factory.mktemp("qgis_profile"))

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=180)

    enabled = call("plugins", "enable", "sam_cd_plugin")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return call


# ----------------------------------------------------------------------------- the matrix
def _read_mask(path: Path) -> np.ndarray:
    ds = gdal.Open(str(path))
    try:
        band = ds.GetRasterBand(1)
        assert band.GetNoDataValue() == 255
        return band.ReadAsArray()
    finally:
        ds = None


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name != ".filler")


MATRIX = [pytest.param(case, front, id=f"{case.id}-{front}") for case in CASES for front in case.fronts]


@pytest.mark.parametrize(("case", "front"), MATRIX)
def test_bad_input_matrix(case: Case, front: str, ws: Workspace, request: pytest.FixtureRequest,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    with contextlib.ExitStack() as stack:  # read-only mounts and tmpfs end here
        env = Env(ws, stack, monkeypatch, front)
        run = case.build(env)
        inputs_before = snapshot(ws.inputs)
        watched = (ws.outputs, *run.watch)
        existing = {p: p.read_bytes() for folder in watched for p in folder.rglob("*")
                    if p.is_file() and p.name != ".filler"}
        out_existed = run.out.exists()
        outcome = RUNNERS[front](run, request, monkeypatch)
        monkeypatch.undo()  # patched writers/readers end with the run
        leftovers = {folder: _leftovers(folder) for folder in watched}
        unchanged = all(p.is_file() and p.read_bytes() == content for p, content in existing.items())
        out_exists = run.out.exists()

    inputs_after = snapshot(ws.inputs)
    if front == QGIS_PROCESS:
        # qgis_process 3.22 itself loads raster parameters as QGIS layers before the algorithm
        # runs, and QGIS' GDAL provider then saves histograms in <input>.aux.xml (known QGIS
        # behaviour, also in the desktop app; processing.run and the plugin no longer do it).
        inputs_after = {k: v for k, v in inputs_after.items()
                        if k in inputs_before or not k.endswith(".aux.xml")}
    assert inputs_after == inputs_before, "an input file was changed or a sidecar was written"
    if case.error is None:
        assert outcome.ok, f"valid input refused: {outcome.message}"
        case.check(_read_mask(run.out), run)
        expected = {run.out.name} if front == ENGINE else {run.out.name, run.out.with_suffix(".qml").name}
        assert run.out.name in leftovers[ws.outputs] and set(leftovers[ws.outputs]) <= expected
        return

    assert not outcome.ok, f"{case.id} was accepted by the {front}"
    if front == ENGINE:
        assert issubclass(outcome.error, case.error), f"{outcome.error.__name__}: {outcome.message}"
    words = case.qgis_words if case.qgis_words is not None and front in (PROCESSING, QGIS_PROCESS) else case.words
    missing = [w for w in words if w.lower() not in outcome.message.lower()]
    assert not missing, f"message lacks {missing}: {outcome.message}"
    for folder, names in leftovers.items():
        assert [n for n in names if folder / n not in existing] == [], f"left behind in {folder}: {names}"
    assert unchanged, "a file that existed before the failed run was changed or removed"
    assert out_exists == out_existed
