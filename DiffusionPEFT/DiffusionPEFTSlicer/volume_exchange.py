"""Volumes between the scene and job folders: write a node as NIfTI, load a NIfTI into a NEW node.

Slicer's own storage node does the file work (ITK, RAS ↔ LPS handled), so a file's affine is the
node's IJKToRAS and its voxels are ``arrayFromVolume(node).transpose(2, 1, 0)`` — the backend's
``data[i, j, k]`` + RAS affine contract. Input nodes are only read, never changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import slicer
import vtk

GEOMETRY_TOLERANCE_MM = 1e-3


def writeVolumeNode(node, path: Path) -> Path:
    """Write ``node``'s voxels and geometry to ``path`` (.nii) without touching the node."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.UseCompressionOff()
    if not storage.WriteData(node):
        raise OSError(f"Could not write {node.GetName()} to {path}.")
    return Path(path)


def ijkToRas(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def loadVolumeNode(path: Path, name: str, referenceNode=None):
    """Read ``path`` into a new scalar volume node named after ``name`` (made unique in the scene).

    With ``referenceNode`` the new node takes the reference's exact IJKToRAS (the file stores it in
    float32) when grids agree, and sits next to the reference in the subject hierarchy.
    """
    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise OSError(f"Could not read {path}.")
    node.CreateDefaultDisplayNodes()
    if referenceNode is not None:
        adoptReferenceGeometry(node, referenceNode)
        placeNextTo(node, referenceNode)
    return node


def adoptReferenceGeometry(node, referenceNode) -> bool:
    """Copy the reference IJKToRAS onto ``node`` when both describe the same grid (within 1 µm)."""
    sameShape = node.GetImageData().GetDimensions() == referenceNode.GetImageData().GetDimensions()
    if not sameShape or not np.allclose(ijkToRas(node), ijkToRas(referenceNode), atol=GEOMETRY_TOLERANCE_MM):
        logging.warning(f"{node.GetName()} is not on the grid of {referenceNode.GetName()}; kept its own geometry.")
        return False
    matrix = vtk.vtkMatrix4x4()
    referenceNode.GetIJKToRASMatrix(matrix)
    node.SetIJKToRASMatrix(matrix)
    return True


def placeNextTo(node, sourceNode) -> None:
    """Put ``node`` under the same subject-hierarchy parent (study) as ``sourceNode``, when it has one."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    invalid = hierarchy.GetInvalidItemID()
    sourceItem = hierarchy.GetItemByDataNode(sourceNode)
    if sourceItem == invalid:
        return
    parent = hierarchy.GetItemParent(sourceItem)
    item = hierarchy.GetItemByDataNode(node)
    if item == invalid:
        hierarchy.CreateItem(parent, node)
    else:
        hierarchy.SetItemParent(item, parent)
