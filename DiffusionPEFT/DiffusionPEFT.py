"""DiffusionPEFT: fine-tune pretrained 3D diffusion models on scene volumes with parameter-efficient
adapters, then synthesize volumes next to a reference and compare them (DESIGN.md §4).

The work runs in a subprocess (``PythonSlicer -m DiffusionPEFTLib run job.json``); this module knows
MRML and Qt, never torch. Helpers live in ``DiffusionPEFTSlicer/``.
"""

import logging
import pathlib
import tempfile
import time
from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, Decimals, SingleStep, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest

from DiffusionPEFTSlicer.library_path import ensureLibraryImportable

ensureLibraryImportable()

from DiffusionPEFTLib.jobs import write_job  # noqa: E402  (needs the library root on sys.path)
from DiffusionPEFTSlicer import comparison, sample_data  # noqa: E402
from DiffusionPEFTSlicer.backend_job import BackendJob  # noqa: E402
from DiffusionPEFTSlicer.backend_queries import adapterOptions  # noqa: E402
from DiffusionPEFTSlicer.launcher import BackendLauncher, defaultLauncher  # noqa: E402
from DiffusionPEFTSlicer.volume_exchange import loadVolumeNode, writeVolumeNode  # noqa: E402

ADAPTER_METHODS = ["tenvoo-l", "tenvoo-q", "lora", "dora", "loha", "lokr", "selora", "dylora", "adalora",
                   "norm-bias", "full", "controlled"]
ADAPTER_TARGETS = ["tenvoo", "all-conv", "attention"]
GENERATE_TASKS = ["synthesize"]
ADAPTER_FOLDER_NAME = "adapter"


class DiffusionPEFT(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Diffusion PEFT")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Machine Learning")]
        self.parent.dependencies = []
        self.parent.contributors = ["DiffusionPEFT developers"]
        self.parent.helpText = _(
            "Fine-tune a pretrained 3D diffusion model on volumes of the scene with a parameter-efficient "
            "adapter (TenVOO, LoRA, DoRA, …), synthesize new volumes on a reference grid and compare them "
            "(MS-SSIM, SSIM, PSNR, NRMSE). See docs/slicer.md in the extension repository.")
        self.parent.acknowledgementText = _("Built on MONAI generative models and 3D Slicer.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Offer every simulated volume shipped in Resources/SampleData in the Sample Data module."""
    import SampleData

    icon = pathlib.Path(__file__).parent / "Resources" / "Icons" / "DiffusionPEFT.png"
    for volume in sample_data.sampleVolumes():
        name = sample_data.volumeName(volume)
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=sample_data.SAMPLE_DATA_CATEGORY, sampleName=name,
            thumbnailFileName=str(sample_data.thumbnailFor(volume, icon)),
            uris=volume.as_uri(), fileNames=volume.name, nodeNames=name)


@parameterNodeWrapper
class DiffusionPEFTParameterNode:
    """Panel state, saved with the scene. Paths: model package, current adapter package."""

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
    sampleCount: Annotated[int, WithinRange(1, 64)] = 1
    samplingSteps: Annotated[int, WithinRange(1, 1000)] = 50
    sampler: Annotated[str, Choice(["ddim", "ddpm"])] = "ddim"
    outputVolume: vtkMRMLScalarVolumeNode
    compareReferenceVolume: vtkMRMLScalarVolumeNode
    compareOutputVolume: vtkMRMLScalarVolumeNode


def isSet(path) -> bool:
    """A Path parameter counts as empty when it is '' or '.' (the wrapper's default)."""
    return path is not None and str(path) not in ("", ".")


