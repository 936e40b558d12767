"""sam-cd: SAM-guided change detection for QGIS.

The package is both the QGIS plugin (``classFactory``) and a library/CLI
(``python -m sam_cd_plugin``). Importing it stays light: nothing heavy is imported here.
"""

__version__ = "0.1.0"


def classFactory(iface):  # noqa: N802 (QGIS entry point name)
    """QGIS plugin entry point."""
    from .plugin import SamCdPlugin

    return SamCdPlugin(iface)
