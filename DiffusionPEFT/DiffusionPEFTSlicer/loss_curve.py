"""The live training-loss curve: a table (step, loss) drawn as a line in a plot chart."""

from __future__ import annotations

import slicer
import vtk


class LossCurve:
    """Creates (once) a table node, a plot series and a chart; :meth:`add` appends one point."""

    def __init__(self, name: str = "DiffusionPEFT loss"):
        scene = slicer.mrmlScene
        self.tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
        self._steps = self._addColumn(vtk.vtkIntArray(), "step")
        self._losses = self._addColumn(vtk.vtkDoubleArray(), "loss")
        self.seriesNode = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} series")
        self.seriesNode.SetAndObserveTableNodeID(self.tableNode.GetID())
        self.seriesNode.SetXColumnName("step")
        self.seriesNode.SetYColumnName("loss")
        self.seriesNode.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        self.seriesNode.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        self.chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
        self.chartNode.AddAndObservePlotSeriesNodeID(self.seriesNode.GetID())
        self.chartNode.SetTitle("Fine-tuning loss")
        self.chartNode.SetXAxisTitle("step")
        self.chartNode.SetYAxisTitle("loss")
        self.chartNode.SetLegendVisibility(False)

    def _addColumn(self, array, name: str):
        array.SetName(name)
        self.tableNode.AddColumn(array)
        return array

    def reset(self) -> None:
        self.tableNode.GetTable().SetNumberOfRows(0)
        self.tableNode.Modified()

    def add(self, step: int, loss: float) -> None:
        table = self.tableNode.GetTable()
        row = table.InsertNextBlankRow()
        table.SetValue(row, 0, vtk.vtkVariant(int(step)))
        table.SetValue(row, 1, vtk.vtkVariant(float(loss)))
        self.tableNode.Modified()

    def points(self) -> list[tuple[int, float]]:
        return [(self._steps.GetValue(i), self._losses.GetValue(i)) for i in range(self._steps.GetNumberOfTuples())]
