"""What a checkpoint's metadata tells users about the model (plain dicts: no torch, no qgis).

A *demonstration model* shows the pipeline working but is not meant for real use. The metadata
decides: ``meta["training"]["demo"]`` (bool) when present; otherwise a model trained from random
initialisation (``training.encoder_init == "random"``) on fewer than :data:`DEMO_MAX_TILES`
tiles is one: that is too little data for a model to be accurate anywhere.
"""
from __future__ import annotations

from typing import Any

__all__ = ["DEMO_MAX_TILES", "demo_reason"]

#: Models from random initialisation trained on fewer tiles than this are demonstration models.
DEMO_MAX_TILES = 100


def _tile_count(training: dict[str, Any]) -> int | None:
    count = training.get("pairs_count")
    if isinstance(count, int):
        return count
    pairs = training.get("pairs")
    return len(pairs) if isinstance(pairs, list) else None


def demo_reason(meta: dict[str, Any]) -> str | None:
    """Why the checkpoint of ``meta`` is a demonstration model (one sentence), or None."""
    training = meta.get("training")
    if not isinstance(training, dict):
        return None
    count = _tile_count(training)
    random_init = training.get("encoder_init") == "random"
    flag = training.get("demo")
    if flag is None:
        flag = random_init and count is not None and count < DEMO_MAX_TILES
    if not flag:
        return None
    pairs = f"{count} image pairs" if count is not None else "a few image pairs"
    start = "random initialisation" if random_init else f"{training.get('encoder_init') or 'unknown'} weights"
    return (f"trained on {pairs} from {start}; use it to try the pipeline, train or pick a model "
            "for real use")
