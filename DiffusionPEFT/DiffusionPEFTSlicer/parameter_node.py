"""The panel's state, saved with the scene: a ``@parameterNodeWrapper`` class and the choices it offers."""

import pathlib
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, Decimals, SingleStep, WithinRange, parameterNodeWrapper

from .model_tasks import GENERATE_TASKS

ADAPTER_METHODS = ["tenvoo-l", "tenvoo-q", "lora", "dora", "loha", "lokr", "selora", "dylora", "adalora",
                   "norm-bias", "full", "controlled"]
ADAPTER_TARGETS = ["tenvoo", "all-conv", "attention"]
UNDERSAMPLING_MASKS = ["equispaced", "random", "vd"]  # vd: variable density
RECONSTRUCTION_METHODS = ["ddnm", "dds", "dps", "cs", "zero-filled"]
PRECISIONS = ["auto", "fp32", "bf16", "fp16"]  # auto: bf16 (or fp16) on a GPU, fp32 on the CPU
# Fields the panel keeps in step with their widgets itself: they come from the chosen model's card (a QComboBox
# binding needs a fixed Choice; the condition fields are made for each model).
PANEL_SYNCED_PARAMETERS = ("contrast", "conditionValues")


@parameterNodeWrapper
class DiffusionPEFTParameterNode:
    """Panel state. Paths: model package, current adapter package. Generate: synthesize takes the grid of
    ``referenceVolume``; translate turns ``sourceVolume`` into the target contrast (``targetVolume``, the
    true one if the user has it, becomes Compare's reference); reconstruct undersamples ``sourceVolume``
    (``acceleration``, ``undersamplingMask``, ``coils``) and reconstructs it. ``contrast``: the class of a
    class-conditioned model to synthesize or reconstruct ("" for none); ``conditionValues``: the numbers a
    conditioned (latent) model synthesizes with, as ``--condition`` text ``age=0.6,ventricular_vol=0.3``.
    ``precision`` and ``checkpointing``: how a fine-tune trains (and what the memory line plans for)."""

    modelPath: pathlib.Path
    adapterMethod: Annotated[str, Choice(ADAPTER_METHODS)] = "tenvoo-l"
    adapterRank: Annotated[int, WithinRange(1, 512)] = 4
    adapterTargets: Annotated[str, Choice(ADAPTER_TARGETS)] = "tenvoo"
    adapterPath: pathlib.Path
    trainingSteps: Annotated[int, WithinRange(1, 1_000_000)] = 200
    learningRate: Annotated[float, WithinRange(0.0, 1.0), Decimals(7), SingleStep(1e-5)] = 0.0  # 0 = the method's own
    batchSize: Annotated[int, WithinRange(1, 64)] = 1
    precision: Annotated[str, Choice(PRECISIONS)] = "auto"
    checkpointing: bool = False
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    generateTask: Annotated[str, Choice(GENERATE_TASKS)] = "synthesize"
    referenceVolume: vtkMRMLScalarVolumeNode
    sourceVolume: vtkMRMLScalarVolumeNode
    targetVolume: vtkMRMLScalarVolumeNode
    sampleCount: Annotated[int, WithinRange(1, 64)] = 1
    samplingSteps: Annotated[int, WithinRange(1, 1000)] = 50
    sampler: Annotated[str, Choice(["ddim", "ddpm"])] = "ddim"
    acceleration: Annotated[float, WithinRange(1.5, 16.0), Decimals(1), SingleStep(0.5)] = 4.0
    undersamplingMask: Annotated[str, Choice(UNDERSAMPLING_MASKS)] = "equispaced"
    coils: Annotated[int, WithinRange(1, 32)] = 1
    reconstructionMethod: Annotated[str, Choice(RECONSTRUCTION_METHODS)] = "ddnm"
    reconstructionSamples: Annotated[int, WithinRange(1, 16)] = 4
    contrast: str = ""
    conditionValues: str = ""
    outputVolume: vtkMRMLScalarVolumeNode
    compareReferenceVolume: vtkMRMLScalarVolumeNode
    compareOutputVolume: vtkMRMLScalarVolumeNode


def isSet(path) -> bool:
    """A Path parameter counts as empty when it is '' or '.' (the wrapper's default, also what an empty
    path field gives)."""
    return path is not None and str(path).strip() not in ("", ".")
