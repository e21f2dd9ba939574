"""SMART-Net intracranial hemorrhage analysis of head CT (3D Slicer scripted module).

Thin on purpose: the engine runs in a child process (``PythonSlicer -m SMARTNetLib.cli analyze``), and
everything that is not a Slicer call (command lines, events, result files, the table's contents, segment
names and colours, dependency checks) lives in ``SMARTNetLib`` and is tested with pytest outside Slicer.
"""

import logging
import os
import shutil
import time

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
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

from SMARTNetLib import analysis_results, dependencies, engine_command
from SMARTNetLib.classes import class_from_segment_name
from SMARTNetLib.errors import SmartNetError
from SMARTNetLib.process_runner import ProcessRunner

# Node attributes that mark result nodes, so that re-running replaces them.
ROLE_ATTRIBUTE = "SMARTNet.Role"
INPUT_ATTRIBUTE = "SMARTNet.InputVolumeID"
REPORT_ATTRIBUTE = "SMARTNet.Report"
HEAT_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLColorTableNodeFileColdToHotRainbow.txt")
ACTIVATION_DISPLAY_THRESHOLD = 0.2  # heat below this is transparent in the slice views and in 3D


#
# SMARTNet
#


class SMARTNet(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SMART-Net Hemorrhage Analysis")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SMART-Net for 3D Slicer contributors"]
        self.parent.helpText = _("""
Detects and segments intracranial hemorrhage (epidural, intraparenchymal, intraventricular, subarachnoid,
subdural) in non-contrast head CT with SMART-Net, shows the probability of each subtype, its volume in mL and an
activation map. Research use only, not for diagnosis.
See <a href="https://github.com/smartnet-slicer/SlicerSMARTNet">the documentation</a>.
""")
        self.parent.acknowledgementText = _("""
SMART-Net: Kyung et al., Medical Image Analysis 2022. Built on MONAI, PyTorch, SimpleITK and slicerio.
""")


#
# Parameter node
#


@parameterNodeWrapper
class SMARTNetParameterNode:
    """inputVolume: the head CT. model: folder of the selected model. device: auto, cuda or cpu."""

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: str = "auto"


#
# SMARTNetWidget
#


class SMARTNetWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._modelChoices = []
        self._results = None  # dict of result nodes of the last run, see SMARTNetLogic.loadResults

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SMARTNet.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SMARTNetLogic()

        for value, label in engine_command.DEVICES:
            self.ui.deviceSelector.addItem(_(label), value)
        self.ui.syntheticNoticeLabel.visible = False
        self.ui.progressBar.visible = False
        self._setResultControlsEnabled(False)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceSelector.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateApplyButton)
        self.ui.jumpButton.connect("clicked(bool)", self.onJumpButton)
        self.ui.showActivationCheckBox.connect("toggled(bool)", self.onActivationDisplayChanged)
        self.ui.activationOpacitySlider.connect("valueChanged(double)", self.onActivationDisplayChanged)
        self.ui.activation3DCheckBox.connect("toggled(bool)", self.onActivation3DToggled)

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
        self._results = None
        self._setResultControlsEnabled(False)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            index = self.ui.deviceSelector.findData(self._parameterNode.device)
            self.ui.deviceSelector.setCurrentIndex(max(index, 0))
        self._updateApplyButton()

    # -- models ------------------------------------------------------------------------------------
    def refreshModels(self) -> None:
        """List models by running ``smartnet models`` in a child process (the GUI never imports torch).

        While the engine is busy the current list stays, and the refresh runs when the run ends (SMARTNetTraining
        calls this when it registers a new model)."""
        if self.logic.busy:
            self._modelsRefreshPending = True
            return
        self._modelsRefreshPending = False
        self.ui.modelSelector.clear()
        self.ui.modelSelector.addItem(_("Looking for models..."))
        self.ui.modelSelector.enabled = False
        self.logic.listModels(self._onModelsListed)

    def _onModelsListed(self, choices, errorMessage) -> None:
        self._modelChoices = choices
        if errorMessage and not choices:
            self._log(_("Could not list models: {message}").format(message=errorMessage))
            self._log(_("Click Analyze to check and install the engine's Python packages."))
        fillModelSelector(self.ui.modelSelector, choices, errorMessage,
                          self._parameterNode.model if self._parameterNode else "")
        self.onModelChanged(self.ui.modelSelector.currentIndex)

    def _selectedModel(self):
        index = self.ui.modelSelector.currentIndex
        return self._modelChoices[index] if 0 <= index < len(self._modelChoices) else None

    def onModelChanged(self, index) -> None:
        choice = self._selectedModel()
        self.ui.syntheticNoticeLabel.visible = bool(choice and choice.synthetic_only)
        self.ui.modelSelector.toolTip = choice.tooltip if choice else ""
        if choice and self._parameterNode:
            self._parameterNode.model = choice.value
        self._updateApplyButton()

    def onDeviceChanged(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.device = self.ui.deviceSelector.itemData(index)

    # -- run ---------------------------------------------------------------------------------------
    def _updateApplyButton(self, *unused) -> None:
        if self.logic.analyzing:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the analysis.")
            self.ui.applyButton.enabled = True
            return
        self.ui.applyButton.text = _("Analyze")
        ready = self.ui.inputSelector.currentNode() is not None
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (_("Run the hemorrhage analysis on the selected volume.") if ready
                                       else _("Select a head CT volume."))

    def onApplyButton(self) -> None:
        if self.logic.analyzing:
            self.logic.cancel()
            return
        if self.logic.busy:
            slicer.util.warningDisplay(_("Still looking for models; try again in a moment."))
            return
        if not self.logic.ensureDependencies():
            return
        if not self._modelChoices:
            self.refreshModels()  # the engine may have just been installed
            slicer.util.warningDisplay(_("No model is available yet; select one when the list is filled."))
            return
        inputVolume = self.ui.inputSelector.currentNode()
        choice = self._selectedModel()
        device = self.ui.deviceSelector.itemData(self.ui.deviceSelector.currentIndex)
        self.ui.logText.clear()
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = True
        self.ui.stageLabel.text = _("Starting...")
        with slicer.util.tryWithErrorDisplay(_("Failed to start the analysis."), waitCursor=True):
            self.logic.analyze(inputVolume, choice.value if choice else None, device,
                               onEvent=self._onEngineEvent, onFinished=self._onAnalysisFinished)
        self._updateApplyButton()

    def _onEngineEvent(self, event) -> None:
        kind = event["event"]
        if kind == "progress":
            self.ui.progressBar.value = int(round(100 * event["fraction"]))
            self.ui.stageLabel.text = analysis_results.progress_text(event)
        elif kind == "log":
            prefix = _("Warning: ") if event.get("level") == "warning" else ""
            self._log(prefix + event.get("message", ""))
        elif kind == "error":
            self._log(_("Error: {message}").format(message=event.get("message", "")))

    def _onAnalysisFinished(self, outcome, results, errorMessage) -> None:
        self.ui.progressBar.visible = False
        self._updateApplyButton()
        if getattr(self, "_modelsRefreshPending", False):
            qt.QTimer.singleShot(0, self.refreshModels)
        if outcome.status == "cancelled":
            self.ui.stageLabel.text = _("Cancelled.")
            return
        if errorMessage:
            self.ui.stageLabel.text = _("Failed.")
            for line in outcome.stderr_tail:
                self._log(line)
            slicer.util.errorDisplay(_("Analysis failed: {message}").format(message=errorMessage))
            return
        self._results = results
        self.ui.stageLabel.text = _("Done in {seconds:.1f} s.").format(seconds=outcome.elapsed_s)
        self.ui.summaryLabel.text = analysis_results.summary_text(results["report"])
        self.ui.resultsTableView.setMRMLTableNode(results["table"])
        self.ui.show3DButton.setSegmentationNode(results["segmentation"])
        self._setResultControlsEnabled(True)
        self.onActivationDisplayChanged()
        self.ui.activation3DCheckBox.checked = False

    def _log(self, text: str) -> None:
        self.ui.logText.appendPlainText(text)
        logging.info(text)

    # -- results -----------------------------------------------------------------------------------
    def _setResultControlsEnabled(self, enabled: bool) -> None:
        hasActivation = bool(enabled and self._results and self._results.get("activation"))
        hasTarget = bool(enabled and self._results and self._results.get("largestFinding"))
        self.ui.jumpButton.enabled = hasTarget
        self.ui.show3DButton.enabled = enabled
        for widget in (self.ui.showActivationCheckBox, self.ui.activationOpacitySlider, self.ui.activation3DCheckBox):
            widget.enabled = hasActivation

    def onJumpButton(self) -> None:
        if self._results:
            self.logic.jumpToFinding(self._results["largestFinding"], self._results["inputVolume"])

    def onActivationDisplayChanged(self, *unused) -> None:
        if self._results and self._results.get("activation"):
            self.logic.showActivation(self._results["activation"], self.ui.showActivationCheckBox.checked,
                                      self.ui.activationOpacitySlider.value)

    def onActivation3DToggled(self, checked) -> None:
        if self._results and self._results.get("activation"):
            with slicer.util.tryWithErrorDisplay(_("Failed to show the activation map in 3D."), waitCursor=True):
                self.logic.showActivation3D(self._results["activation"], checked)


def fillModelSelector(selector, choices, errorMessage: str, wanted: str) -> None:
    """Fill a model combo box with ``smartnet models`` choices (signals blocked) and select ``wanted`` (else
    the first); shared by the SMARTNet and SMARTNetTraining widgets."""
    selector.blockSignals(True)
    selector.clear()
    for index, choice in enumerate(choices):
        selector.addItem(choice.label, choice.value)
        selector.setItemData(index, choice.tooltip, qt.Qt.ToolTipRole)
    if not choices:
        selector.addItem(_("No model found") if not errorMessage else _("Engine not ready"))
    selector.enabled = bool(choices)
    selector.blockSignals(False)
    index = selector.findData(wanted) if wanted else -1
    selector.setCurrentIndex(max(index, 0))


#
# SMARTNetLogic
#


class SMARTNetLogic(ScriptedLoadableModuleLogic):
    """Runs the engine in a child process and turns its files into MRML nodes. Usable without the GUI."""

    TIMER_INTERVAL_MS = 100

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.runner = None
        self.task = ""  # "models" or "analysis" while the engine runs
        self._timer = qt.QTimer()
        self._timer.setInterval(self.TIMER_INTERVAL_MS)
        self._timer.connect("timeout()", self._drainEvents)
        self._onEvent = None
        self._onFinished = None

    def getParameterNode(self):
        return SMARTNetParameterNode(super().getParameterNode())

    @property
    def busy(self) -> bool:
        return self.runner is not None

    @property
    def analyzing(self) -> bool:
        return self.runner is not None and self.task == "analysis"

    # -- child process -----------------------------------------------------------------------------
    @staticmethod
    def engineParentDir() -> str:
        """Folder that contains SMARTNetLib (this module's folder, in a source tree and when installed)."""
        return os.path.dirname(os.path.abspath(__file__))

    def startEngine(self, args, onEvent=None, onFinished=None, task="") -> ProcessRunner:
        """Run ``args`` in Slicer's startup environment with SMARTNetLib importable; events go to ``onEvent``
        on the GUI thread, ``onFinished(outcome)`` once the child ended."""
        if self.busy:
            raise RuntimeError(_("The engine is already running."))
        env = engine_command.engine_environment(slicer.util.startupEnvironment(), self.engineParentDir())
        logging.info(f"SMART-Net: running {' '.join(args)}")
        self.runner = ProcessRunner(args, env=env).start()
        self.task = task
        self._onEvent, self._onFinished = onEvent, onFinished
        self._timer.start()
        return self.runner

    def _drainEvents(self) -> None:
        runner = self.runner
        if runner is None:
            self._timer.stop()
            return
        for event in runner.poll():
            if self._onEvent and event["event"] != "exit":
                self._onEvent(event)
        if runner.finished:
            self._timer.stop()
            onFinished, self._onFinished, self._onEvent, self.runner = self._onFinished, None, None, None
            self.task = ""
            if onFinished:
                onFinished(runner.outcome())

    def cancel(self) -> None:
        """Kill the running engine and its children (the rest happens when its exit event arrives)."""
        if self.runner is not None:
            self.runner.cancel()

    def waitForCompletion(self, timeoutSeconds: float = 600.0) -> None:
        """Process events until the engine finished (for tests and scripts)."""
        deadline = time.monotonic() + timeoutSeconds
        while self.busy:
            if time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"SMART-Net analysis did not finish in {timeoutSeconds} s")
            slicer.app.processEvents()
            time.sleep(0.02)

    @staticmethod
    def pythonExecutable() -> str:
        return engine_command.python_slicer_executable()

    def listModels(self, onDone) -> None:
        """``onDone(choices, errorMessage)`` with the models that ``smartnet models`` finds."""

        def finished(outcome):
            if outcome.succeeded:
                onDone(engine_command.model_choices(outcome.result), "")
            else:
                onDone([], outcome.message)

        if self.busy:
            onDone([], _("the engine is busy"))
            return
        self.startEngine(engine_command.models_command(self.pythonExecutable()), onFinished=finished, task="models")

    # -- dependencies ------------------------------------------------------------------------------
    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        """Check the engine's packages in Slicer's Python; offer to install missing ones. True when ready."""
        problems = dependencies.check()
        if not problems:
            return True
        plan = dependencies.install_plan(problems)
        if plan.unfixable:
            packages = ", ".join(plan.unfixable)
            slicer.util.errorDisplay(_("These packages that ship with Slicer are missing or too old: {packages}. "
                                       "Please reinstall or update 3D Slicer.").format(packages=packages))
            return False
        testing = slicer.app.testingEnabled()
        message = _("SMART-Net needs these Python packages in Slicer's Python:\n{problems}\n\n"
                    "Install them now? This downloads several hundred MB and can take minutes.").format(
            problems=dependencies.describe(problems))
        if askConfirmation and not testing and not slicer.util.confirmOkCancelDisplay(message):
            return False
        restart = dependencies.restart_needed(problems)
        with slicer.util.tryWithErrorDisplay(_("Failed to install the Python packages."), waitCursor=True):
            if plan.torch:
                self._installTorch(plan.torch)
            if plan.pip:
                slicer.util.pip_install(plan.pip)
        remaining = dependencies.check()
        if remaining:
            slicer.util.errorDisplay(_("Still missing after installation:\n{problems}").format(
                problems=dependencies.describe(remaining)))
            return False
        if restart and not testing:
            if slicer.util.confirmYesNoDisplay(_("Packages that were already loaded were updated. 3D Slicer must "
                                                 "restart before other modules can use them. Restart now?")):
                slicer.util.restart()
            return False
        return True

    @staticmethod
    def _installTorch(spec: str) -> None:
        """torch through the PyTorch extension (right CUDA build for the driver), pip without it."""
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            logging.info("PyTorch extension not installed; installing torch with pip")
            slicer.util.pip_install(spec)
            return
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=dependencies.torch_version_requirement(spec))
        if torch is None:
            raise RuntimeError(_("PyTorch was not installed."))

    # -- analysis ----------------------------------------------------------------------------------
    def analyze(self, inputVolume, model=None, device="auto", onEvent=None, onFinished=None) -> None:
        """Write the volume to a temp folder and start the engine on it; returns at once.

        ``onFinished(outcome, results, errorMessage)``: ``results`` is the dict of :meth:`loadResults`
        (None on failure); the temp folder is removed in every case.
        """
        if inputVolume is None:
            raise ValueError(_("Select an input volume."))
        tempDir = slicer.util.tempDirectory("SMARTNet")
        try:
            inputPath = os.path.join(tempDir, "input.nrrd")
            self.writeVolume(inputVolume, inputPath)
            outputDir = os.path.join(tempDir, "output")
            args = engine_command.analyze_command(self.pythonExecutable(), inputPath, outputDir, model, device)
            inputVolumeID = inputVolume.GetID()

            def finished(outcome):
                results, error = None, ""
                try:
                    if outcome.succeeded:
                        results = self.loadResults(slicer.mrmlScene.GetNodeByID(inputVolumeID), outcome.result)
                    elif outcome.status != "cancelled":
                        error = outcome.message
                except Exception as err:  # shown to the user; the GUI must leave its running state
                    error = str(err)
                    logging.exception("SMART-Net: loading results failed")
                finally:
                    shutil.rmtree(tempDir, ignore_errors=True)
                if onFinished:
                    onFinished(outcome, results, error)

            self.startEngine(args, onEvent=onEvent, onFinished=finished, task="analysis")
        except Exception:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise

    @staticmethod
    def writeVolume(volumeNode, path: str) -> None:
        """Write through a temporary storage node, so that the node's own storage keeps its file name."""
        storageNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        try:
            storageNode.SetFileName(path)
            storageNode.UseCompressionOff()
            if not storageNode.WriteData(volumeNode):
                raise RuntimeError(_("Could not write the input volume to {path}").format(path=path))
        finally:
            slicer.mrmlScene.RemoveNode(storageNode)

    def loadResults(self, inputVolume, resultEvent) -> dict:
        """Segmentation, table and activation nodes from the engine's output; replaces earlier results."""
        if inputVolume is None:
            raise ValueError(_("The input volume was removed during the analysis."))
        case = analysis_results.case_from_result(resultEvent)
        report = analysis_results.read_report(case.report)
        files = analysis_results.result_files(case.output_dir, report)
        if files.segmentation is None:
            raise SmartNetError("the engine wrote no segmentation", case.output_dir)
        self.removeResults(inputVolume)
        baseName = inputVolume.GetName()
        segmentation = self._loadSegmentation(files.segmentation, report, inputVolume, f"{baseName} hemorrhage")
        table = self._createTable(report, f"{baseName} SMART-Net results")
        activation = None
        if files.activation:
            activation = slicer.util.loadVolume(files.activation, {"name": f"{baseName} activation", "show": False})
            self._setUpActivationDisplay(activation)
        for role, node in (("segmentation", segmentation), ("table", table), ("activation", activation)):
            if node is not None:
                self._markResult(node, role, inputVolume)
        return {"inputVolume": inputVolume, "segmentation": segmentation, "table": table, "activation": activation,
                "report": report, "largestFinding": analysis_results.largest_finding(report)}

    def _markResult(self, node, role: str, inputVolume) -> None:
        node.SetAttribute(ROLE_ATTRIBUTE, role)
        node.SetAttribute(INPUT_ATTRIBUTE, inputVolume.GetID())
        # Results follow the input volume: same transform, same place in the subject hierarchy.
        if hasattr(node, "SetAndObserveTransformNodeID"):
            node.SetAndObserveTransformNodeID(inputVolume.GetTransformNodeID())
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        parentItem = shNode.GetItemParent(shNode.GetItemByDataNode(inputVolume))
        shNode.SetItemParent(shNode.GetItemByDataNode(node), parentItem)

    def resultNodes(self, inputVolume) -> list:
        """Nodes made by earlier runs on ``inputVolume``."""
        found = []
        for className in ("vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLScalarVolumeNode"):
            for node in slicer.util.getNodesByClass(className):
                if node.GetAttribute(INPUT_ATTRIBUTE) == inputVolume.GetID() and node.GetAttribute(ROLE_ATTRIBUTE):
                    found.append(node)
        return found

    def removeResults(self, inputVolume) -> None:
        """Remove the previous results of ``inputVolume`` with their display, storage and rendering nodes."""
        for node in self.resultNodes(inputVolume):
            helpers = []
            # the findings table is a storable node, not a displayable one: it has no display nodes
            displayNodes = node.GetNumberOfDisplayNodes() if node.IsA("vtkMRMLDisplayableNode") else 0
            for i in range(displayNodes):
                displayNode = node.GetNthDisplayNode(i)
                if displayNode is None:
                    continue
                helpers.append(displayNode)
                if displayNode.IsA("vtkMRMLVolumeRenderingDisplayNode") and displayNode.GetVolumePropertyNode():
                    helpers.append(displayNode.GetVolumePropertyNode())
            if node.GetStorageNode():
                helpers.append(node.GetStorageNode())
            slicer.mrmlScene.RemoveNode(node)
            for helper in helpers:
                if helper.GetScene():
                    slicer.mrmlScene.RemoveNode(helper)

    def _loadSegmentation(self, path: str, report: dict, inputVolume, name: str):
        segmentationNode = slicer.util.loadSegmentation(path, {"name": name})
        segmentation = segmentationNode.GetSegmentation()
        segmentIds = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        names = [segmentation.GetSegment(segmentId).GetName() for segmentId in segmentIds]
        for segmentId, plan in zip(segmentIds, analysis_results.segment_plan(report, names)):
            if not plan.keep:
                segmentation.RemoveSegment(segmentId)
                continue
            segment = segmentation.GetSegment(segmentId)
            segment.SetName(plan.name)
            segment.SetColor(*plan.color)
            if plan.terminology:
                segment.SetTag(segment.GetTerminologyEntryTagName(), plan.terminology)
        # Needed for DICOM SEG export, and so that editing happens on the CT's grid.
        segmentationNode.SetNodeReferenceID(segmentationNode.GetReferenceImageGeometryReferenceRole(),
                                            inputVolume.GetID())
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(inputVolume)
        return segmentationNode

    @staticmethod
    def _createTable(report: dict, name: str):
        header, rows = analysis_results.findings_table(report)
        tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
        for title in header:
            column = vtk.vtkStringArray()
            column.SetName(title)
            tableNode.AddColumn(column)
        for row in rows:
            rowIndex = tableNode.AddEmptyRow()
            for columnIndex, text in enumerate(row):
                tableNode.SetCellText(rowIndex, columnIndex, text)
        tableNode.SetAttribute(REPORT_ATTRIBUTE, report.get("input", ""))
        return tableNode

    @staticmethod
    def _heatColorNodeID() -> str:
        for nodeID in HEAT_COLOR_NODE_IDS:
            if slicer.mrmlScene.GetNodeByID(nodeID):
                return nodeID
        return "vtkMRMLColorTableNodeRainbow"

    def _setUpActivationDisplay(self, activation) -> None:
        displayNode = activation.GetDisplayNode()
        if displayNode is None:
            activation.CreateDefaultDisplayNodes()
            displayNode = activation.GetDisplayNode()
        displayNode.SetAndObserveColorNodeID(self._heatColorNodeID())
        displayNode.SetAutoWindowLevel(0)
        displayNode.SetWindowLevelMinMax(0.0, 1.0)
        displayNode.SetAutoThreshold(0)
        displayNode.SetThreshold(ACTIVATION_DISPLAY_THRESHOLD, 1.0)
        displayNode.SetApplyThreshold(1)

    @staticmethod
    def showActivation(activation, visible: bool, opacity: float) -> None:
        """Heat map as the foreground layer of every slice view (or hidden)."""
        slicer.util.setSliceViewerLayers(foreground=activation if visible else None, foregroundOpacity=opacity)

    @staticmethod
    def showActivation3D(activation, visible: bool) -> None:
        """Volume rendering of the heat map with the slice views' colours and threshold."""
        volRenLogic = slicer.modules.volumerendering.logic()
        displayNode = volRenLogic.GetFirstVolumeRenderingDisplayNode(activation)
        if displayNode is None:
            if not visible:
                return
            displayNode = volRenLogic.CreateDefaultVolumeRenderingNodes(activation)
            volRenLogic.CopyDisplayToVolumeRenderingDisplayNode(displayNode)
        displayNode.SetVisibility(visible)

    @staticmethod
    def jumpToFinding(finding, inputVolume=None) -> None:
        """Center every slice view on the finding's centroid (in world coordinates)."""
        if finding is None or finding.centroid_ras is None:
            return
        position = list(finding.centroid_ras)
        if inputVolume is not None and inputVolume.GetParentTransformNode():
            world = [0.0, 0.0, 0.0]
            inputVolume.TransformPointToWorld(position, world)
            position = world
        for sliceNode in slicer.util.getNodesByClass("vtkMRMLSliceNode"):
            sliceNode.JumpSliceByCentering(*position)


