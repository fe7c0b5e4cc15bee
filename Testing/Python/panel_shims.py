"""PySide6 look-alikes of the CTK/MRML widgets in DiffusionPEFT.ui, so QUiLoader builds a panel that
looks like Slicer's (collapsible sections, path fields, node selectors, a plot, a table).

They only draw; behaviour is tested elsewhere. Class names equal the .ui's custom-widget names.
"""

from __future__ import annotations

from PySide6.QtCore import Property, QPointF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import (
    QComboBox, QFrame, QHBoxLayout, QLineEdit, QPushButton, QTableWidget, QToolButton, QWidget,
)

HEADER_HEIGHT = 24


class qMRMLWidget(QWidget):
    """The panel's top widget."""


class ctkCollapsibleButton(QFrame):
    """A section: a header bar with a triangle and the title, the content below (cut off when collapsed)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text = ""
        self._collapsed = False
        self.setContentsMargins(0, HEADER_HEIGHT, 0, 0)

    def getText(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        self._text = text
        self.update()

    def getCollapsed(self) -> bool:
        return self._collapsed

    def setCollapsed(self, collapsed: bool) -> None:
        self._collapsed = collapsed
        self.setMaximumHeight(HEADER_HEIGHT + 2 if collapsed else 16777215)

    text = Property(str, getText, setText)
    collapsed = Property(bool, getCollapsed, setCollapsed)

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setPen(QColor("#b8b8b8"))
        painter.setBrush(QColor("#e8e8e8"))
        painter.drawRoundedRect(0, 1, self.width() - 1, HEADER_HEIGHT - 3, 3, 3)
        painter.setPen(QColor("#202020"))
        font = QFont(painter.font())
        font.setBold(True)
        painter.setFont(font)
        arrow = "\u25b8" if self._collapsed else "\u25be"
        painter.drawText(8, 0, self.width() - 16, HEADER_HEIGHT - 2, Qt.AlignVCenter, f"{arrow}  {self._text}")


class ctkPathLineEdit(QWidget):
    """A path field with a browse button."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.lineEdit = QLineEdit(self)
        browse = QToolButton(self)
        browse.setText("\u2026")
        layout.addWidget(self.lineEdit)
        layout.addWidget(browse)

    def getCurrentPath(self) -> str:
        return self.lineEdit.text()

    def setCurrentPath(self, path: str) -> None:
        self.lineEdit.setText(path)

    currentPath = Property(str, getCurrentPath, setCurrentPath)


class ctkDirectoryButton(QPushButton):
    """A button that shows a folder."""

    def getDirectory(self) -> str:
        return self.text()

    def setDirectory(self, directory: str) -> None:
        self.setText(directory)

    directory = Property(str, getDirectory, setDirectory)


class qMRMLNodeComboBox(QComboBox):
    """A node selector (the panel picture fills in node names)."""


class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):
    """A node selector with check boxes."""


class qMRMLPlotWidget(QWidget):
    """A line chart of ``points`` [(x, y), …] with axes, like a plot view of a loss curve."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: list[tuple[float, float]] = []
        self.title = "Fine-tuning loss"

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor("white"))
        left, top, right, bottom = 40, 22, self.width() - 10, self.height() - 22
        painter.setPen(QColor("#202020"))
        painter.drawText(0, 2, self.width(), 18, Qt.AlignHCenter, self.title)
        painter.drawLine(left, bottom, right, bottom)
        painter.drawLine(left, top, left, bottom)
        painter.drawText(left, bottom + 2, right - left, 18, Qt.AlignHCenter, "step")
        if len(self.points) < 2:
            return
        xs, ys = [p[0] for p in self.points], [p[1] for p in self.points]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        polygon = QPolygonF([QPointF(left + (x - x0) / (x1 - x0 or 1) * (right - left),
                                     bottom - (y - y0) / (y1 - y0 or 1) * (bottom - top)) for x, y in self.points])
        painter.setPen(QPen(QColor("#1f77b4"), 2))
        painter.drawPolyline(polygon)


class qMRMLTableView(QTableWidget):
    """A table view (the panel picture fills in the metrics)."""


SHIMS = [qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit, ctkDirectoryButton, qMRMLNodeComboBox,
         qMRMLCheckableNodeComboBox, qMRMLPlotWidget, qMRMLTableView]
