"""SAM-family image encoders behind one interface (:class:`Encoder`).

``build_encoder(name)`` builds the architecture offline (random initialisation) and, when a
weights file is given, loads the official pretrained weights into it.
"""
from .base import ENCODER_NAMES, Encoder, build_encoder

__all__ = ["ENCODER_NAMES", "Encoder", "build_encoder"]