#
# SMARTNetTest
#


class SMARTNetTest(ScriptedLoadableModuleTest):
    """Runs in Slicer: a synthetic head CT with a bleed through the whole Analyze path."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_AnalyzeSyntheticHead()

    def _syntheticHeadCT(self):
        """A small head phantom (numpy only): skull, brain, and a 60 HU bleed against the skull."""
        import numpy as np

        shape = (24, 64, 64)  # k, j, i
        k, j, i = np.indices(shape, dtype=np.float32)
        r = np.sqrt(((i - 32) / 28) ** 2 + ((j - 32) / 30) ** 2 + ((k - 12) / 14) ** 2)
        voxels = np.full(shape, -1000, np.int16)
        voxels[r < 1.0] = 1200  # skull
        voxels[r < 0.88] = 32  # brain
        bleed = (((i - 12) / 4) ** 2 + ((j - 32) / 9) ** 2 + ((k - 12) / 5) ** 2) < 1.0
        voxels[bleed & (r < 0.88)] = 65
        volume = slicer.util.addVolumeFromArray(voxels, name="SyntheticHeadCT")
        volume.SetSpacing(0.9, 0.9, 5.0)
        volume.SetOrigin(-28.8, -28.8, -60.0)
        return volume

    def test_AnalyzeSyntheticHead(self):
        self.delayDisplay("Starting the test")
        logic = SMARTNetLogic()
        self.assertTrue(logic.ensureDependencies(askConfirmation=False), "engine dependencies missing")
        volume = self._syntheticHeadCT()

        choices = []
        logic.listModels(lambda found, error: choices.extend(found))
        logic.waitForCompletion(120)
        self.assertTrue(choices, "no SMART-Net model found")

        events, finished = [], []
        for _run in range(2):  # the second run must replace the first run's nodes
            finished.clear()
            logic.analyze(volume, choices[0].value, "cpu", onEvent=events.append,
                          onFinished=lambda *args: finished.append(args))
            logic.waitForCompletion(600)
            self.assertEqual(len(finished), 1)
            outcome, results, error = finished[0]
            self.assertEqual(error, "", f"analysis failed: {error} {outcome.stderr_tail}")
            self.assertTrue(outcome.succeeded)
        self.assertTrue(any(e["event"] == "progress" for e in events))
        self.assertEqual(len(logic.resultNodes(volume)), 3 if results["activation"] else 2)

        segmentation = results["segmentation"]
        self.assertEqual(segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole()),
                         volume.GetID())
        geometry = segmentation.GetSegmentation().GetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
        segmentationIjkToRas, extent = vtk.vtkMatrix4x4(), [0] * 6
        self.assertTrue(slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, segmentationIjkToRas,
                                                                                 extent))
        volumeIjkToRas = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(volumeIjkToRas)
        for row in range(4):
            for column in range(4):
                self.assertAlmostEqual(segmentationIjkToRas.GetElement(row, column),
                                       volumeIjkToRas.GetElement(row, column), places=3)
        self.assertEqual(list(extent), list(volume.GetImageData().GetExtent()))
        segments = segmentation.GetSegmentation()
        for index in range(segments.GetNumberOfSegments()):
            name = segments.GetNthSegment(index).GetName()
            self.assertIsNotNone(class_from_segment_name(name), name)

        table = results["table"]
        self.assertEqual(table.GetNumberOfColumns(), 3)
        self.assertEqual(table.GetCellText(0, 0), "Intracranial hemorrhage (any)")
        modelRow = [r for r in range(table.GetNumberOfRows()) if table.GetCellText(r, 0) == "Model"]
        self.assertEqual(table.GetCellText(modelRow[0], 1), results["report"]["model"]["name"])

        activation = results["activation"]
        self.assertIsNotNone(activation, "the engine wrote no activation map")
        self.assertEqual(activation.GetImageData().GetDimensions(), volume.GetImageData().GetDimensions())
        for a, b in zip(activation.GetSpacing(), volume.GetSpacing()):
            self.assertAlmostEqual(a, b, places=4)
        for a, b in zip(activation.GetOrigin(), volume.GetOrigin()):
            self.assertAlmostEqual(a, b, places=3)
        low, high = activation.GetImageData().GetScalarRange()
        self.assertGreaterEqual(low, 0.0)
        self.assertLessEqual(high, 1.0 + 1e-6)
        self.assertIn(activation.GetDisplayNode().GetColorNodeID(), HEAT_COLOR_NODE_IDS)

        logic.showActivation(activation, True, 0.4)
        compositeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
        if compositeNode:
            self.assertEqual(compositeNode.GetForegroundVolumeID(), activation.GetID())
        logic.showActivation3D(activation, True)
        self.assertIsNotNone(slicer.modules.volumerendering.logic().GetFirstVolumeRenderingDisplayNode(activation))
        logic.jumpToFinding(results["largestFinding"], volume)
        logic.removeResults(volume)
        self.assertEqual(logic.resultNodes(volume), [])
        self.delayDisplay("Test passed")
