"""The panel (PythonQt, works on Qt 5 and Qt 6 builds): binds the .ui to the parameter node and
turns buttons into logic calls.

Nothing here waits for the backend on the GUI thread. Jobs run in a subprocess that a timer polls;
the model card, the trainable share, the fine-tune's memory plan and the torch build are background
queries, asked again a moment after the parameter node last changed (typing a path, spin box arrows),
never for an empty path, and a newer query drops the answer of an older one.
"""

import pathlib

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from . import backend_queries, comparison, dependencies, formatting, job_folders, model_catalog, model_tasks
from .condition_fields import ConditionFields
from .conditions import chosenValues, conditionText, modelConditions
from .debounced_query import DebouncedQuery
from .job_result import JobFailed
from .logic import DiffusionPEFTLogic
from .loss_curve import LossCurve
from .parameter_node import isSet

POLL_INTERVAL_MS = 100
QUERY_DELAY_MS = 400  # ask once the input has settled
USER_ERRORS = (ValueError, RuntimeError, OSError, JobFailed)
# The Generate rows of each task: a widget of the .ui (with its "<name>Label") → the tasks that show it.
# Contrast also needs a class-conditioned model (model_tasks.CONTRAST_TASKS), Conditions a model conditioned on
# numbers (model_tasks.CONDITION_TASKS).
TASK_INPUTS = {
    "referenceVolumeSelector": ("synthesize",),
    "samplerComboBox": ("synthesize",),
    "sourceVolumeSelector": ("translate", "reconstruct"),
    "targetVolumeSelector": ("translate",),
    "sampleCountSpinBox": ("synthesize", "translate"),
    "samplingStepsSpinBox": ("synthesize", "translate"),
    "accelerationSpinBox": ("reconstruct",),
    "undersamplingMaskComboBox": ("reconstruct",),
    "coilsSpinBox": ("reconstruct",),
    "reconstructionMethodComboBox": ("reconstruct",),
    "reconstructionSamplesSpinBox": ("reconstruct",),
}


class DiffusionPEFTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Model · Adapter · Fine-tune · Generate · Compare · Setup · Log."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None  # setup() makes one unless it was given one (e.g. with another backend launcher)
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._lossCurve = None
        self._runningButton = None
        self._onJobSuccess = None
        self._idleText = ""
        self._environment = None
        self._card = None  # the chosen model's card; None while unknown
        self._cardKey = None
        self._trainableKey = None
        self._memoryKey = None
        self._memoryProposal = None  # the settings that fit, when the planned fine-tune does not
        self._conditionFields = None
        self._pollTimer = qt.QTimer()
        self._cardQuery = DebouncedQuery(self.startCardQuery, QUERY_DELAY_MS)
        self._trainableQuery = DebouncedQuery(self.startTrainableQuery, QUERY_DELAY_MS)
        self._memoryQuery = DebouncedQuery(self.startMemoryQuery, QUERY_DELAY_MS)
        self._environmentQuery = DebouncedQuery(self.startEnvironmentQuery, 0)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DiffusionPEFT.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logic or DiffusionPEFTLogic()
        self.logic.progressCallback = self.onProgress
        self.logic.logCallback = self.appendLog
        self.logic.completionCallback = self.onJobFinished
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPollJob)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.userModelsFolderButton.directory = str(self.userModelsFolder())
        self._fineTuneToolTip = self.ui.fineTuneButton.toolTip
        self._conditionFields = ConditionFields(self.ui.conditionsFrame, self.onConditionsEdited)
        for widget, signal, slot in (
            (self.ui.modelSelector, "activated(int)", self.onModelSelected),
            (self.ui.contrastComboBox, "activated(int)", self.onContrastSelected),
            (self.ui.userModelsFolderButton, "directoryChanged(QString)", self.onUserModelsFolderChanged),
            (self.ui.importModelButton, "clicked(bool)", self.onImportModel),
            (self.ui.loadAdapterButton, "clicked(bool)", self.onLoadAdapter),
            (self.ui.saveAdapterButton, "clicked(bool)", self.onSaveAdapter),
            (self.ui.useProposedSettingsButton, "clicked(bool)", self.onUseProposedSettings),
            (self.ui.fineTuneButton, "clicked(bool)", self.onFineTuneButton),
            (self.ui.generateButton, "clicked(bool)", self.onGenerateButton),
            (self.ui.compareButton, "clicked(bool)", self.onCompareButton),
            (self.ui.checkDependenciesButton, "clicked(bool)", self.onCheckDependencies),
            (self.ui.installDependenciesButton, "clicked(bool)", self.onInstallDependencies),
            (self.ui.deleteJobFoldersButton, "clicked(bool)", self.onDeleteJobFolders),
        ):
            widget.connect(signal, slot)
        self.refreshModels()
        self.showJobFolders()
        self.initializeParameterNode()

    def cleanup(self):
        """The panel goes away: stop the queries, and ask a running job to stop (a fine-tune saves a
        checkpoint); the backend then exits by itself."""
        self._pollTimer.stop()
        for query in (self._cardQuery, self._trainableQuery, self._memoryQuery, self._environmentQuery):
            query.cancel()
        self.logic.cancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        if self.logic.running:
            self._stopForSceneClose()
        self.setParameterNode(None)
        self._lossCurve = None

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def _stopForSceneClose(self):
        """Generate and Compare stop (their volumes leave with the scene). A fine-tune stops gracefully
        (a checkpoint in its job folder) unless the user lets it run on; its adapter then becomes the
        new scene's adapter."""
        folder = self.logic.activeJob.folder
        if self._runningButton is self.ui.fineTuneButton and not slicer.util.confirmOkCancelDisplay(
                _("A fine-tune is running (job folder {folder}).\n\nOK: stop it now; it saves a checkpoint there "
                  "that it can resume from.\nCancel: let it run on; its adapter is kept when it finishes.").format(
                    folder=folder), windowTitle=_("Closing the scene")):
            return
        self.logic.cancel()
        self._runningButton.text = _("Cancelling…")

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        """Bind the panel to ``parameterNode`` (None: unbind). A node without a model gets the first
        listed model, the one the Model selector shows."""
        if self._parameterNode is not None:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = parameterNode
        self._parameterNodeGuiTag = None
        self._cardKey = self._trainableKey = self._memoryKey = None
        if parameterNode is None:
            for query in (self._cardQuery, self._trainableQuery, self._memoryQuery):
                query.cancel()
            return
        if not isSet(parameterNode.modelPath) and self.ui.modelSelector.count:
            parameterNode.modelPath = pathlib.Path(self.ui.modelSelector.itemData(0))
        self._parameterNodeGuiTag = parameterNode.connectGui(self.ui)
        self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None):
        """Keep the Model selector on the chosen model and Generate on a task of the model with its inputs and
        chosen values; re-ask the queries whose inputs changed."""
        p = self._parameterNode
        self._showModelInSelector(p.modelPath)
        model = str(p.modelPath) if isSet(p.modelPath) else ""
        if model != self._cardKey:
            self._cardKey = model
            self._card = None
            self._offerModelTasks()
            self._askAgain(self._cardQuery, self.ui.modelCardLabel, model, formatting.CARD_PENDING_TEXT,
                           formatting.NO_MODEL_TEXT)
        self._keepTaskOfModel()
        self._showTaskInputs(p.generateTask)
        self.ui.contrastComboBox.setCurrentIndex(self.ui.contrastComboBox.findText(p.contrast))
        self._showConditions()
        choice = (model, p.adapterMethod, p.adapterRank, p.adapterTargets)
        if choice != self._trainableKey:
            self._trainableKey = choice
            self._askAgain(self._trainableQuery, self.ui.trainableLabel, model, formatting.TRAINABLE_PENDING_TEXT, "")
        self._askMemoryAgain()

    @staticmethod
    def _askAgain(query, label, model: str, pendingText: str, noModelText: str):
        if model:
            label.text = pendingText
            query.request()
        else:
            query.cancel()
            label.text = noModelText

    @staticmethod
    def _startQuery(start, onFailure):
        """``start()``'s BackgroundQuery; None (and ``onFailure``) when the backend cannot be started."""
        try:
            return start()
        except JobFailed as failure:
            onFailure(failure)
            return None

    # Model ---------------------------------------------------------------------------------------

    def userModelsFolder(self) -> pathlib.Path:
        return pathlib.Path(qt.QSettings().value(model_catalog.USER_MODELS_SETTING,
                                                 str(model_catalog.DEFAULT_USER_MODELS_FOLDER)))

    def onUserModelsFolderChanged(self, folder):
        qt.QSettings().setValue(model_catalog.USER_MODELS_SETTING, folder)
        self.refreshModels()

    def refreshModels(self):
        self.ui.modelSelector.clear()
        for entry in model_catalog.listModels(self.userModelsFolder()):
            self.ui.modelSelector.addItem(f"{entry.name} ({entry.origin})", str(entry.path))
        if self._parameterNode is not None:
            self._showModelInSelector(self._parameterNode.modelPath)

    def _showModelInSelector(self, path):
        """Select the entry of ``path``; none when it is not a listed model (typed or browsed elsewhere)."""
        selector = self.ui.modelSelector
        target = pathlib.Path(path).resolve() if isSet(path) else None
        listed = [pathlib.Path(selector.itemData(index)).resolve() for index in range(selector.count)]
        selector.setCurrentIndex(listed.index(target) if target in listed else -1)

    def onModelSelected(self, index):
        self._parameterNode.modelPath = pathlib.Path(self.ui.modelSelector.itemData(index))

    def onImportModel(self):
        source = qt.QFileDialog.getOpenFileName(self.parent, _("Import model package"), "",
                                                _("Model package (model.json *.zip)"))
        if source:
            with slicer.util.tryWithErrorDisplay(_("Could not import the model."), waitCursor=True):
                self._parameterNode.modelPath = model_catalog.importModelPackage(source, self.userModelsFolder())
                self.refreshModels()

    def startCardQuery(self):
        """Ask ``diffusion-peft info`` for the chosen model's card, in the background."""
        return self._startQuery(lambda: backend_queries.modelCard(
            self.logic.launcher, self._cardKey, self.onModelCard, self.onModelCardFailure), self.onModelCardFailure)

    def onModelCard(self, card):
        self._card = card
        self.ui.modelCardLabel.text = formatting.modelCardText(card, self._environment)
        self._offerModelTasks()

    def onModelCardFailure(self, failure):
        self._card = None
        self.ui.modelCardLabel.text = formatting.errorText(failure.message, failure.hint)
        self._offerModelTasks()

    def _offerModelTasks(self):
        """Offer the Generate tasks the chosen model runs (the task is chosen for the user when it runs one
        only), its contrasts, and Fine-tune only for a model it suits; all tasks while the card is unknown."""
        self.ui.generateTaskComboBox.enabled = len(model_tasks.generateTasks(self._card)) > 1
        self._offerContrasts()
        self._offerConditions()
        self._keepTaskOfModel()
        if self._parameterNode is not None:
            self._showTaskInputs(self._parameterNode.generateTask)
        fineTunable = model_tasks.fineTunable(self._card)
        self.ui.fineTuneButton.toolTip = self._fineTuneToolTip if fineTunable else formatting.notFineTunableText(self._card)
        self._enableJobButtons()
        self._askMemoryAgain()

    def _keepTaskOfModel(self):
        """A task the chosen model does not run (chosen before its card came, or picked in the list) becomes
        its first."""
        tasks = model_tasks.generateTasks(self._card)
        if self._parameterNode is not None and self._parameterNode.generateTask not in tasks:
            self._parameterNode.generateTask = tasks[0]

    def _offerContrasts(self):
        """List the model's contrasts in Contrast; a known card without the chosen one sets its first (or none)."""
        classes = model_tasks.conditionClasses(self._card)
        self.ui.contrastComboBox.clear()
        for name in classes:
            self.ui.contrastComboBox.addItem(name)
        p = self._parameterNode
        if p is None:
            return
        if self._card is not None and p.contrast not in classes:
            p.contrast = classes[0] if classes else ""
        self.ui.contrastComboBox.setCurrentIndex(self.ui.contrastComboBox.findText(p.contrast))

    def onContrastSelected(self, index):
        self._parameterNode.contrast = self.ui.contrastComboBox.itemText(index)

    def _chosenContrast(self) -> str:
        """The contrast a job gets: the chosen one when the model's card offers it, else none ("")."""
        contrast = self._parameterNode.contrast
        return contrast if contrast in model_tasks.conditionClasses(self._card) else ""

    def _offerConditions(self):
        """A known card sets the values to its model's conditions: the chosen ones it admits, its defaults for the
        rest ("" for a model without conditions)."""
        p = self._parameterNode
        if p is not None and self._card is not None:
            p.conditionValues = conditionText(self._chosenConditions())
        self._showConditions()

    def _showConditions(self):
        """One field per condition of the carded model, showing the chosen values."""
        if self._parameterNode is not None:
            self._conditionFields.show(modelConditions(self._card), self._chosenConditions())

    def onConditionsEdited(self, values):
        self._parameterNode.conditionValues = conditionText(values)

    def _chosenConditions(self) -> dict[str, float]:
        """The conditions a synthesis gets: a value for each of the carded model's ({} while its card is unknown)."""
        return chosenValues(modelConditions(self._card), self._parameterNode.conditionValues)

    # Adapter -------------------------------------------------------------------------------------

    def onLoadAdapter(self):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Adapter package folder"))
        if folder:
            self._parameterNode.adapterPath = pathlib.Path(folder)

    def onSaveAdapter(self):
        adapter = self._parameterNode.adapterPath
        if not (isSet(adapter) and model_catalog.isAdapterPackage(adapter)):
            self.ui.statusLabel.text = formatting.errorText(_("There is no adapter to save yet."),
                                                            _("Fine-tune one first, or load one (Load adapter…)."))
            return
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Save the adapter into this folder"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not save the adapter."), waitCursor=True):
                saved = model_catalog.copyPackage(adapter, pathlib.Path(folder))
            self._parameterNode.adapterPath = saved
            self.ui.statusLabel.text = _("Adapter saved: {path}").format(path=saved)

    def startTrainableQuery(self):
        """Ask the backend (``finetune --dry-run``, a few seconds) for the trainable share, in the background."""
        model, method, rank, targets = self._trainableKey
        return self._startQuery(lambda: backend_queries.adapterPlan(
            self.logic.launcher, model, method, rank, targets, onAnswer=self.onTrainablePlan,
            onFailure=self.onTrainableFailure), self.onTrainableFailure)

    def onTrainablePlan(self, plan):
        self.ui.trainableLabel.text = formatting.trainableText(plan["counts"])

    def onTrainableFailure(self, failure):
        self.ui.trainableLabel.text = formatting.errorText(failure.message, failure.hint)

    # Fine-tune -----------------------------------------------------------------------------------

    def _askMemoryAgain(self):
        """Plan the fine-tune's memory again once a setting it depends on changed; nothing for a model the panel
        does not fine-tune."""
        p = self._parameterNode
        if p is None:
            return
        model = str(p.modelPath) if isSet(p.modelPath) and model_tasks.fineTunable(self._card) else ""
        settings = (model, p.adapterMethod, p.adapterRank, p.adapterTargets, p.batchSize, p.precision, p.checkpointing,
                    p.device)
        if settings != self._memoryKey:
            self._memoryKey = settings
            self._showMemoryProposal(None)
            self._askAgain(self._memoryQuery, self.ui.memoryLabel, model, formatting.MEMORY_PENDING_TEXT, "")

    def startMemoryQuery(self):
        """Ask the backend (``finetune --plan``: model.json and one traced step) whether the fine-tune fits."""
        model, method, rank, targets, batch, precision, checkpointing, device = self._memoryKey
        return self._startQuery(lambda: backend_queries.memoryPlan(
            self.logic.launcher, model, method, rank, targets, batch, precision, checkpointing, device,
            onAnswer=self.onMemoryPlan, onFailure=self.onMemoryFailure), self.onMemoryFailure)

    def onMemoryPlan(self, plan):
        self.ui.memoryLabel.text = formatting.memoryText(plan)
        self._showMemoryProposal(None if plan["fits"] else plan.get("proposal"))

    def onMemoryFailure(self, failure):
        self.ui.memoryLabel.text = formatting.errorText(failure.message, failure.hint)
        self._showMemoryProposal(None)

    def _showMemoryProposal(self, proposal):
        self._memoryProposal = proposal
        self.ui.useProposedSettingsButton.setVisible(proposal is not None)

    def onUseProposedSettings(self):
        """Precision, Checkpointing and Batch become the settings the memory plan proposed."""
        proposal, p = self._memoryProposal, self._parameterNode
        p.precision, p.checkpointing, p.batchSize = proposal["precision"], proposal["checkpointing"], proposal["batch"]

    # Jobs ----------------------------------------------------------------------------------------

    def onFineTuneButton(self):
        p = self._parameterNode
        nodes = list(self.ui.trainingVolumesSelector.checkedNodes())
        if self._runningButton is None:
            self._showLossCurve()
        self._toggleJob(self.ui.fineTuneButton, lambda: self.logic.fineTune(
            nodes, p.modelPath, p.adapterMethod, p.adapterRank, p.adapterTargets, p.trainingSteps, p.learningRate,
            p.batchSize, p.seed, p.device, p.precision, p.checkpointing, waitForCompletion=False), self._onFineTuned)

    def _onFineTuned(self, result):
        """The new adapter becomes the scene's current one (also the scene opened while it ran)."""
        self.logic.getParameterNode().adapterPath = result.adapterPath

    def _showTaskInputs(self, task: str):
        """Generate shows the rows of ``task`` (TASK_INPUTS), Contrast for a class-conditioned model, Conditions for
        a model conditioned on numbers; Volumes (synthesize) are Samples to average (translate)."""
        for name, tasks in TASK_INPUTS.items():
            self._showRow(name, task in tasks)
        self._showRow("contrastComboBox", task in model_tasks.CONTRAST_TASKS
                      and bool(model_tasks.conditionClasses(self._card)))
        self._showRow("conditionsFrame", task in model_tasks.CONDITION_TASKS and bool(modelConditions(self._card)))
        synthesize = task == "synthesize"
        self.ui.sampleCountSpinBoxLabel.text = _("Volumes:") if synthesize else _("Samples:")
        self.ui.sampleCountSpinBox.toolTip = _("How many volumes to sample.") if synthesize else _(
            "Translations to average; 2 or more also give their per-voxel standard deviation (uncertainty map).")

    def _showRow(self, name: str, visible: bool):
        for widget in (getattr(self.ui, name), getattr(self.ui, f"{name}Label")):
            widget.setVisible(visible)

    def onGenerateButton(self):
        p = self._parameterNode
        if p.generateTask == "translate":
            source, target = p.sourceVolume, p.targetVolume
            self._toggleJob(self.ui.generateButton, lambda: self.logic.translate(
                p.modelPath, source, p.adapterPath, p.sampleCount, p.samplingSteps, p.seed, p.device,
                waitForCompletion=False), lambda result: self._onTranslated(result, source, target))
            return
        contrast = self._chosenContrast()
        if p.generateTask == "reconstruct":
            source = p.sourceVolume
            self._toggleJob(self.ui.generateButton, lambda: self.logic.reconstruct(
                p.modelPath, source, p.adapterPath, p.acceleration, p.undersamplingMask, p.coils,
                p.reconstructionMethod, p.reconstructionSamples, contrast, p.seed, p.device, waitForCompletion=False),
                lambda result: self._onReconstructed(result, source))
            return
        conditions = self._chosenConditions()
        self._toggleJob(self.ui.generateButton, lambda: self.logic.synthesize(
            p.modelPath, p.referenceVolume, p.adapterPath, p.sampleCount, p.samplingSteps, p.sampler, p.seed,
            p.device, contrast, conditions, waitForCompletion=False), self._onGenerated)

    def _onGenerated(self, result):
        p = self.logic.getParameterNode()
        p.outputVolume = p.compareOutputVolume = result.nodes[0]
        p.compareReferenceVolume = p.referenceVolume
        slicer.util.setSliceViewerLayers(background=result.nodes[0], fit=True)

    def _onTranslated(self, result, source, target):
        """Compare is set to score the translation against the target, when the user chose one."""
        translated, *uncertainty = result.nodes
        self._showBesideSource(source, translated, uncertainty, target)

    def _onReconstructed(self, result, source):
        """Compare is set to score the reconstruction against its source (the fully sampled truth); the metrics
        table shows it and its zero-filled baseline."""
        reconstruction, _zeroFilled, *uncertainty, table = result.nodes
        self.ui.metricsTableView.setMRMLTableNode(table)
        self._showBesideSource(source, reconstruction, uncertainty, source)

    def _showBesideSource(self, source, output, uncertainty: list, reference):
        """``output`` beside its source in linked views, its uncertainty map (if any) over it; it becomes the
        output, and Compare scores it against ``reference`` (if not None)."""
        p = self.logic.getParameterNode()
        p.outputVolume = p.compareOutputVolume = output
        if reference is not None:
            p.compareReferenceVolume = reference
        comparison.showSideBySide(source, output, *uncertainty)

    def onCompareButton(self):
        p = self._parameterNode
        self._toggleJob(self.ui.compareButton, lambda: self.logic.compare(
            p.compareReferenceVolume, p.compareOutputVolume, waitForCompletion=False), self._onCompared)

    def _onCompared(self, result):
        p = self.logic.getParameterNode()
        difference, table = result.nodes
        self.ui.metricsTableView.setMRMLTableNode(table)
        comparison.showSideBySide(p.compareReferenceVolume, p.compareOutputVolume, difference)

    def _toggleJob(self, button, start, succeeded):
        """Start a job from ``button`` (which becomes Cancel), or cancel the job it started (gracefully:
        stop file first, a fine-tune saves a checkpoint)."""
        if self._runningButton is button:
            self.logic.cancel()
            button.text = _("Cancelling…")
            return
        self.ui.statusLabel.text = ""
        try:
            start()
        except USER_ERRORS as error:
            self.ui.statusLabel.text = formatting.errorText(str(error))
            return
        self._runningButton, self._onJobSuccess = button, succeeded
        self._idleText = button.text
        button.text = _("Cancel")
        self._enableJobButtons()
        self._pollTimer.start()

    def _enableJobButtons(self):
        """While a job runs only its button (Cancel) is enabled; Fine-tune only for a model it suits."""
        for button in (self.ui.fineTuneButton, self.ui.generateButton, self.ui.compareButton):
            if self._runningButton is not None:
                button.enabled = button is self._runningButton
            else:
                button.enabled = button is not self.ui.fineTuneButton or model_tasks.fineTunable(self._card)

    def onPollJob(self):
        if not self.logic.activeJob.poll():
            self._pollTimer.stop()

    def onProgress(self, event):
        bar = self.ui.fineTuneProgressBar if self._runningButton is self.ui.fineTuneButton else self.ui.generateProgressBar
        bar.setValue(int(100 * event.get("step", 0) / max(event.get("total", 1), 1)))
        bar.setFormat(formatting.progressText(event))
        if event.get("stage") == "finetune" and event.get("loss") is not None and self._lossCurve:
            self._lossCurve.add(event["step"], event["loss"])

    def onJobFinished(self, result):
        button, succeeded = self._runningButton, self._onJobSuccess
        self._runningButton = self._onJobSuccess = None
        button.text = self._idleText
        self._enableJobButtons()
        if result.succeeded:
            succeeded(result)
            self.ui.statusLabel.text = _("Done. Job folder: {folder}").format(folder=result.folder)
        else:
            error = result.error or {}
            self.ui.statusLabel.text = formatting.errorText(error.get("message", ""), error.get("hint", ""))
        self.showJobFolders()

    def _showLossCurve(self):
        """Create the loss table, chart and plot view once per scene; start an empty curve."""
        if self._lossCurve is None:
            self._lossCurve = LossCurve()
            viewNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotViewNode", "DiffusionPEFT loss view")
            viewNode.SetPlotChartNodeID(self._lossCurve.chartNode.GetID())
            self.ui.lossPlotWidget.setMRMLPlotViewNode(viewNode)
        self._lossCurve.reset()

    # Setup, job folders and log ------------------------------------------------------------------

    def onCheckDependencies(self):
        missing = dependencies.missingDistributions()
        if missing:
            self.ui.environmentLabel.text = _("Missing: {packages}. Press Install dependencies…").format(
                packages=", ".join(missing))
            return
        self.ui.environmentLabel.text = _("All packages present. Asking the backend's Python for its device…")
        self._environmentQuery.request()

    def startEnvironmentQuery(self):
        return self._startQuery(lambda: backend_queries.environmentReport(
            self.logic.launcher, self.onEnvironment, self.onEnvironmentFailure), self.onEnvironmentFailure)

    def onEnvironment(self, environment):
        self._environment = environment
        self.ui.environmentLabel.text = _("All packages present. torch {torch}, CUDA {cuda}, GPU: {gpu}").format(
            torch=environment["torch"], cuda=environment["cuda"] or "none", gpu=environment["gpu"] or "none (CPU)")
        if self._card is not None:
            self.onModelCard(self._card)

    def onEnvironmentFailure(self, failure):
        self.ui.environmentLabel.text = formatting.errorText(failure.message, failure.hint)

    def onInstallDependencies(self):
        with slicer.util.tryWithErrorDisplay(_("Installing the dependencies failed."), waitCursor=True):
            dependencies.installDependencies()
        self.onCheckDependencies()

    def _keptJobPaths(self) -> list[pathlib.Path]:
        """The current adapter: its job folder is never deleted."""
        adapter = self._parameterNode.adapterPath if self._parameterNode is not None else None
        return [pathlib.Path(adapter)] if isSet(adapter) else []

    def showJobFolders(self):
        folders = job_folders.jobFolders(self.logic.jobsFolder)
        self.ui.jobFoldersLabel.text = _(
            "Job folders: {count} ({size}) in {folder}. Each holds NIfTI copies of the scans its job used.").format(
            count=len(folders), size=formatting.sizeText(job_folders.folderBytes(folders)), folder=self.logic.jobsFolder)

    def onDeleteJobFolders(self):
        folders = self.logic.deletableJobFolders(self._keptJobPaths())
        if folders and slicer.util.confirmOkCancelDisplay(
                _("Delete {count} job folders ({size}) in {folder}?\n\nThey hold NIfTI copies of the scans each job "
                  "used, its log and outputs. The running job and the job that made the current adapter are kept.").format(
                    count=len(folders), size=formatting.sizeText(job_folders.folderBytes(folders)),
                    folder=self.logic.jobsFolder), windowTitle=_("Delete job folders")):
            self.logic.deleteJobFolders(self._keptJobPaths())
        self.showJobFolders()

    def appendLog(self, text):
        self.ui.logTextEdit.appendPlainText(text)
