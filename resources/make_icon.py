"""Draw the plugin icon: two overlapping rasters (before/after) and a red change blob.

Run from the repository root with the QGIS Python:  .venv/bin/python resources/make_icon.py
It writes resources/icon.png (64x64, committed) next to this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

from qgis.PyQt.QtCore import QPointF, QRectF, Qt
from qgis.PyQt.QtGui import QBrush, QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen

SIZE = 64


def draw(size: int = SIZE) -> QImage:
    """Return the icon as a ``size`` x ``size`` ARGB image."""
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    s = size / 64.0
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)

    # "before" raster: back square, muted blue-grey
    painter.setPen(QPen(QColor("#37474f"), 2.5 * s))
    painter.setBrush(QBrush(QColor("#90a4ae")))
    painter.drawRoundedRect(QRectF(4 * s, 4 * s, 38 * s, 38 * s), 4 * s, 4 * s)

    # "after" raster: front square, green
    painter.setPen(QPen(QColor("#1b5e20"), 2.5 * s))
    painter.setBrush(QBrush(QColor("#81c784")))
    painter.drawRoundedRect(QRectF(22 * s, 22 * s, 38 * s, 38 * s), 4 * s, 4 * s)

    # change blob, red, over the overlap
    blob = QPainterPath()
    blob.moveTo(QPointF(30 * s, 27 * s))
    blob.cubicTo(QPointF(40 * s, 20 * s), QPointF(52 * s, 28 * s), QPointF(48 * s, 38 * s))
    blob.cubicTo(QPointF(45 * s, 47 * s), QPointF(35 * s, 50 * s), QPointF(29 * s, 43 * s))
    blob.cubicTo(QPointF(24 * s, 37 * s), QPointF(24 * s, 31 * s), QPointF(30 * s, 27 * s))
    painter.setPen(QPen(QColor("#7f0000"), 2.0 * s))
    painter.setBrush(QBrush(QColor(229, 57, 53, 235)))
    painter.drawPath(blob)
    painter.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (fonts/painting need it)
    out = Path(__file__).resolve().parent / "icon.png"
    if not draw().save(str(out), "PNG"):
        print(f"could not write {out}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
