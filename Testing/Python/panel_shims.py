"""PySide6 look-alikes of the CTK/MRML widgets in DiffusionPEFT.ui: they draw like Slicer's (for the
panel picture) and have the signals, properties and MRML methods the Widget uses, PythonQt style.

Class names equal the .ui's custom-widget names. Node selectors hold a current node (a test sets it
as a user would pick it); a table view shows its table node's cells.
"""

from __future__ import annotations

from PySide6.QtCore import Property, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLineEdit, QPushButton, QTableWidget, QTableWidgetItem, QToolButton, QWidget
from pythonqt_standins import pythonQtStyle

HEADER_HEIGHT = 24


@pythonQtStyle
class qMRMLWidget(QWidget):
    """The panel's top widget: ``setMRMLScene`` hands the scene to every MRML widget inside it."""

    def setMRMLScene(self, scene) -> None:
        for child in self.findChildren(QWidget):
            if child is not self and hasattr(child, "setMRMLScene"):
                child.setMRMLScene(scene)


@pythonQtStyle
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


@pythonQtStyle
class ctkPathLineEdit(QWidget):
    """A path field with a browse button; like CTK's it emits ``currentPathChanged`` on every edit,
    each keystroke included."""

    currentPathChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.lineEdit = QLineEdit(self)
        browse = QToolButton(self)
        browse.setText("\u2026")
        layout.addWidget(self.lineEdit)
        layout.addWidget(browse)
        self.lineEdit.textChanged.connect(self.currentPathChanged)

    def getCurrentPath(self) -> str:
        return self.lineEdit.text()

    def setCurrentPath(self, path: str) -> None:
        self.lineEdit.setText(path)

    currentPath = Property(str, getCurrentPath, setCurrentPath)


@pythonQtStyle
class ctkDirectoryButton(QPushButton):
    """A button that shows a folder and emits ``directoryChanged`` when it changes."""

    directoryChanged = Signal(str)

    def getDirectory(self) -> str:
        return QPushButton.text(self)

    def setDirectory(self, directory: str) -> None:
        if directory != self.getDirectory():
            self.setText(directory)
            self.directoryChanged.emit(directory)

    directory = Property(str, getDirectory, setDirectory)


@pythonQtStyle
class qMRMLNodeComboBox(QComboBox):
    """A node selector: ``currentNode``/``setCurrentNode`` (emits ``currentNodeChanged``), shown by name."""

    currentNodeChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.mrmlScene = None
        self._node = None

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene
        self.setCurrentNode(None)

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node) -> None:
        changed = node is not self._node
        self._node = node
        self.clear()
        self.addItem(node.GetName() if node is not None else "None")
        if changed:
            self.currentNodeChanged.emit(node)


@pythonQtStyle
class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):
    """A node selector with check boxes: ``setCheckState(node, state)``, ``checkedNodes()``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._checked = []

    def setCheckState(self, node, state) -> None:
        self._checked = [n for n in self._checked if n is not node] + ([node] if state == Qt.Checked else [])

    def checkedNodes(self) -> list:
        return list(self._checked)


@pythonQtStyle
class qMRMLPlotWidget(QWidget):
    """A line chart of ``points`` [(x, y), …] with axes, like a plot view of a loss curve."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: list[tuple[float, float]] = []
        self.title = "Fine-tuning loss"
        self.plotViewNode = None

    def setMRMLScene(self, scene) -> None:
        self.plotViewNode = None

    def setMRMLPlotViewNode(self, node) -> None:
        self.plotViewNode = node

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


@pythonQtStyle
class qMRMLTableView(QTableWidget):
    """A table view; ``setMRMLTableNode`` shows the node's cells (the panel picture fills in its own)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tableNode = None

    def setMRMLScene(self, scene) -> None:
        self.tableNode = None

    def setMRMLTableNode(self, node) -> None:
        self.tableNode = node
        self.setRowCount(node.GetNumberOfRows())
        self.setColumnCount(node.GetNumberOfColumns())
        for row in range(node.GetNumberOfRows()):
            for column in range(node.GetNumberOfColumns()):
                self.setItem(row, column, QTableWidgetItem(node.GetCellText(row, column)))


SHIMS = [qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit, ctkDirectoryButton, qMRMLNodeComboBox,
         qMRMLCheckableNodeComboBox, qMRMLPlotWidget, qMRMLTableView]
