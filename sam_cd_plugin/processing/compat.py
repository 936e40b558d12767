"""Scoped Processing enum values that moved between QGIS releases.

QGIS 3.36 moved the Processing enums into ``Qgis`` and QGIS 4 drops the old spellings;
QGIS 3.22-3.34 only has the old ones. Each constant uses the new spelling when it exists
and the old scoped spelling otherwise, so no deprecated name is touched on new QGIS.
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

__all__ = ["FILE_BEHAVIOR_FILE", "FILE_BEHAVIOR_FOLDER", "FLAG_ADVANCED", "GEOMETRY_POLYGON", "FLAG_OPTIONAL", "NUMBER_DOUBLE",
           "NUMBER_INTEGER", "VECTOR_POLYGON"]


def _scoped(new_enum: str, new_member: str, old_owner: type, old_enum: str, old_member: str) -> object:
    """``Qgis.<new_enum>.<new_member>`` if this QGIS has it, else ``<old_owner>.<old_enum>.<old_member>``."""
    enum = getattr(Qgis, new_enum, None)
    if enum is not None:
        return getattr(enum, new_member)
    return getattr(getattr(old_owner, old_enum), old_member)


FLAG_ADVANCED = _scoped("ProcessingParameterFlag", "Advanced", QgsProcessingParameterDefinition, "Flag", "FlagAdvanced")
FLAG_OPTIONAL = _scoped("ProcessingParameterFlag", "Optional", QgsProcessingParameterDefinition, "Flag", "FlagOptional")
NUMBER_DOUBLE = _scoped("ProcessingNumberParameterType", "Double", QgsProcessingParameterNumber, "Type", "Double")
NUMBER_INTEGER = _scoped("ProcessingNumberParameterType", "Integer", QgsProcessingParameterNumber, "Type", "Integer")
FILE_BEHAVIOR_FILE = _scoped("ProcessingFileParameterBehavior", "File", QgsProcessingParameterFile, "Behavior", "File")
FILE_BEHAVIOR_FOLDER = _scoped("ProcessingFileParameterBehavior", "Folder", QgsProcessingParameterFile, "Behavior",
                               "Folder")
VECTOR_POLYGON = _scoped("ProcessingSourceType", "VectorPolygon", QgsProcessing, "SourceType", "TypeVectorPolygon")
GEOMETRY_POLYGON = _scoped("GeometryType", "Polygon", QgsWkbTypes, "GeometryType", "PolygonGeometry")
