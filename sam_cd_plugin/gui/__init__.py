"""The plugin's desktop interface: the dock (layers, δ checkpoints, weights, prompts, Detect).

Imports qgis and Qt; importing it does not import torch (the dock does, lazily, when built).
"""
