"""``DetectionOptions``: what a detection run may tune. Torch-free, so front ends and the engine
client (which run in QGIS's Python) can build and check it without the model stack."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.errors import InputError
from ..core.normalisation import NORMALISATIONS
from ..core.writers import PROBABILITY_FORMATS

STRIDE = 32


@dataclass
class DetectionOptions:
    """What a detection run may tune; ``None`` means "from the checkpoint" or "automatic".

    ``probability_format``: ``float32`` (0..1, nodata -1) or ``uint8`` (percent 0..100, band
    scale 0.01, nodata 255). ``polygons_path``: also write change polygons (GeoPackage) of at
    least ``min_area`` map units². ``cog``: write the rasters as Cloud Optimized GeoTIFFs.
    ``dask_scheduler``: run the windows on a Dask distributed cluster (address of its scheduler).
    ``normalisation``: ``joint`` (one stretch for both dates, from the pixels valid in both) or
    ``per-date`` (each raster its own: dates from different sensors).
    ``readers``: GDAL reader threads, each with its own file handles (None: 8 on CUDA, 1 on the
    CPU); results do not depend on it.
    """

    threshold: float = 0.5
    tile_size: int | None = None
    overlap: int = 64
    batch_size: int | None = None
    bands_before: Sequence[int] | None = None
    bands_after: Sequence[int] | None = None
    probability_path: Path | None = None
    probability_format: str = "float32"
    polygons_path: Path | None = None
    min_area: float = 0.0
    cog: bool = False
    dask_scheduler: str | None = None
    normalisation: str = "joint"
    readers: int | None = None

    def validate(self, stride: int = STRIDE) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"Threshold {self.threshold} is outside [0, 1]; use e.g. 0.5.")
        if self.tile_size is not None and (self.tile_size < stride or self.tile_size % stride):
            raise InputError(f"Tile size {self.tile_size} must be a multiple of {stride} "
                             f"(at least {stride}); e.g. 256 or 512.")
        if self.overlap < 0:
            raise InputError("Overlap cannot be negative.")
        if self.tile_size is not None:
            check_overlap(self.overlap, self.tile_size)
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("Batch size must be at least 1.")
        if self.readers is not None and self.readers < 1:
            raise InputError("Reader threads must be at least 1.")
        if self.probability_format not in PROBABILITY_FORMATS:
            raise InputError(f"Probability format '{self.probability_format}' is unknown; use one of "
                             f"{', '.join(PROBABILITY_FORMATS)}.")
        if self.normalisation not in NORMALISATIONS:
            raise InputError(f"Normalisation '{self.normalisation}' is unknown; use one of "
                             f"{', '.join(NORMALISATIONS)}.")
        if not self.min_area >= 0:
            raise InputError(f"Minimum polygon area {self.min_area} must be zero or positive (map units²).")


def check_overlap(overlap: int, tile: int) -> None:
    """``InputError`` for an overlap of a whole tile or more (windows would not advance)."""
    if overlap >= tile:
        raise InputError(f"Tile overlap {overlap} px must be smaller than the tile size {tile} px "
                         f"(at most half of it, {tile // 2}, is used); e.g. {min(64, tile // 4)}.")
