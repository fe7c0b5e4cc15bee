"""DiffusionPEFTLogic: the module's jobs for the panel and for batch scripts, without any GUI.

Each job gets a fresh folder (job.json + inputs as NIfTI) under :attr:`DiffusionPEFTLogic.jobsFolder`
and runs the backend in a subprocess; outputs are loaded into NEW nodes.
"""

import contextlib
import logging
import pathlib
import shutil
import tempfile
import time

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from .library_path import ensureLibraryImportable

ensureLibraryImportable()

from DiffusionPEFTLib.jobs import write_job  # noqa: E402  (needs the library root on sys.path)

from . import comparison, job_folders  # noqa: E402
from .backend_job import BackendJob  # noqa: E402
from .backend_queries import adapterOptions  # noqa: E402
from .conditions import conditionText  # noqa: E402
from .launcher import BackendLauncher, defaultLauncher  # noqa: E402
from .parameter_node import DiffusionPEFTParameterNode, isSet  # noqa: E402
from .volume_exchange import loadVolumeNode, writeVolumeNode  # noqa: E402

ADAPTER_FOLDER_NAME = "adapter"
CANCEL_GRACE_S = 10.0  # a job that ignores its stop file this long is killed
UNCERTAINTY = "uncertainty"  # the artifact role of a per-voxel std volume (optional: samples ≥ 2)


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
                 learningRate=0.0, batchSize=1, seed=0, device="auto", precision="auto", checkpointing=False,
                 waitForCompletion=True) -> BackendJob:
        """Train an adapter on ``trainingVolumes``; ``job.result.adapterPath`` is the adapter package.
        The selection methods (norm-bias, full, controlled) ignore ``rank`` and ``targets``;
        ``learningRate`` 0 means the method's own default (``diffusion-peft finetune --help``). ``precision``
        (auto, fp32, bf16, fp16) and ``checkpointing`` (activation checkpointing) trade time for memory."""
        if not trainingVolumes:
            raise ValueError(_("Select at least one training volume."))
        model = self._requireModel(modelPath)
        with self._newJobFolder("finetune") as folder:
            data = [self._writeInput(node, folder, f"train_{index:03d}") for index, node in enumerate(trainingVolumes)]
            write_job(folder, "finetune", {
                "model": str(model), "data": data, **adapterOptions(method, rank, targets), "steps": steps,
                **({"lr": learningRate} if learningRate > 0 else {}), "batch": batchSize, "precision": precision,
                "checkpointing": checkpointing, "out": ADAPTER_FOLDER_NAME,
            }, {"device": device, "seed": seed})

        def finish(result):
            result.adapterPath = folder / ADAPTER_FOLDER_NAME

        return self._run(folder, finish, waitForCompletion)

    def synthesize(self, modelPath, referenceVolume=None, adapterPath=None, count=1, steps=50, sampler="ddim",
                   seed=0, device="auto", contrast="", conditions=None, waitForCompletion=True) -> BackendJob:
        """Sample ``count`` volumes; with a reference they take its grid and intensity scale; ``contrast``: the
        class of a class-conditioned model; ``conditions``: the numbers of a conditioned model by name (e.g.
        ``{"age": 0.6}``; those not given take the model's defaults). ``job.result.nodes`` are the new volume
        nodes."""
        args = {"model": str(self._requireModel(modelPath)), "n": count, "steps": steps, "sampler": sampler,
                "out": "outputs/synthesized.nii", **self._contrastArgument(contrast),
                **({"condition": conditionText(conditions)} if conditions else {}),
                **self._adapterArgument(adapterPath)}
        with self._newJobFolder("synthesize") as folder:
            if referenceVolume is not None:
                args["like"] = self._writeInput(referenceVolume, folder, "reference")
            write_job(folder, "synthesize", args, {"device": device, "seed": seed})
        name = f"{referenceVolume.GetName()} synthesized" if referenceVolume is not None else "Synthesized"

        def finish(result):
            result.nodes = [loadVolumeNode(path, name, referenceVolume) for path in result.outputs]

        return self._run(folder, finish, waitForCompletion)

    def translate(self, modelPath, sourceVolume, adapterPath=None, samples=1, steps=25, seed=0, device="auto",
                  waitForCompletion=True) -> BackendJob:
        """Translate ``sourceVolume`` into the model's target contrast, on the source's grid. With ``samples``
        ≥ 2 the output is the mean of that many translations. ``job.result.nodes`` are new nodes beside the
        source: the translation, then (``samples`` ≥ 2) its per-voxel std, the uncertainty map."""
        if sourceVolume is None:
            raise ValueError(_("Select a source volume to translate."))
        args = {"model": str(self._requireModel(modelPath)), "samples": samples, "steps": steps,
                "out": "outputs/translated.nii", **self._adapterArgument(adapterPath)}
        folder = self._writeSourceJob("translate", sourceVolume, args, {"device": device, "seed": seed})
        name = f"{sourceVolume.GetName()} translated"

        def finish(result):
            result.nodes = self._loadBesideSource(result, sourceVolume,
                                                  {"translation": name, UNCERTAINTY: f"{name} std"})

        return self._run(folder, finish, waitForCompletion)

    def reconstruct(self, modelPath, sourceVolume, adapterPath=None, acceleration=4.0, mask="equispaced", coils=1,
                    method="ddnm", samples=4, contrast="", seed=0, device="auto", waitForCompletion=True) -> BackendJob:
        """Undersample the k-space of ``sourceVolume`` (a fully sampled magnitude scan) ``acceleration``-fold
        with ``mask`` over ``coils`` simulated coils, and reconstruct it with ``method``, the synthesis model as
        prior (``contrast``: its class, for a class-conditioned one). ``job.result.nodes`` are new nodes beside
        the source, on its grid: the reconstruction (mean of ``samples``), the zero-filled image, (``samples`` ≥ 2)
        the per-voxel std, then a metrics table of both against the source (``job.result.metrics``)."""
        if sourceVolume is None:
            raise ValueError(_("Select a source volume to reconstruct."))
        args = {"model": str(self._requireModel(modelPath)), "acceleration": acceleration, "mask": mask,
                "coils": coils, "method": method, "samples": samples, "out": "outputs/reconstruction.nii",
                **self._contrastArgument(contrast), **self._adapterArgument(adapterPath)}
        folder = self._writeSourceJob("reconstruct", sourceVolume, args, {"device": device, "seed": seed})
        name = f"{sourceVolume.GetName()} recon R{acceleration:g} {method}"
        names = {"reconstruction": name, "zero_filled": f"{sourceVolume.GetName()} zero-filled R{acceleration:g}",
                 UNCERTAINTY: f"{name} std"}

        def finish(result):
            table = comparison.metricsTable(comparison.reconstructionColumns(result.metrics), f"{name} metrics")
            result.nodes = [*self._loadBesideSource(result, sourceVolume, names), table]

        return self._run(folder, finish, waitForCompletion)

    def compare(self, referenceVolume, outputVolume, waitForCompletion=True) -> BackendJob:
        """Metrics of ``outputVolume`` against ``referenceVolume``; ``job.result.nodes`` = [difference, table]."""
        if referenceVolume is None or outputVolume is None:
            raise ValueError(_("Select a reference and an output volume to compare."))
        with self._newJobFolder("evaluate") as folder:
            write_job(folder, "evaluate", {"pred": self._writeInput(outputVolume, folder, "output"),
                                           "ref": self._writeInput(referenceVolume, folder, "reference"),
                                           "json": "metrics.json"}, {})

        def finish(result):
            result.nodes = [comparison.differenceVolume(referenceVolume, outputVolume),
                            comparison.metricsTable({"Value": result.metrics})]

        return self._run(folder, finish, waitForCompletion)

    def cancel(self, graceSeconds: float = CANCEL_GRACE_S) -> None:
        """Stop the running job: its stop file first (a fine-tune saves a checkpoint and exits), then
        kill its process tree if it still runs ``graceSeconds`` later (while it is polled)."""
        if self.activeJob is not None:
            self.activeJob.cancel(graceSeconds)

    @property
    def running(self) -> bool:
        return self.activeJob is not None and self.activeJob.running

    def deletableJobFolders(self, keep=()) -> list[pathlib.Path]:
        """This module's job folders (with NIfTI copies of the scans) but the running job's and those that
        are or contain a path of ``keep`` (e.g. the adapter in use)."""
        running = [self.activeJob.folder] if self.running else []
        return job_folders.jobFolders(self.jobsFolder, [*keep, *running])

    def deleteJobFolders(self, keep=()) -> list[pathlib.Path]:
        """Delete :meth:`deletableJobFolders`; return them."""
        folders = self.deletableJobFolders(keep)
        for folder in folders:
            shutil.rmtree(folder)
        return folders

    def _run(self, folder: pathlib.Path, finish, waitForCompletion: bool) -> BackendJob:
        if self.running:
            raise RuntimeError(_("A job is already running: cancel it or wait for it to finish."))
        job = BackendJob(folder, self.launcher, finish, self.progressCallback, self.logCallback,
                         self.completionCallback)
        self.activeJob = job.start()
        if waitForCompletion:
            job.wait(idle=slicer.app.processEvents)
        return job

    @contextlib.contextmanager
    def _newJobFolder(self, command: str):
        """A fresh job folder to prepare; removed again (with its input copies) if preparing fails."""
        self.jobsFolder.mkdir(parents=True, exist_ok=True)
        folder = pathlib.Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-",
                                               dir=self.jobsFolder))
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @staticmethod
    def _requireModel(modelPath) -> pathlib.Path:
        if not isSet(modelPath):
            raise ValueError(_("Choose a model first (Model section)."))
        return pathlib.Path(modelPath).resolve()

    @staticmethod
    def _adapterArgument(adapterPath) -> dict:
        return {"adapter": str(adapterPath)} if isSet(adapterPath) else {}

    @staticmethod
    def _contrastArgument(contrast: str) -> dict:
        return {"contrast": contrast} if contrast else {}

    def _writeSourceJob(self, command: str, sourceVolume, args: dict, options: dict) -> pathlib.Path:
        """A job folder for a task on ``sourceVolume`` (written as ``inputs/source.nii``, the ``source`` argument)."""
        with self._newJobFolder(command) as folder:
            args["source"] = self._writeInput(sourceVolume, folder, "source")
            write_job(folder, command, args, options)
        return folder

    @staticmethod
    def _loadBesideSource(result, sourceVolume, names: dict[str, str]) -> list:
        """New nodes on the grid of ``sourceVolume``, beside it: one per artifact role of ``names`` (role → node
        name) in that order; the uncertainty map, shown as such, only when the job made one."""
        nodes = []
        for role, name in names.items():
            path = result.artifactPath(role)
            if path is None and role == UNCERTAINTY:
                continue
            if path is None:
                raise OSError(f"The backend reported no {role} volume.")
            node = loadVolumeNode(path, name, sourceVolume)
            nodes.append(comparison.showAsUncertainty(node) if role == UNCERTAINTY else node)
        return nodes

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
