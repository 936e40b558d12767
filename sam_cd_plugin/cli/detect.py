"""``detect``: change map of a before/after raster pair."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..core.normalisation import NORMALISATIONS
from ..core.writers import PROBABILITY_FORMATS
from .arguments import DEVICES, bands


def add_parser(sub) -> None:
    d = sub.add_parser("detect", help="change map of a before/after raster pair")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    d.add_argument("output", type=Path, help="change GeoTIFF (1 change, 0 none, 255 nodata)")
    d.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled one")
    d.add_argument("--device", default="auto", choices=DEVICES)
    d.add_argument("--threshold", type=float, default=0.5)
    d.add_argument("--tile-size", type=int, default=None)
    d.add_argument("--overlap", type=int, default=64)
    d.add_argument("--bands-before", type=bands, default=None, help="e.g. 3,2,1 (1-based)")
    d.add_argument("--bands-after", type=bands, default=None)
    d.add_argument("--normalisation", choices=NORMALISATIONS, default="joint",
                   help="joint: one stretch for both dates from the pixels valid in both (default); "
                        "per-date: each raster its own (dates from different sensors)")
    d.add_argument("--probability", type=Path, default=None, help="also write a probability GeoTIFF")
    d.add_argument("--probability-format", choices=PROBABILITY_FORMATS, default="float32",
                   help="float32 (0..1, nodata -1) or uint8 (percent 0..100, nodata 255)")
    d.add_argument("--polygons", type=Path, default=None,
                   help="also write change polygons (GeoPackage, layer 'changes')")
    d.add_argument("--min-area", type=float, default=0.0,
                   help="drop change polygons smaller than this (map units², e.g. m²)")
    d.add_argument("--cog", action="store_true", help="write Cloud Optimized GeoTIFFs")
    d.add_argument("--batch-size", type=int, default=None, help="default: from free device memory")
    d.add_argument("--readers", type=int, default=None,
                   help="GDAL reader threads (default: 8 on CUDA, 1 on the CPU)")
    d.add_argument("--dask", metavar="SCHEDULER", default=None,
                   help="map the tiles over a Dask distributed cluster (e.g. tcp://host:8786)")
    d.add_argument("--prompts", default=None,
                   help="SAM-CD only: category prompts, comma-separated; not given: the checkpoint's; "
                        "'' or 'none': no semantic prior (any SAM-CD checkpoint)")
    d.add_argument("--clip-weights", type=Path, default=None,
                   help="CLIP weights file, needed by SAM-CD checkpoints that use prompts")
    d.add_argument("--quicklook", type=Path, default=None, help="also write a PNG before|after|change")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.options import DetectionOptions
    from ..engine.service import DetectRequest, get_engine
    from ..core.prompts import parse_prompts
    from .progress import engine_log, progress_bar

    prompts = None if args.prompts is None else (parse_prompts(args.prompts) or [])
    options = DetectionOptions(threshold=args.threshold, tile_size=args.tile_size,
                               overlap=args.overlap, bands_before=args.bands_before,
                               bands_after=args.bands_after, probability_path=args.probability,
                               probability_format=args.probability_format, polygons_path=args.polygons,
                               min_area=args.min_area, cog=args.cog, batch_size=args.batch_size,
                               dask_scheduler=args.dask, normalisation=args.normalisation,
                               readers=args.readers)
    request = DetectRequest(str(args.before), str(args.after), str(args.output),
                            checkpoint=str(args.checkpoint) if args.checkpoint else None,
                            device=args.device, clip_weights=str(args.clip_weights) if args.clip_weights else None,
                            prompts=prompts, options=options)
    engine = get_engine()
    with progress_bar("detect") as progress:
        result = engine.detect(request, progress=progress, log=engine_log(engine.transport))
    share = 100.0 * result["changed_pixels"] / max(1, result["valid_pixels"])
    print(f"change map: {result['out_path']} ({result['width']}×{result['height']} px, "
          f"{share:.2f} % changed, {result['seconds']:.1f} s on {result['device']})")
    if result["probability_path"]:
        print(f"probability: {result['probability_path']}")
    if result["polygons_path"]:
        print(f"polygons: {result['polygons_path']} ({result['polygon_count']} features)")
    if args.quicklook:
        from ..core.quicklook import write_quicklook

        png = write_quicklook(args.before, args.after, args.output, args.quicklook,
                              args.bands_before, args.bands_after)
        print(f"quick-look: {png}")
    return 0
