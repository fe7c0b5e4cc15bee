"""The panel (PythonQt, works on Qt 5 and Qt 6 builds): binds the .ui to the parameter node and
turns buttons into logic calls. Jobs run without blocking: a timer polls the running job. The trainable
share of the chosen adapter is recounted in the background whenever model, method, rank or targets change."""

import pathlib

import qt
import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from . import backend_queries, comparison, dependencies, formatting, model_catalog
from .job_result import JobFailed
from .loss_curve import LossCurve

POLL_INTERVAL_MS = 100
TRAINABLE_DELAY_MS = 400  # recount once the adapter choice has settled (spin box typing, arrow keys)
USER_ERRORS = (ValueError, RuntimeError, OSError, JobFailed)


class DiffusionPEFTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Model · Adapter · Fine-tune · Generate · Compare · Setup · Log."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._lossCurve = None
        self._runningButton = None
        self._onJobSuccess = None
        self._idleText = ""
        self._environment = None
        self._pollTimer = qt.QTimer()
        self._trainableQuery = None
        self._trainableDelayTimer = qt.QTimer()
        self._trainablePollTimer = qt.QTimer()

    def setup(self):
        from DiffusionPEFT import DiffusionPEFTLogic

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DiffusionPEFT.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffusionPEFTLogic()
        self.logic.progressCallback = self.onProgress
        self.logic.logCallback = self.appendLog
        self.logic.completionCallback = self.onJobFinished
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPollJob)
        self._trainableDelayTimer.setSingleShot(True)
        self._trainableDelayTimer.setInterval(TRAINABLE_DELAY_MS)
        self._trainableDelayTimer.connect("timeout()", self.startTrainableQuery)
        self._trainablePollTimer.setInterval(POLL_INTERVAL_MS)
        self._trainablePollTimer.connect("timeout()", self.onPollTrainableQuery)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.userModelsFolderButton.directory = str(self.userModelsFolder())
        for widget, signal, slot in (
            (self.ui.modelSelector, "activated(int)", self.onModelSelected),
            (self.ui.modelPathLineEdit, "currentPathChanged(QString)", self.updateModelCard),
            (self.ui.modelPathLineEdit, "currentPathChanged(QString)", self.onAdapterChoiceChanged),
            (self.ui.adapterMethodComboBox, "currentIndexChanged(int)", self.onAdapterChoiceChanged),
            (self.ui.adapterRankSpinBox, "valueChanged(int)", self.onAdapterChoiceChanged),
            (self.ui.adapterTargetsComboBox, "currentIndexChanged(int)", self.onAdapterChoiceChanged),
            (self.ui.userModelsFolderButton, "directoryChanged(QString)", self.onUserModelsFolderChanged),
            (self.ui.importModelButton, "clicked(bool)", self.onImportModel),
            (self.ui.loadAdapterButton, "clicked(bool)", self.onLoadAdapter),
            (self.ui.saveAdapterButton, "clicked(bool)", self.onSaveAdapter),
            (self.ui.fineTuneButton, "clicked(bool)", self.onFineTuneButton),
            (self.ui.generateButton, "clicked(bool)", self.onGenerateButton),
            (self.ui.compareButton, "clicked(bool)", self.onCompareButton),
            (self.ui.checkDependenciesButton, "clicked(bool)", self.onCheckDependencies),
            (self.ui.installDependenciesButton, "clicked(bool)", self.onInstallDependencies),
        ):
            widget.connect(signal, slot)
        self.refreshModels()
        self.initializeParameterNode()

    def cleanup(self):
        self._pollTimer.stop()
        self._trainableDelayTimer.stop()
        self._cancelTrainableQuery()
        self.logic.cancel(graceSeconds=0)
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.logic.cancel(graceSeconds=0)
        self.setParameterNode(None)
        self._lossCurve = None

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        if self._parameterNode and self._parameterNodeGuiTag:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.onAdapterChoiceChanged()

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

    def onModelSelected(self, index):
        self._parameterNode.modelPath = pathlib.Path(self.ui.modelSelector.itemData(index))

    def onImportModel(self):
        source = qt.QFileDialog.getOpenFileName(self.parent, _("Import model package"), "",
                                                _("Model package (model.json *.zip)"))
        if source:
            with slicer.util.tryWithErrorDisplay(_("Could not import the model."), waitCursor=True):
                self._parameterNode.modelPath = model_catalog.importModelPackage(source, self.userModelsFolder())
                self.refreshModels()

    def updateModelCard(self, path):
        if not path:
            self.ui.modelCardLabel.text = _("No model chosen.")
            return
        with slicer.util.WaitCursor():
            try:
                card = backend_queries.modelCard(self.logic.launcher, path)
                self.ui.modelCardLabel.text = formatting.modelCardText(card, self._environment)
            except USER_ERRORS as error:
                self.ui.modelCardLabel.text = formatting.errorText(str(error))

    # Adapter -------------------------------------------------------------------------------------

    def onLoadAdapter(self):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Adapter package folder"))
        if folder:
            self._parameterNode.adapterPath = pathlib.Path(folder)

    def onSaveAdapter(self):
        adapter = self._parameterNode.adapterPath
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Save the adapter into this folder"))
        if folder and adapter:
            with slicer.util.tryWithErrorDisplay(_("Could not save the adapter."), waitCursor=True):
                self._parameterNode.adapterPath = model_catalog.copyPackage(adapter, pathlib.Path(folder))

    def onAdapterChoiceChanged(self):
        """Drop the count under way (its answer is stale) and show "…"; recount when no further change
        came for TRAINABLE_DELAY_MS."""
        self._cancelTrainableQuery()
        self.ui.trainableLabel.text = formatting.TRAINABLE_PENDING_TEXT
        self._trainableDelayTimer.start()

    def startTrainableQuery(self):
        """Ask the backend (``finetune --dry-run``, a few seconds) for the trainable share, in the background."""
        from DiffusionPEFT import isSet

        p = self._parameterNode
        if p is None or not isSet(p.modelPath):
            self.ui.trainableLabel.text = ""
            return
        try:
            self._trainableQuery = backend_queries.adapterPlan(
                self.logic.launcher, p.modelPath, p.adapterMethod, p.adapterRank, p.adapterTargets,
                onAnswer=self.onTrainablePlan, onFailure=self.onTrainableFailure)
        except JobFailed as failure:
            self.onTrainableFailure(failure)
            return
        self._trainablePollTimer.start()

    def onPollTrainableQuery(self):
        if not self._trainableQuery.poll():
            self._trainablePollTimer.stop()

    def onTrainablePlan(self, plan):
        self.ui.trainableLabel.text = formatting.trainableText(plan["counts"])

    def onTrainableFailure(self, failure):
        self.ui.trainableLabel.text = formatting.errorText(failure.message)

    def _cancelTrainableQuery(self):
        self._trainablePollTimer.stop()
        if self._trainableQuery is not None:
            self._trainableQuery.cancel()
            self._trainableQuery = None

    # Jobs ----------------------------------------------------------------------------------------

    def onFineTuneButton(self):
        p = self._parameterNode
        nodes = list(self.ui.trainingVolumesSelector.checkedNodes())

        def succeeded(result):
            p.adapterPath = result.adapterPath

        if self._runningButton is None:
            self._showLossCurve()
        self._toggleJob(self.ui.fineTuneButton, lambda: self.logic.fineTune(
            nodes, p.modelPath, p.adapterMethod, p.adapterRank, p.adapterTargets, p.trainingSteps, p.learningRate,
            p.batchSize, p.seed, p.device, waitForCompletion=False), succeeded)

    def onGenerateButton(self):
        p = self._parameterNode

        def succeeded(result):
            p.outputVolume = p.compareOutputVolume = result.nodes[0]
            p.compareReferenceVolume = p.referenceVolume
            slicer.util.setSliceViewerLayers(background=result.nodes[0], fit=True)

        self._toggleJob(self.ui.generateButton, lambda: self.logic.synthesize(
            p.modelPath, p.referenceVolume, p.adapterPath, p.sampleCount, p.samplingSteps, p.sampler, p.seed,
            p.device, waitForCompletion=False), succeeded)

    def onCompareButton(self):
        p = self._parameterNode

        def succeeded(result):
            difference, table = result.nodes
            self.ui.metricsTableView.setMRMLTableNode(table)
            comparison.showSideBySide(p.compareReferenceVolume, p.compareOutputVolume, difference)

        self._toggleJob(self.ui.compareButton, lambda: self.logic.compare(
            p.compareReferenceVolume, p.compareOutputVolume, waitForCompletion=False), succeeded)

    def _toggleJob(self, button, start, succeeded):
        """Start a job from ``button`` (which becomes Cancel), or cancel the job it started."""
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
        for other in (self.ui.fineTuneButton, self.ui.generateButton, self.ui.compareButton):
            other.enabled = other is button
        self._pollTimer.start()

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
        for other in (self.ui.fineTuneButton, self.ui.generateButton, self.ui.compareButton):
            other.enabled = True
        if result.succeeded:
            succeeded(result)
            self.ui.statusLabel.text = _("Done. Job folder: {folder}").format(folder=result.folder)
        else:
            error = result.error or {}
            self.ui.statusLabel.text = formatting.errorText(error.get("message", ""), error.get("hint", ""))

    def _showLossCurve(self):
        """Create the loss table, chart and plot view once per scene; start an empty curve."""
        if self._lossCurve is None:
            self._lossCurve = LossCurve()
            viewNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotViewNode", "DiffusionPEFT loss view")
            viewNode.SetPlotChartNodeID(self._lossCurve.chartNode.GetID())
            self.ui.lossPlotWidget.setMRMLPlotViewNode(viewNode)
        self._lossCurve.reset()

    # Setup and log -------------------------------------------------------------------------------

    def onCheckDependencies(self):
        missing = dependencies.missingDistributions()
        if missing:
            self.ui.environmentLabel.text = _("Missing: {packages}").format(packages=", ".join(missing))
            return
        with slicer.util.tryWithErrorDisplay(_("The backend's Python does not start."), waitCursor=True):
            self._environment = backend_queries.environmentReport(self.logic.launcher)
            self.ui.environmentLabel.text = _("All packages present. torch {torch}, CUDA {cuda}, GPU: {gpu}").format(
                torch=self._environment["torch"], cuda=self._environment["cuda"] or "none",
                gpu=self._environment["gpu"] or "none (CPU)")

    def onInstallDependencies(self):
        with slicer.util.tryWithErrorDisplay(_("Installing the dependencies failed."), waitCursor=True):
            dependencies.installDependencies()
        self.onCheckDependencies()

    def appendLog(self, text):
        self.ui.logTextEdit.appendPlainText(text)
