"""Torch models: SAM-family encoders, change heads, losses and the checkpoint format.

Importing this package needs torch (and ultralytics for the encoders); nothing here imports qgis.
"""
