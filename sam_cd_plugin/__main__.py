"""``python -m sam_cd_plugin detect|train|evaluate``."""
import sys

from .cli import main

sys.exit(main())
