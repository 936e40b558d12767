"""Raster pair handling for sam-cd: alignment, tiling, normalisation, writers, polygons, metrics.

Depends on numpy and GDAL only (no torch, no QGIS). Import the submodules directly, e.g.
``from sam_cd_plugin.core.alignment import AlignedPair``; this package file stays import-light.
"""
