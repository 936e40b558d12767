"""Beyond one machine: the tile function mapped over a Dask distributed cluster.

The tile function is pure: :func:`predict_windows` turns a :class:`WindowJob` (which rasters,
bands, checkpoint, device) and a list of windows into their probabilities and validity, with the
same code as a local run (:func:`~.tile_reader.read_batch` and
:meth:`~.detector.ChangeDetector.predict_batch`). Each worker process loads the checkpoint and
opens the raster pair once (cached per job), so the rasters and the checkpoint must be readable
at the same paths on every worker (shared file system or object storage via GDAL /vsi paths). The scheduler
deserialises the task graph and the workers run it, so every one of them needs the ``sam-cd``
package importable (:data:`CLUSTER_NEEDS`); :func:`dask_results` checks that before submitting.

The client submits batches in order, keeps a bounded number in flight, and feeds the results
in order into the same blender and writers as a local run: one output, written by the client,
with the same pixels (the model's float32 arithmetic may differ by ~1e-7 when workers use other
thread counts than the client; with equal thread counts the outputs are bit-identical).
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.alignment import AlignedPair
from ..core.errors import DependencyError, InputError
from ..core.tiling import Tile
from .batching import OomBackoff
from .tile_reader import PredictedBatch, read_batch

if TYPE_CHECKING:
    from .detector import ChangeDetector, DetectionOptions

log = logging.getLogger(__name__)

__all__ = ["WindowJob", "predict_windows", "dask_results", "CLUSTER_NEEDS"]

#: Batches in flight per worker thread (bounds the client's memory).
IN_FLIGHT_PER_THREAD = 2
#: How long to try reaching the scheduler.
CONNECT_TIMEOUT = "30s"
#: What the scheduler and every worker need (the README's cluster section says the same).
CLUSTER_NEEDS = ("The Dask scheduler and every worker need the sam-cd package importable in the Python "
                 "that runs them, with torch, ultralytics and GDAL's bindings: install the wheel there "
                 "(pip install 'sam_cd-<version>-py3-none-any.whl[engine,dask]', built with "
                 "'pip wheel --no-deps .' in a sam-cd checkout, or pip install '.[engine,dask]' from one), "
                 "then restart them; they must also read the rasters and the checkpoint at the same paths.")


@dataclass(frozen=True)
class WindowJob:
    """Everything a worker needs besides the windows (hashable: the worker-side cache key)."""

    before: str
    after: str
    bands_before: tuple[int, ...] | None
    bands_after: tuple[int, ...] | None
    checkpoint: str
    device: str
    batch_size: int
    clip_weights: str | None = None
    prompts: tuple[str, ...] | None = None
    normalisation: str = "joint"


_WORKER_CACHE: dict[WindowJob, tuple["ChangeDetector", AlignedPair, OomBackoff]] = {}


def _worker_state(job: WindowJob) -> tuple["ChangeDetector", AlignedPair, OomBackoff]:
    if job not in _WORKER_CACHE:
        from .detector import ChangeDetector

        for old in _WORKER_CACHE.values():  # one job at a time per worker
            old[1].close()
        _WORKER_CACHE.clear()
        detector = ChangeDetector(job.checkpoint, job.device, job.clip_weights, job.prompts)
        pair = AlignedPair(job.before, job.after, job.bands_before, job.bands_after, job.normalisation)
        _WORKER_CACHE[job] = (detector, pair, OomBackoff(job.batch_size, detector.fall_back_to_cpu))
    return _WORKER_CACHE[job]


def predict_windows(job: WindowJob, tiles: list[Tile]) -> PredictedBatch:
    """Probabilities and validity of ``tiles`` (runs on a worker; pure given the files)."""
    detector, pair, backoff = _worker_state(job)
    batch = read_batch(pair, tiles)
    pair.drop_caches()
    return detector.predict_batch(batch, backoff, detector.prior_field(pair))


def _shared_path(path: object) -> str:
    """Absolute path for local files (workers may run elsewhere), GDAL strings unchanged."""
    p = Path(str(path))
    return str(p.resolve()) if p.exists() else str(path)


def _client(scheduler: str):
    try:
        from distributed import Client
    except ImportError as exc:
        raise DependencyError("Running on a Dask cluster needs the Python package "
                              "'dask[distributed]': python -m pip install 'dask[distributed]'.") from exc
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError, TimeoutError) as exc:
        raise InputError(f"Cannot connect to the Dask scheduler at {scheduler!r} ({exc}). Start it "
                         "(dask scheduler / dask worker) or check the address, e.g. tcp://host:8786.") from exc


def _require_package(client) -> None:
    """Refuse, saying what to install, when the scheduler or a worker cannot import sam_cd_plugin."""
    from importlib.util import find_spec  # a standard-library function: every side can unpickle it

    lacking = [] if client.run_on_scheduler(find_spec, "sam_cd_plugin") else ["the scheduler"]
    lacking += [f"worker {address}" for address, spec in sorted(client.run(find_spec, "sam_cd_plugin").items())
                if spec is None]
    if lacking:
        who = lacking[0] if len(lacking) == 1 else f"{', '.join(lacking[:-1])} and {lacking[-1]}"
        raise DependencyError(f"{who[0].upper()}{who[1:]} cannot import sam_cd_plugin "
                              f"(No module named 'sam_cd_plugin'). {CLUSTER_NEEDS}")


def _result(future) -> PredictedBatch:
    """``future.result()``, with a missing package on the cluster (e.g. a worker that joined
    after the check) reported as what to install."""
    try:
        return future.result()
    except ModuleNotFoundError as exc:
        raise DependencyError(f"A Dask worker cannot import {exc.name!r} ({exc}). {CLUSTER_NEEDS}") from exc
    except RuntimeError as exc:
        if "deserializ" not in str(exc):
            raise
        cause = exc.__cause__ or exc
        raise DependencyError(f"The Dask cluster could not read the task ({cause}). {CLUSTER_NEEDS}") from exc


def dask_results(scheduler: str, detector: "ChangeDetector", pair: AlignedPair,
                 options: "DetectionOptions", batches: list[list[Tile]]) -> Iterator[PredictedBatch]:
    """Results of ``batches`` computed on the cluster at ``scheduler``, yielded in order."""
    client = _client(scheduler)
    try:
        _require_package(client)
    except BaseException:
        client.close()
        raise
    job = WindowJob(
        before=_shared_path(pair.before.path), after=_shared_path(pair.after.path),
        bands_before=tuple(pair.bands_before), bands_after=tuple(pair.bands_after),
        checkpoint=str(detector.checkpoint.resolve()), device=str(detector.device_choice),
        batch_size=len(batches[0]) if batches else 1,
        clip_weights=_shared_path(detector.clip_weights) if detector.clip_weights else None,
        prompts=tuple(detector.prompts), normalisation=pair.normalisation)
    threads = max(1, sum(client.nthreads().values()))
    limit = IN_FLIGHT_PER_THREAD * threads
    log.info("Mapping %d batches over the Dask cluster at %s (%d worker threads)", len(batches),
             scheduler, threads)
    pending: deque = deque()
    todo = iter(batches)
    try:
        while True:
            while len(pending) < limit:
                nxt = next(todo, None)
                if nxt is None:
                    break
                pending.append(client.submit(predict_windows, job, nxt, pure=False))
            if not pending:
                return
            batch = _result(pending.popleft())
            yield batch
    finally:
        if pending:
            client.cancel(list(pending))
        client.close()
