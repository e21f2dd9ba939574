"""SMART-Net training: fine-tune a SMART-Net model on your own segmented head CTs (3D Slicer scripted module).

Thin on purpose: what the module does with MRML (cases from the scene, their export, the train and register
runs, the curves chart) lives in ``SMARTNetSlicerLib.training_logic`` and is tested on slicer-core; the
training set, command lines, progress/curves/ETA and model registration live in ``SMARTNetLib``. The engine
session (timer, cancel) and the dependency check come from the SMARTNet module by composition.
"""

import logging
import os
import shutil

import numpy as np
import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SMARTNet import ensureDependencies, fillModelSelector, newEngineSession, slicerModuleLogics
from SMARTNetLib.client import analysis_results, engine_command, training_command, training_set
from SMARTNetLib.contracts import locations
from SMARTNetSlicerLib.training_logic import TrainingLogic

#
# SMARTNetTraining
#


class SMARTNetTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SMART-Net Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["SMARTNet"]
        self.parent.contributors = ["SMART-Net for 3D Slicer contributors"]
        self.parent.helpText = _("""
Fine-tunes a SMART-Net hemorrhage model on your own head CTs and their segmentations (segments named after the
hemorrhage type, e.g. "SDH" or "subdural"). The new model appears in the SMART-Net module's model list.
Research use only. See <a href="https://github.com/smartnet-slicer/SlicerSMARTNet">the documentation</a>.
""")
        self.parent.acknowledgementText = _("""
SMART-Net: Kyung et al., Medical Image Analysis 2022. Built on MONAI, PyTorch, SimpleITK and slicerio.
""")


#
# Parameter node
#


@parameterNodeWrapper
class SMARTNetTrainingParameterNode:
    """trainingSet: the cases as JSON (SMARTNetLib.client.training_set). workFolder: the last run's folder (Resume)."""

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    trainingSet: str = ""
    baseModel: str = ""
    modelName: str = "my-ich-model"
    epochs: int = 10
    learningRate: float = 0.001
    batchSize: int = 8
    validationSplit: float = 0.2
    device: str = "auto"
    workFolder: str = ""


#
# SMARTNetTrainingWidget
#


class SMARTNetTrainingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._modelChoices = []
        self._progress = None
        self._pretraining = None  # the options of the last pretraining run

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SMARTNetTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SMARTNetTrainingLogic()

        for value, label in engine_command.DEVICES:
            self.ui.deviceSelector.addItem(_(label), value)
        self.ui.casesTable.setHorizontalHeaderLabels([_("Case"), _("Source"), _("Segments → type"), _("Check")])
        self.ui.progressBar.visible = False
        for value, label in training_command.PRETRAINING_METHODS:
            self.ui.pretrainMethodSelector.addItem(_(label), value)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCase)
        self.ui.addAllPairsButton.connect("clicked(bool)", self.onAddAllPairs)
        self.ui.addFolderButton.connect("clicked(bool)", self.onAddFolder)
        self.ui.addDatalistButton.connect("clicked(bool)", self.onAddDatalist)
        self.ui.removeCaseButton.connect("clicked(bool)", self.onRemoveCase)
        self.ui.clearCasesButton.connect("clicked(bool)", self.onClearCases)
        self.ui.saveProjectButton.connect("clicked(bool)", self.onSaveProject)
        self.ui.loadProjectButton.connect("clicked(bool)", self.onLoadProject)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.baseModelSelector.connect("currentIndexChanged(int)", self.onBaseModelChanged)
        self.ui.deviceSelector.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.ui.resumeButton.connect("clicked(bool)", self.onResume)
        self.ui.pretrainBrowseButton.connect("clicked(bool)", self.onPretrainBrowse)
        self.ui.pretrainLoadedCheckBox.connect("toggled(bool)", self._updateButtons)
        self.ui.pretrainStartButton.connect("clicked(bool)", lambda: self.onPretrain(resume=False))
        self.ui.pretrainStopButton.connect("clicked(bool)", self.onStop)
        self.ui.pretrainResumeButton.connect("clicked(bool)", lambda: self.onPretrain(resume=True))

        self.initializeParameterNode()
        self.refreshModels()

    def cleanup(self) -> None:
        self.logic.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            index = self.ui.deviceSelector.findData(self._parameterNode.device)
            self.ui.deviceSelector.setCurrentIndex(max(index, 0))
        self._showCases()
        self._updateButtons()

    # -- training set ------------------------------------------------------------------------------
    def _cases(self) -> training_set.TrainingSet:
        text = self._parameterNode.trainingSet if self._parameterNode else ""
        try:
            return training_set.TrainingSet.from_json(text)
        except ValueError as err:
            self._log(_("The saved training set could not be read: {error}").format(error=err))
            return training_set.TrainingSet()

    def _setCases(self, cases) -> None:
        if self._parameterNode:
            self._parameterNode.trainingSet = cases.to_json()
        self._showCases()
        self._updateButtons()

    def _showCases(self) -> None:
        cases = self._cases() if self._parameterNode else training_set.TrainingSet()
        table = self.ui.casesTable
        table.setRowCount(len(cases))
        for row, case in enumerate(cases.cases):
            segments = "; ".join(training_set.mapping_text(s) for s in case.segments) or _("(no segment)")
            problem = self.logic.caseProblem(case)
            source = _("scene") if case.from_scene else os.path.dirname(case.image)
            status = problem or (_("unmapped segments") if case.unmapped_segments else _("OK"))
            for column, text in enumerate((case.name, source, segments, status)):
                item = qt.QTableWidgetItem(text)
                item.setToolTip(text)
                if column >= 2 and (problem or case.unmapped_segments):
                    item.setForeground(qt.QBrush(qt.QColor("#b45309" if not problem else "#b91c1c")))
                table.setItem(row, column, item)
        problems = cases.problems(val_split=self._parameterNode.validationSplit if self._parameterNode else 0.2)
        self.ui.casesSummaryLabel.text = "\n".join(p.message for p in problems) or _("{n} cases ready.").format(
            n=len(cases))

    def onAddCase(self) -> None:
        volume, segmentation = self.ui.volumeSelector.currentNode(), self.ui.segmentationSelector.currentNode()
        if volume is None or segmentation is None:
            slicer.util.warningDisplay(_("Select a volume and its segmentation."))
            return
        cases = self._cases()
        cases.add(self.logic.caseFromNodes(volume, segmentation))
        self._setCases(cases)

    def onAddAllPairs(self) -> None:
        cases = self._cases()
        added = sum(cases.add(self.logic.caseFromNodes(v, s)) for v, s in self.logic.loadedPairs())
        self._setCases(cases)
        self._log(_("{n} pairs added from the scene.").format(n=added))

    def onAddFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder of CTs and segmentations"))
        if folder:
            cases = self._cases()
            with slicer.util.tryWithErrorDisplay(_("Could not read the folder."), waitCursor=True):
                self._log(_("{n} cases added from {folder}.").format(n=cases.add_from_folder(folder), folder=folder))
            self._setCases(cases)

    def onAddDatalist(self) -> None:
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("MONAI datalist"), "",
                                              _("Datalist (*.json)"))
        if path:
            cases = self._cases()
            with slicer.util.tryWithErrorDisplay(_("Could not read the datalist."), waitCursor=True):
                self._log(_("{n} cases added from {path}.").format(n=cases.add_from_datalist(path), path=path))
            self._setCases(cases)

    def onRemoveCase(self) -> None:
        rows = sorted({item.row() for item in self.ui.casesTable.selectedItems()}, reverse=True)
        cases = self._cases()
        for row in rows:
            cases.remove(row)
        self._setCases(cases)

    def onClearCases(self) -> None:
        self._setCases(training_set.TrainingSet())

    def onSaveProject(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Project folder"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not save the project."), waitCursor=True):
                path = self.logic.saveProject(self._cases(), folder)
                self._log(_("Training set saved to {path}.").format(path=path))

    def onLoadProject(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Project folder"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Could not load the project."), waitCursor=True):
                self._setCases(training_set.TrainingSet.load(folder))

    # -- models ------------------------------------------------------------------------------------
    def refreshModels(self) -> None:
        self.ui.baseModelSelector.clear()
        self.ui.baseModelSelector.addItem(_("Looking for models..."))
        self.ui.baseModelSelector.enabled = False
        self.logic.listModels(self._onModelsListed)

    def _onModelsListed(self, choices, errorMessage) -> None:
        self._modelChoices = choices
        if errorMessage and not choices:
            self._log(_("Could not list models: {message}").format(message=errorMessage))
        fillModelSelector(self.ui.baseModelSelector, choices, errorMessage,
                          self._parameterNode.baseModel if self._parameterNode else "")
        self.onBaseModelChanged(self.ui.baseModelSelector.currentIndex)
        self._updateButtons()

    def onBaseModelChanged(self, index) -> None:
        if self._parameterNode and 0 <= index < len(self._modelChoices):
            self._parameterNode.baseModel = self._modelChoices[index].value
            self.ui.baseModelSelector.toolTip = self._modelChoices[index].tooltip

    def onDeviceChanged(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.device = self.ui.deviceSelector.itemData(index)

    # -- run ---------------------------------------------------------------------------------------
    def _updateButtons(self, *unused) -> None:
        running = self.logic is not None and self.logic.task in ("training", "register", "pretraining")
        self.ui.startButton.enabled = not running and bool(self._modelChoices)
        self.ui.stopButton.enabled = running and self.logic.task == "training"
        canResume = bool(self._parameterNode and self.logic.canResume(self._parameterNode.workFolder))
        self.ui.resumeButton.enabled = not running and canResume
        self.ui.pretrainStartButton.enabled = not running
        self.ui.pretrainStopButton.enabled = running and self.logic.task == "pretraining"
        self.ui.pretrainResumeButton.enabled = not running and bool(
            self.logic and self.logic.canResumePretraining(self._pretrainingOptions(resume=True).output))
        self.ui.pretrainFolderLineEdit.enabled = not self.ui.pretrainLoadedCheckBox.checked
        self.ui.pretrainBrowseButton.enabled = not self.ui.pretrainLoadedCheckBox.checked
        for widget in (self.ui.addCaseButton, self.ui.addAllPairsButton, self.ui.addFolderButton,
                       self.ui.addDatalistButton, self.ui.removeCaseButton, self.ui.clearCasesButton):
            widget.enabled = not running

    def _options(self, workFolder: str, resume: bool) -> training_command.TrainingOptions:
        p = self._parameterNode
        return training_command.TrainingOptions(
            datalist=os.path.join(workFolder, training_set.DATALIST_FILE), output=os.path.join(workFolder, "model"),
            base_model=p.baseModel, name=p.modelName, epochs=p.epochs, lr=p.learningRate, batch_size=p.batchSize,
            val_split=p.validationSplit, device=p.device, resume=resume)

    def onStart(self) -> None:
        if self.logic.busy:
            slicer.util.warningDisplay(_("The engine is busy; try again in a moment."))
            return
        if not self.logic.ensureDependencies():
            return
        p, cases = self._parameterNode, self._cases()
        errors = [x.message for x in cases.problems(val_split=p.validationSplit) if x.level == "error"]
        errors += [f"{c.name}: {self.logic.caseProblem(c)}" for c in cases.cases if self.logic.caseProblem(c)]
        overwrite = False
        nameProblem = locations.name_problem(p.modelName)
        if nameProblem and "exists already" in nameProblem:
            overwrite = slicer.util.confirmOkCancelDisplay(_("{problem}\n\nReplace it when training ends?").format(
                problem=nameProblem))
            nameProblem = None if overwrite else nameProblem
        if nameProblem:
            errors.append(nameProblem)
        if errors:
            slicer.util.errorDisplay(_("Training cannot start:\n") + "\n".join(errors))
            return
        workFolder = self.logic.workFolder(p.modelName)
        if self.logic.canResume(workFolder) and not slicer.util.confirmOkCancelDisplay(
                _("A previous training run of '{name}' exists. Start over (it is deleted)? Cancel, then Resume, "
                  "continues it instead.").format(name=p.modelName)):
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to write the training cases."), waitCursor=True):
            self.logic.prepareWorkFolder(cases, workFolder)
            p.workFolder = workFolder
            self._run(self._options(workFolder, resume=False), len(cases), overwrite)

    def onResume(self) -> None:
        if self.logic.busy or not self.logic.ensureDependencies():
            return
        workFolder = self._parameterNode.workFolder
        with slicer.util.tryWithErrorDisplay(_("Failed to resume the training."), waitCursor=True):
            self._run(self._options(workFolder, resume=True), len(self._cases()), overwrite=True)

    def onStop(self) -> None:
        self.logic.cancel()

    def _run(self, options, caseCount: int, overwrite: bool) -> None:
        self.ui.logText.clear()
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = True
        self.ui.statusLabel.text = _("Starting...")
        self._progress = training_command.TrainingProgress(options)
        self._caseCount, self._overwrite, self._warnedCpu = caseCount, overwrite, False
        self.logic.showChart(self._progress.curves)
        self.logic.train(options, onEvent=self._onEngineEvent, onFinished=self._onTrainingFinished)
        self._updateButtons()

    def _onEngineEvent(self, event) -> None:
        progress = self._progress
        progress.update(event)
        kind = event["event"]
        if kind == "progress":
            self.ui.progressBar.value = int(round(100 * progress.fraction))
            self.ui.statusLabel.text = progress.status_text()
        elif kind == "metrics":
            self._log(progress.epoch_text)
            self.logic.updateChart(progress.curves)
            self.ui.statusLabel.text = progress.status_text()
        elif kind == "log":
            prefix = _("Warning: ") if event.get("level") == "warning" else ""
            self._log(prefix + event.get("message", ""))
            if progress.device == "cpu" and progress.options.device != "cpu" and not self._warnedCpu:
                self._warnedCpu = True
                self._log(training_command.no_gpu_message(progress.options, self._caseCount))
        elif kind == "error":
            self._log(_("Error: {message}").format(message=event.get("message", "")))

    def _onTrainingFinished(self, outcome) -> None:
        options = self._progress.options
        if outcome.status == "cancelled":
            self.ui.progressBar.visible = False
            self.ui.statusLabel.text = _("Stopped. Resume continues from the last finished epoch.")
        elif not outcome.succeeded:
            self.ui.progressBar.visible = False
            for line in outcome.stderr_tail:
                self._log(line)
            message = training_command.failure_text(options, outcome.message, outcome.returncode, outcome.stderr_tail)
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Training failed: {message}").format(message=message))
        else:
            self.ui.statusLabel.text = _("Training done; comparing with the base model and registering...")
            cases = [c.name for c in self._cases().cases]
            self.logic.register(options, cases, self._overwrite, onFinished=self._onRegistered)
        self._updateButtons()

    def _onRegistered(self, outcome) -> None:
        self.ui.progressBar.visible = False
        if not outcome.succeeded:
            self.ui.statusLabel.text = _("Registering the model failed.")
            slicer.util.errorDisplay(_("The model was trained but could not be registered: {message}").format(
                message=outcome.message))
        else:
            result = outcome.result
            comparison = training_command.comparison_text({"comparison": {"base_model": result.get("base_metrics"),
                                                                        "new_model": result.get("new_metrics")}})
            self.ui.statusLabel.text = _("Model '{name}' is ready in the SMART-Net module. {comparison}").format(
                name=result["name"], comparison=comparison)
            self._log(self.ui.statusLabel.text)
            self.logic.notifyModelsChanged()
        self._updateButtons()

    # -- pretraining ---------------------------------------------------------------------------------
    def onPretrainBrowse(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder of unlabelled head CTs"))
        if folder:
            self.ui.pretrainFolderLineEdit.text = folder

    def _pretrainingOptions(self, resume: bool) -> training_command.PretrainingOptions:
        """Options of a pretraining run named after the new model (``<name>-pretrained``)."""
        p = self._parameterNode
        name = f"{(p.modelName if p else '') or 'smartnet'}-pretrained"
        folder = self.logic.pretrainingFolder(name)
        loaded = self.ui.pretrainLoadedCheckBox.checked
        data = os.path.join(folder, "scans") if loaded else self.ui.pretrainFolderLineEdit.text.strip()
        method = self.ui.pretrainMethodSelector.itemData(self.ui.pretrainMethodSelector.currentIndex) or "genesis"
        return training_command.PretrainingOptions(
            data=data, output=os.path.join(folder, "model"), method=method, name=name,
            epochs=self.ui.pretrainEpochsSpinBox.value, device=p.device if p else "auto", resume=resume)

    def onPretrain(self, resume: bool) -> None:
        if self.logic.busy:
            slicer.util.warningDisplay(_("The engine is busy; try again in a moment."))
            return
        if not self.logic.ensureDependencies():
            return
        options = self._pretrainingOptions(resume)
        loaded = self.ui.pretrainLoadedCheckBox.checked
        if not loaded and not os.path.isdir(options.data):
            slicer.util.errorDisplay(_("Choose a folder of unlabelled head CTs, or use the loaded volumes."))
            return
        if not resume and self.logic.canResumePretraining(options.output):
            if not slicer.util.confirmOkCancelDisplay(_("A previous pretraining run exists. Start over (it is "
                                                        "deleted)? Cancel, then Resume, continues it instead.")):
                return
            shutil.rmtree(options.output, ignore_errors=True)
        with slicer.util.tryWithErrorDisplay(_("Failed to start the pretraining."), waitCursor=True):
            if loaded and not resume:
                volumes = self.logic.unlabelledVolumes()
                if not volumes:
                    raise ValueError(_("No CT volume is loaded."))
                shutil.rmtree(options.data, ignore_errors=True)
                self.logic.exportVolumes(volumes, options.data)
            self._pretraining = options
            self.ui.logText.clear()
            self.ui.progressBar.value = 0
            self.ui.progressBar.visible = True
            self.ui.statusLabel.text = _("Pretraining...")
            self.logic.pretrain(options, onEvent=self._onPretrainEvent, onFinished=self._onPretrainFinished)
        self._updateButtons()

    def _onPretrainEvent(self, event) -> None:
        kind = event["event"]
        if kind == "progress":
            self.ui.progressBar.value = int(round(100 * float(event.get("fraction", 0.0))))
            self.ui.statusLabel.text = analysis_results.progress_text(event)
        elif kind == "metrics":
            self._log(training_command.pretraining_epoch_text(event))
        elif kind == "log":
            prefix = _("Warning: ") if event.get("level") == "warning" else ""
            self._log(prefix + event.get("message", ""))
        elif kind == "error":
            self._log(_("Error: {message}").format(message=event.get("message", "")))

    def _onPretrainFinished(self, outcome) -> None:
        self.ui.progressBar.visible = False
        options = self._pretraining
        if outcome.status == "cancelled":
            self.ui.statusLabel.text = _("Pretraining stopped. Resume continues from the last finished epoch.")
        elif not outcome.succeeded:
            for line in outcome.stderr_tail:
                self._log(line)
            self.ui.statusLabel.text = _("Pretraining failed.")
            slicer.util.errorDisplay(_("Pretraining failed: {message}").format(message=outcome.message))
        else:
            # The pretrained model becomes the base model of the fine-tuning.
            choice = engine_command.ModelChoice(
                label=_("{name} (pretrained, heads untrained)").format(name=options.name), value=options.output,
                tooltip=options.output, synthetic_only=False, name=options.name, version="1.0.0")
            self._modelChoices = [c for c in self._modelChoices if c.value != options.output] + [choice]
            if self._parameterNode:
                self._parameterNode.baseModel = options.output
            fillModelSelector(self.ui.baseModelSelector, self._modelChoices, "", options.output)
            self.onBaseModelChanged(self.ui.baseModelSelector.currentIndex)
            self.ui.statusLabel.text = _("Pretrained: {name} is now the base model; add annotated cases and Start "
                                         "to fine-tune it.").format(name=options.name)
            self._log(self.ui.statusLabel.text)
        self._updateButtons()

    def _log(self, text: str) -> None:
        self.ui.logText.appendPlainText(text)
        logging.info(text)


#
# SMARTNetTrainingLogic
#


class SMARTNetTrainingLogic(ScriptedLoadableModuleLogic, TrainingLogic):
    """The module's logic: :class:`TrainingLogic` on the application's scene, with the parameter node.

    Its own engine session (training runs beside an analysis); the MRML work is in
    ``SMARTNetSlicerLib.training_logic`` (tested on slicer-core)."""

    def __init__(self, logics=None, session=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        TrainingLogic.__init__(self, logics or slicerModuleLogics(), session or newEngineSession())

    def getParameterNode(self):
        return SMARTNetTrainingParameterNode(super().getParameterNode())

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        return ensureDependencies(askConfirmation)

    @property
    def task(self) -> str:
        return self.session.task

    @staticmethod
    def notifyModelsChanged() -> None:
        """Refresh the SMARTNet module's model selector (it lists models with ``smartnet models``)."""
        try:
            widget = slicer.util.getModuleWidget("SMARTNet")
        except Exception:  # module not loaded: nothing to refresh
            logging.info("SMART-Net: analysis module not available; its model list refreshes when it opens")
            return
        if widget.logic is not None and widget.logic.busy:
            qt.QTimer.singleShot(2000, SMARTNetTrainingLogic.notifyModelsChanged)  # after its current run
            return
        widget.refreshModels()


#
# SMARTNetTrainingTest
#


class SMARTNetTrainingTest(ScriptedLoadableModuleTest):
    """Runs in Slicer: two synthetic heads with segmentations, one epoch per stage, registration, model list."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TrainTwoSyntheticCases()

    def _syntheticCase(self, name: str, withBleed: bool):
        shape = (12, 48, 48)  # k, j, i
        k, j, i = np.indices(shape, dtype=np.float32)
        r = np.sqrt(((i - 24) / 21) ** 2 + ((j - 24) / 22) ** 2 + ((k - 6) / 8) ** 2)
        voxels = np.full(shape, -1000, np.int16)
        voxels[r < 1.0] = 1200
        voxels[r < 0.88] = 32
        bleed = ((((i - 9) / 3) ** 2 + ((j - 24) / 7) ** 2) < 1.0) & (r < 0.88)
        if withBleed:
            voxels[bleed] = 65
        volume = slicer.util.addVolumeFromArray(voxels, name=name)
        volume.SetSpacing(0.9, 0.9, 5.0)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segmentId = segmentation.GetSegmentation().AddEmptySegment("", "SDH")
        if withBleed:
            slicer.util.updateSegmentBinaryLabelmapFromArray(bleed.astype(np.uint8), segmentation, segmentId, volume)
        segmentation.GetSegmentation().AddEmptySegment("", "Skull")  # unmapped: flagged, not used
        return volume, segmentation

    def test_TrainTwoSyntheticCases(self):
        import tempfile

        self.delayDisplay("Starting the test")
        os.environ["SMARTNET_HOME"] = tempfile.mkdtemp(prefix="smartnet-training-test-")
        logic = SMARTNetTrainingLogic()
        self.assertTrue(logic.ensureDependencies(askConfirmation=False), "engine dependencies missing")
        pairs = [self._syntheticCase("Head 1", True), self._syntheticCase("Head 2", False)]
        self.assertEqual(len(logic.loadedPairs()), 2)

        cases = training_set.TrainingSet()
        for volume, segmentation in pairs:
            cases.add(logic.caseFromNodes(volume, segmentation))
        self.assertEqual([s.subtype for s in cases.cases[0].segments], ["subdural", None])
        self.assertFalse([p for p in cases.problems() if p.level == "error"])
        self.assertEqual([logic.caseProblem(c) for c in cases.cases], ["", ""])
        restored = training_set.TrainingSet.from_json(cases.to_json())
        self.assertEqual(restored, cases)

        choices = []
        logic.listModels(lambda found, error: choices.extend(found))
        logic.waitForCompletion(120)
        self.assertTrue(choices, "no base model found")

        workFolder = logic.workFolder("test-model")
        datalist = logic.prepareWorkFolder(cases, workFolder)
        options = training_command.TrainingOptions(datalist=datalist, output=os.path.join(workFolder, "model"),
                                                   base_model=choices[0].value, name="test-model", epochs=1,
                                                   downstream_epochs=1, batch_size=2, val_split=0.5, device="cpu")
        progress = training_command.TrainingProgress(options)
        finished = []
        logic.showChart(progress.curves)
        logic.train(options, onEvent=progress.update, onFinished=finished.append)
        logic.waitForCompletion(900)
        self.assertTrue(finished and finished[0].succeeded, finished and finished[0].message)
        self.assertEqual(len(progress.curves), 2)
        logic.updateChart(progress.curves)
        self.assertEqual(logic.chart[0].GetNumberOfRows(), 2)
        self.assertTrue(logic.canResume(workFolder))

        registered = []
        logic.register(options, [c.name for c in cases.cases], overwrite=False, onFinished=registered.append)
        logic.waitForCompletion(300)
        self.assertTrue(registered and registered[0].succeeded, registered and registered[0].message)
        modelDir = registered[0].result["model_dir"]
        self.assertTrue(os.path.isfile(os.path.join(modelDir, "model.json")))

        names = []
        logic.listModels(lambda found, error: names.extend(c.name for c in found))
        logic.waitForCompletion(120)
        self.assertIn("test-model", names)
        logic.notifyModelsChanged()
        self.delayDisplay("Test passed")
