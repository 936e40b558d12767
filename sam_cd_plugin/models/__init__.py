"""Torch models: SAM-family encoders, change heads, losses and the checkpoint format.

Importing this package needs torch (and ultralytics for the encoders); nothing here imports qgis.
"""

import os

# ultralytics logs to stdout at INFO level from its first import (e.g. "torchvision==X is
# incompatible with torch==Y" on distributions whose torchvision lags), which corrupts
# `qgis_process --json` output; keep only its errors unless the user asks for more.
os.environ.setdefault("YOLO_VERBOSE", "False")
