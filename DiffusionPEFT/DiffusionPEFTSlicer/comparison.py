"""Reference vs output in the scene: a difference volume, a metrics table, linked side-by-side views."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from .volume_exchange import placeNextTo

METRIC_LABELS = {"ms_ssim": "MS-SSIM", "ssim": "SSIM", "psnr": "PSNR (dB)", "nrmse": "NRMSE"}


def differenceVolume(referenceNode, outputNode):
    """A new node ``output − reference`` on the output's grid (both must have the same dimensions)."""
    reference = slicer.util.arrayFromVolume(referenceNode).astype(np.float32)
    output = slicer.util.arrayFromVolume(outputNode).astype(np.float32)
    if reference.shape != output.shape:
        raise ValueError(f"{outputNode.GetName()} {output.shape[::-1]} and {referenceNode.GetName()} "
                         f"{reference.shape[::-1]} are on different grids; generate with the reference as 'like'.")
    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                   scene.GenerateUniqueName(f"{outputNode.GetName()} - {referenceNode.GetName()}"))
    slicer.util.updateVolumeFromArray(node, output - reference)
    matrix = vtk.vtkMatrix4x4()
    outputNode.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    placeNextTo(node, referenceNode)
    return node


def metricsTable(metrics: dict[str, float], name: str = "DiffusionPEFT metrics"):
    """A new table node with columns Metric | Value (known metrics first, in a fixed order)."""
    tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", slicer.mrmlScene.GenerateUniqueName(name))
    names = [n for n in METRIC_LABELS if n in metrics] + sorted(n for n in metrics if n not in METRIC_LABELS)
    labels, values = vtk.vtkStringArray(), vtk.vtkDoubleArray()
    labels.SetName("Metric")
    values.SetName("Value")
    for metric in names:
        labels.InsertNextValue(METRIC_LABELS.get(metric, metric))
        values.InsertNextValue(float(metrics[metric]))
    tableNode.AddColumn(labels)
    tableNode.AddColumn(values)
    return tableNode


def showSideBySide(referenceNode, outputNode, differenceNode=None) -> None:
    """Two linked slice views: reference left, output right (difference as foreground overlay)."""
    layoutManager = slicer.app.layoutManager()
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    for viewName, node in (("Red", referenceNode), ("Yellow", outputNode)):
        compositeNode = layoutManager.sliceWidget(viewName).mrmlSliceCompositeNode()
        compositeNode.SetBackgroundVolumeID(node.GetID())
        compositeNode.SetForegroundVolumeID(differenceNode.GetID() if differenceNode and viewName == "Yellow" else None)
        compositeNode.SetLinkedControl(True)
        layoutManager.sliceWidget(viewName).sliceLogic().FitSliceToAll()
