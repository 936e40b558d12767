"""QGIS Processing integration: provider, algorithms, output styling (imports qgis)."""
