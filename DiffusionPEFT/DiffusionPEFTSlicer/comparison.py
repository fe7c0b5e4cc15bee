"""Reference vs output in the scene: a difference volume, a metrics table (one column per compared output),
linked side-by-side views with an overlay on the output (its difference, or its uncertainty map)."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from .volume_exchange import placeNextTo

METRIC_LABELS = {"ms_ssim": "MS-SSIM", "ssim": "SSIM", "psnr": "PSNR (dB)", "nrmse": "NRMSE"}
ZERO_FILLED_PREFIX = "zero_filled_"  # reconstruct's metrics of its zero-filled baseline
COMPARE_ORIENTATION = "Axial"  # both views, explicitly: a view keeps its plane when the layout changes
OVERLAY_OPACITY = 0.5
DIFFERENCE_COLORS = "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"  # blue < 0 < red
UNCERTAINTY_COLORS = "vtkMRMLColorTableNodeFileInferno.txt"  # black at 0, yellow at the largest std


def differenceVolume(referenceNode, outputNode):
    """A new node ``output − reference`` on the output's grid (both must have the same dimensions), shown
    in a blue–red map with its window centred on 0."""
    reference = slicer.util.arrayFromVolume(referenceNode).astype(np.float32)
    output = slicer.util.arrayFromVolume(outputNode).astype(np.float32)
    if reference.shape != output.shape:
        raise ValueError(f"{outputNode.GetName()} {output.shape[::-1]} and {referenceNode.GetName()} "
                         f"{reference.shape[::-1]} are on different grids; synthesize with the reference as 'like', "
                         "or translate with a target on the source's grid.")
    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                   scene.GenerateUniqueName(f"{outputNode.GetName()} - {referenceNode.GetName()}"))
    difference = output - reference
    slicer.util.updateVolumeFromArray(node, difference)
    matrix = vtk.vtkMatrix4x4()
    outputNode.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    _showInColors(node, DIFFERENCE_COLORS, 2 * float(np.abs(difference).max()), 0.0)
    placeNextTo(node, referenceNode)
    return node


def showAsUncertainty(node):
    """Show a per-voxel std volume (≥ 0) in UNCERTAINTY_COLORS from 0 to its largest value; return it."""
    largest = float(slicer.util.arrayFromVolume(node).max())
    _showInColors(node, UNCERTAINTY_COLORS, largest, largest / 2)
    return node


def _showInColors(node, colorNodeID: str, window: float, level: float) -> None:
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(colorNodeID)
    display.AutoWindowLevelOff()
    display.SetWindowLevel(max(window, 1e-6), level)


def metricsTable(columns: dict[str, dict[str, float]], name: str = "DiffusionPEFT metrics"):
    """A new table node: Metric | one column per entry of ``columns`` (heading → metric name → value).
    Known metrics come first, in a fixed order; a metric a column lacks is NaN there."""
    tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", slicer.mrmlScene.GenerateUniqueName(name))
    present = {metric for metrics in columns.values() for metric in metrics}
    names = [n for n in METRIC_LABELS if n in present] + sorted(present - set(METRIC_LABELS))
    labels = vtk.vtkStringArray()
    labels.SetName("Metric")
    for metric in names:
        labels.InsertNextValue(METRIC_LABELS.get(metric, metric))
    tableNode.AddColumn(labels)
    for heading, metrics in columns.items():
        values = vtk.vtkDoubleArray()
        values.SetName(heading)
        for metric in names:
            values.InsertNextValue(float(metrics.get(metric, np.nan)))
        tableNode.AddColumn(values)
    return tableNode


def reconstructionColumns(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """A reconstruct job's metrics (``ssim``, …, ``zero_filled_ssim``, …; all against the source) as two
    table columns: Reconstruction and its baseline, Zero-filled."""
    baseline = {n[len(ZERO_FILLED_PREFIX):]: v for n, v in metrics.items() if n.startswith(ZERO_FILLED_PREFIX)}
    own = {n: v for n, v in metrics.items() if not n.startswith(ZERO_FILLED_PREFIX)}
    return {"Reconstruction": own, "Zero-filled": baseline}


def showSideBySide(referenceNode, outputNode, overlayNode=None) -> None:
    """Two linked axial slice views: reference left, output right with ``overlayNode`` (its difference or
    uncertainty map) over it at OVERLAY_OPACITY."""
    layoutManager = slicer.app.layoutManager()
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    for viewName, node, overlay in (("Red", referenceNode, None), ("Yellow", outputNode, overlayNode)):
        sliceWidget = layoutManager.sliceWidget(viewName)
        sliceWidget.mrmlSliceNode().SetOrientation(COMPARE_ORIENTATION)
        compositeNode = sliceWidget.mrmlSliceCompositeNode()
        compositeNode.SetBackgroundVolumeID(node.GetID())
        compositeNode.SetForegroundVolumeID(overlay.GetID() if overlay is not None else None)
        compositeNode.SetForegroundOpacity(OVERLAY_OPACITY if overlay is not None else 0.0)
        compositeNode.SetLinkedControl(True)
        sliceWidget.sliceLogic().FitSliceToAll()