class DiffusionPEFTLogic(ScriptedLoadableModuleLogic):
    """Jobs for the panel and for batch scripts, without any GUI.

    Each method writes a job folder (job.json + inputs as NIfTI), runs the backend in a subprocess
    and returns its :class:`BackendJob`. With ``waitForCompletion=True`` (default) it blocks, loads the
    outputs into NEW nodes and raises ``JobFailed`` (message + hint) on failure; with False it returns
    the running job, which the caller polls. Callbacks: ``progressCallback(event)``,
    ``logCallback(text)``, ``completionCallback(result)``.
    """

    def __init__(self, launcher: BackendLauncher | None = None, jobsFolder=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.launcher = launcher or defaultLauncher()
        self.jobsFolder = pathlib.Path(jobsFolder or pathlib.Path(slicer.app.temporaryPath) / "DiffusionPEFT")
        self.progressCallback = None
        self.logCallback = None
        self.completionCallback = None
        self.activeJob: BackendJob | None = None

    def getParameterNode(self):
        return DiffusionPEFTParameterNode(super().getParameterNode())

    def fineTune(self, trainingVolumes, modelPath, method="tenvoo-l", rank=4, targets="tenvoo", steps=200,
                 learningRate=0.0, batchSize=1, seed=0, device="auto", waitForCompletion=True) -> BackendJob:
        """Train an adapter on ``trainingVolumes``; ``job.result.adapterPath`` is the adapter package.
        The selection methods (norm-bias, full, controlled) ignore ``rank`` and ``targets``;
        ``learningRate`` 0 means the method's own default (``diffusion-peft finetune --help``)."""
        if not trainingVolumes:
            raise ValueError(_("Select at least one training volume."))
        model = self._requireModel(modelPath)
        folder = self._newJobFolder("finetune")
        data = [self._writeInput(node, folder, f"train_{index:03d}") for index, node in enumerate(trainingVolumes)]
        write_job(folder, "finetune", {
            "model": str(model), "data": data, **adapterOptions(method, rank, targets), "steps": steps,
            **({"lr": learningRate} if learningRate > 0 else {}), "batch": batchSize, "out": ADAPTER_FOLDER_NAME,
        }, {"device": device, "seed": seed})

        def finish(result):
            result.adapterPath = folder / ADAPTER_FOLDER_NAME

        return self._run(folder, finish, waitForCompletion)

    def synthesize(self, modelPath, referenceVolume=None, adapterPath=None, count=1, steps=50, sampler="ddim",
                   seed=0, device="auto", waitForCompletion=True) -> BackendJob:
        """Sample ``count`` volumes; with a reference they take its grid and intensity scale.
        ``job.result.nodes`` are the new volume nodes."""
        args = {"model": str(self._requireModel(modelPath)), "n": count, "steps": steps, "sampler": sampler,
                "out": "outputs/synthesized.nii"}
        if isSet(adapterPath):
            args["adapter"] = str(adapterPath)
        folder = self._newJobFolder("synthesize")
        if referenceVolume is not None:
            args["like"] = self._writeInput(referenceVolume, folder, "reference")
        write_job(folder, "synthesize", args, {"device": device, "seed": seed})
        name = f"{referenceVolume.GetName()} synthesized" if referenceVolume is not None else "Synthesized"

        def finish(result):
            result.nodes = [loadVolumeNode(path, name, referenceVolume) for path in result.outputs]

        return self._run(folder, finish, waitForCompletion)

    def compare(self, referenceVolume, outputVolume, waitForCompletion=True) -> BackendJob:
        """Metrics of ``outputVolume`` against ``referenceVolume``; ``job.result.nodes`` = [difference, table]."""
        if referenceVolume is None or outputVolume is None:
            raise ValueError(_("Select a reference and an output volume to compare."))
        folder = self._newJobFolder("evaluate")
        write_job(folder, "evaluate", {"pred": self._writeInput(outputVolume, folder, "output"),
                                       "ref": self._writeInput(referenceVolume, folder, "reference"),
                                       "json": "metrics.json"}, {})

        def finish(result):
            result.nodes = [comparison.differenceVolume(referenceVolume, outputVolume),
                            comparison.metricsTable(result.metrics)]

        return self._run(folder, finish, waitForCompletion)

    def cancel(self, graceSeconds: float = 10.0) -> None:
        """Stop the running job: stop file first, then kill its process tree after ``graceSeconds``."""
        if self.activeJob is not None:
            self.activeJob.cancel(graceSeconds)

    def _run(self, folder: pathlib.Path, finish, waitForCompletion: bool) -> BackendJob:
        if self.activeJob is not None and self.activeJob.running:
            raise RuntimeError(_("A job is already running: cancel it or wait for it to finish."))
        job = BackendJob(folder, self.launcher, finish, self.progressCallback, self.logCallback,
                         self.completionCallback)
        self.activeJob = job.start()
        if waitForCompletion:
            job.wait(idle=slicer.app.processEvents)
        return job

    def _newJobFolder(self, command: str) -> pathlib.Path:
        self.jobsFolder.mkdir(parents=True, exist_ok=True)
        return pathlib.Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-",
                                             dir=self.jobsFolder))

    @staticmethod
    def _requireModel(modelPath) -> pathlib.Path:
        if not isSet(modelPath):
            raise ValueError(_("Choose a model first (Model section)."))
        return pathlib.Path(modelPath).resolve()

    @staticmethod
    def _writeInput(node, folder: pathlib.Path, stem: str) -> str:
        """Write ``node`` to ``inputs/<stem>.nii`` in the job folder; return that relative path."""
        if node is None or node.GetImageData() is None:
            raise ValueError(_("A selected volume has no image data."))
        relative = f"inputs/{stem}.nii"
        (folder / "inputs").mkdir(exist_ok=True)
        writeVolumeNode(node, folder / relative)
        logging.info(f"Wrote {node.GetName()} to {folder / relative}")
        return relative


from DiffusionPEFTSlicer.widget import DiffusionPEFTWidget  # noqa: E402,F401  (Slicer finds it here)


class DiffusionPEFTTest(ScriptedLoadableModuleTest):
    """In-Slicer self test ("Reload and Test"): scene ↔ job-folder volume exchange, no torch needed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_volumeRoundTripKeepsGeometry()

    def test_volumeRoundTripKeepsGeometry(self):
        import numpy as np

        self.delayDisplay("Writing an oblique volume and loading it back")
        ijkToRAS = np.array([[0.0, -0.9, 0.2, 10.0], [0.8, 0.0, 0.0, -5.0], [0.0, 0.1, 2.5, 3.0], [0, 0, 0, 1]])
        source = slicer.util.addVolumeFromArray(np.random.rand(6, 5, 4).astype(np.float32), ijkToRAS, "source")
        with tempfile.TemporaryDirectory() as folder:
            path = writeVolumeNode(source, pathlib.Path(folder) / "source.nii")
            loaded = loadVolumeNode(path, "loaded", source)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), slicer.util.arrayFromVolume(source))
        self.assertEqual(loaded.GetImageData().GetDimensions(), source.GetImageData().GetDimensions())
        self.delayDisplay("Test passed")
