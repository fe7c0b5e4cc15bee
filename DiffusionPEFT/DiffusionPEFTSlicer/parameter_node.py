"""The panel's state, saved with the scene: a ``@parameterNodeWrapper`` class and the choices it offers."""

import pathlib
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, Decimals, SingleStep, WithinRange, parameterNodeWrapper

from .model_tasks import GENERATE_TASKS

ADAPTER_METHODS = ["tenvoo-l", "tenvoo-q", "lora", "dora", "loha", "lokr", "selora", "dylora", "adalora",
                   "norm-bias", "full", "controlled"]
ADAPTER_TARGETS = ["tenvoo", "all-conv", "attention"]


@parameterNodeWrapper
class DiffusionPEFTParameterNode:
    """Panel state. Paths: model package, current adapter package. Generate: synthesize takes the grid of
    ``referenceVolume``; translate turns ``sourceVolume`` into the target contrast (``targetVolume``, the
    true one if the user has it, becomes Compare's reference)."""

    modelPath: pathlib.Path
    adapterMethod: Annotated[str, Choice(ADAPTER_METHODS)] = "tenvoo-l"
    adapterRank: Annotated[int, WithinRange(1, 512)] = 4
    adapterTargets: Annotated[str, Choice(ADAPTER_TARGETS)] = "tenvoo"
    adapterPath: pathlib.Path
    trainingSteps: Annotated[int, WithinRange(1, 1_000_000)] = 200
    learningRate: Annotated[float, WithinRange(0.0, 1.0), Decimals(7), SingleStep(1e-5)] = 0.0  # 0 = the method's own
    batchSize: Annotated[int, WithinRange(1, 64)] = 1
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    generateTask: Annotated[str, Choice(GENERATE_TASKS)] = "synthesize"
    referenceVolume: vtkMRMLScalarVolumeNode
    sourceVolume: vtkMRMLScalarVolumeNode
    targetVolume: vtkMRMLScalarVolumeNode
    sampleCount: Annotated[int, WithinRange(1, 64)] = 1
    samplingSteps: Annotated[int, WithinRange(1, 1000)] = 50
    sampler: Annotated[str, Choice(["ddim", "ddpm"])] = "ddim"
    outputVolume: vtkMRMLScalarVolumeNode
    compareReferenceVolume: vtkMRMLScalarVolumeNode
    compareOutputVolume: vtkMRMLScalarVolumeNode


def isSet(path) -> bool:
    """A Path parameter counts as empty when it is '' or '.' (the wrapper's default, also what an empty
    path field gives)."""
    return path is not None and str(path).strip() not in ("", ".")
