"""SMART-Net intracranial hemorrhage analysis of head CT (3D Slicer scripted module).

Thin on purpose: the engine runs in a child process (``PythonSlicer -m SMARTNetLib.cli analyze``); what
the module does with MRML lives in ``SMARTNetSlicerLib`` (tested on slicer-core in ``Testing/slicer``), and
the rest (command lines, events, result files, the table's contents, segment names and colours,
dependency checks) in ``SMARTNetLib``. This file keeps the Qt widget, dialogs, timers and installation.
"""

import logging
import os

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

from SMARTNetLib.client import analysis_results, dependencies, engine_command
from SMARTNetLib.contracts.classes import class_from_segment_name
from SMARTNetSlicerLib.analysis_logic import AnalysisLogic
from SMARTNetSlicerLib.comparison_logic import ComparisonLogic
from SMARTNetSlicerLib.engine_session import EngineSession
from SMARTNetSlicerLib.heat_colors import heatColorNode
from SMARTNetSlicerLib.scene_context import ModuleLogics

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
        self._results = None  # AnalysisNodes of the last run

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SMARTNet.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SMARTNetLogic()
        self.comparison = ComparisonLogic(self.logic, self.logic.session)  # one engine session for both

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
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateCompareButton)
        self.ui.priorSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateCompareButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.jumpButton.connect("clicked(bool)", self.onJumpButton)
        self.ui.showActivationCheckBox.connect("toggled(bool)", self.onActivationDisplayChanged)
        self.ui.activationOpacitySlider.connect("valueChanged(double)", self.onActivationDisplayChanged)
        self.ui.activation3DCheckBox.connect("toggled(bool)", self.onActivation3DToggled)

        self.initializeParameterNode()
        self.refreshModels()

    def cleanup(self) -> None:
        self.logic.session.close()  # cancels a running command and ends the served engine
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
            slicer.util.warningDisplay(_("The engine is busy (listing models or comparing); try again when it "
                                         "has finished."))
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
        dicomSegFolder = None
        if self.ui.dicomSegCheckBox.checked:
            dicomSegFolder = os.path.join(slicer.util.tempDirectory("SMARTNet-DICOM-SEG"), "seg")
        with slicer.util.tryWithErrorDisplay(_("Failed to start the analysis."), waitCursor=True):
            self.logic.analyze(inputVolume, choice.value if choice else None, device,
                               onEvent=self._onEngineEvent, onFinished=self._onAnalysisFinished,
                               dicomSegFolder=dicomSegFolder)
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
        self._updateCompareButton()
        if getattr(self, "_modelsRefreshPending", False):
            qt.QTimer.singleShot(0, self.refreshModels)
        if not self._succeeded(outcome, errorMessage, _("Analysis failed: {message}")):
            return
        self._results = results
        self.ui.stageLabel.text = _("Done in {seconds:.1f} s.").format(seconds=outcome.elapsed_s)
        self.ui.summaryLabel.text = analysis_results.summary_text(results.report)
        self.ui.resultsTableView.setMRMLTableNode(results.table)
        self.ui.show3DButton.setSegmentationNode(results.segmentation)
        self._setResultControlsEnabled(True)
        self.onActivationDisplayChanged()
        self.ui.activation3DCheckBox.checked = False
        if results.dicomSeg:
            self._importDicomSeg(results.dicomSeg)

    # -- compare with prior ------------------------------------------------------------------------
    def _updateCompareButton(self, *unused) -> None:
        if self.logic.session.task == "comparison":
            self.ui.compareButton.text = _("Cancel")
            self.ui.compareButton.toolTip = _("Stop the comparison.")
            self.ui.compareButton.enabled = True
            return
        prior, current = self.ui.priorSelector.currentNode(), self.ui.inputSelector.currentNode()
        ready = prior is not None and current is not None and prior.GetID() != current.GetID()
        self.ui.compareButton.text = _("Compare with prior")
        self.ui.compareButton.enabled = ready
        self.ui.compareButton.toolTip = (
            _("Register the head CT onto the prior scan, analyze both and report the change in volume.") if ready
            else _("Select the current scan as Head CT above and an earlier scan of the same patient here."))

    def onCompareButton(self) -> None:
        if self.logic.session.task == "comparison":
            self.comparison.cancel()
            return
        if self.logic.busy:
            slicer.util.warningDisplay(_("The engine is busy; try again when it has finished."))
            return
        if not self.logic.ensureDependencies():
            return
        choice = self._selectedModel()
        device = self.ui.deviceSelector.itemData(self.ui.deviceSelector.currentIndex)
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = True
        self.ui.stageLabel.text = _("Starting the comparison...")
        with slicer.util.tryWithErrorDisplay(_("Failed to start the comparison."), waitCursor=True):
            self.comparison.compare(self.ui.priorSelector.currentNode(), self.ui.inputSelector.currentNode(),
                                    choice.value if choice else None, device, onEvent=self._onEngineEvent,
                                    onFinished=self._onComparisonFinished)
        self._updateCompareButton()
        self._updateApplyButton()

    def _onComparisonFinished(self, outcome, nodes, errorMessage) -> None:
        self.ui.progressBar.visible = False
        self._updateCompareButton()
        self._updateApplyButton()
        if not self._succeeded(outcome, errorMessage, _("Comparison failed: {message}")):
            return
        self.ui.stageLabel.text = _("Compared in {seconds:.1f} s.").format(seconds=outcome.elapsed_s)
        self.ui.comparisonSummaryLabel.text = analysis_results.comparison_summary(nodes.result)
        self.ui.comparisonTableView.setMRMLTableNode(nodes.table)
        for warning in nodes.result["baseline"]["warnings"] + nodes.result["followup"]["warnings"]:
            self._log(_("Warning: ") + warning)

    def _succeeded(self, outcome, errorMessage: str, failureText: str) -> bool:
        """Show a cancelled or failed run (``failureText`` has a ``{message}`` field); True when it succeeded."""
        if outcome.status == "cancelled":
            self.ui.stageLabel.text = _("Cancelled.")
            return False
        if errorMessage:
            self.ui.stageLabel.text = _("Failed.")
            for line in outcome.stderr_tail:
                self._log(line)
            slicer.util.errorDisplay(failureText.format(message=errorMessage))
            return False
        return True

    def _importDicomSeg(self, path: str) -> None:
        """Add the exported DICOM SEG to Slicer's DICOM database (the database keeps its own copy)."""
        from DICOMLib import DICOMUtils

        with slicer.util.tryWithErrorDisplay(_("Failed to add the DICOM SEG to the DICOM database."),
                                             waitCursor=True):
            DICOMUtils.importDicom(os.path.dirname(path), copyFiles=True)
            self._log(_("DICOM SEG added to the DICOM database ({path}).").format(path=path))

    def _log(self, text: str) -> None:
        self.ui.logText.appendPlainText(text)
        logging.info(text)

    # -- results -----------------------------------------------------------------------------------
    def _setResultControlsEnabled(self, enabled: bool) -> None:
        hasActivation = bool(enabled and self._results and self._results.activation)
        hasTarget = bool(enabled and self._results and self._results.largestFinding)
        self.ui.jumpButton.enabled = hasTarget
        self.ui.show3DButton.enabled = enabled
        for widget in (self.ui.showActivationCheckBox, self.ui.activationOpacitySlider, self.ui.activation3DCheckBox):
            widget.enabled = hasActivation

    def onJumpButton(self) -> None:
        if self._results:
            self.logic.jumpToFinding(self._results.largestFinding, self._results.inputVolume)

    def onActivationDisplayChanged(self, *unused) -> None:
        if self._results and self._results.activation:
            self.logic.showActivation(self._results.activation, self.ui.showActivationCheckBox.checked,
                                      self.ui.activationOpacitySlider.value)

    def onActivation3DToggled(self, checked) -> None:
        if self._results and self._results.activation:
            with slicer.util.tryWithErrorDisplay(_("Failed to show the activation map in 3D."), waitCursor=True):
                self.logic.showActivation3D(self._results.activation, checked)


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


def slicerModuleLogics() -> ModuleLogics:
    """The application's scene and the module logics the SMART-Net logics use."""
    return ModuleLogics(scene=slicer.mrmlScene, volumes=slicer.modules.volumes.logic(),
                        segmentations=slicer.modules.segmentations.logic(),
                        volumeRendering=slicer.modules.volumerendering.logic(), plots=slicer.modules.plots.logic())


def dicomFileForInstance(instanceUID: str) -> str:
    """The file of a DICOM instance in Slicer's DICOM database ("" when the database is not open)."""
    database = getattr(slicer, "dicomDatabase", None)
    return database.fileForInstance(instanceUID) if database is not None and database.isOpen else ""


def newEngineSession(intervalMs: int = 100, warm: bool = False) -> EngineSession:
    """An engine session polled by a QTimer on the GUI thread while a command runs; ``warm`` keeps one served
    engine process for analyses (the model stays loaded between runs)."""
    session = EngineSession(slicer.util.startupEnvironment(), warm=warm)
    timer = qt.QTimer()
    timer.setInterval(intervalMs)

    def tick():
        if not session.poll():
            timer.stop()

    timer.connect("timeout()", tick)
    session.onStarted = timer.start
    session.timer = timer  # lives as long as the session
    return session


class SMARTNetLogic(ScriptedLoadableModuleLogic, AnalysisLogic):
    """The module's logic: :class:`AnalysisLogic` on the application's scene, with the parameter node.

    Everything it does with MRML is in ``SMARTNetSlicerLib.analysis_logic`` (tested on slicer-core)."""

    def __init__(self, logics: ModuleLogics = None, session: EngineSession = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        AnalysisLogic.__init__(self, logics or slicerModuleLogics(), session or newEngineSession(warm=True),
                               fileForInstance=dicomFileForInstance)

    def getParameterNode(self):
        return SMARTNetParameterNode(super().getParameterNode())

    def ensureDependencies(self, askConfirmation: bool = True) -> bool:
        return ensureDependencies(askConfirmation)


def ensureDependencies(askConfirmation: bool = True) -> bool:
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
            _installTorch(plan.torch)
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
        self.assertEqual(len(logic.resultNodes(volume)), len(results.nodes()))

        segmentation = results.segmentation
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

        table = results.table
        self.assertEqual(table.GetNumberOfColumns(), 3)
        self.assertEqual(table.GetCellText(0, 0), "Intracranial hemorrhage (any)")
        modelRow = [r for r in range(table.GetNumberOfRows()) if table.GetCellText(r, 0) == "Model"]
        self.assertEqual(table.GetCellText(modelRow[0], 1), results.report["model"]["name"])

        activation = results.activation
        self.assertIsNotNone(activation, "the engine wrote no activation map")
        self.assertEqual(activation.GetImageData().GetDimensions(), volume.GetImageData().GetDimensions())
        for a, b in zip(activation.GetSpacing(), volume.GetSpacing()):
            self.assertAlmostEqual(a, b, places=4)
        for a, b in zip(activation.GetOrigin(), volume.GetOrigin()):
            self.assertAlmostEqual(a, b, places=3)
        low, high = activation.GetImageData().GetScalarRange()
        self.assertGreaterEqual(low, 0.0)
        self.assertLessEqual(high, 1.0 + 1e-6)
        self.assertEqual(activation.GetDisplayNode().GetColorNodeID(), heatColorNode(slicer.mrmlScene).GetID())

        logic.showActivation(activation, True, 0.4)
        compositeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
        if compositeNode:
            self.assertEqual(compositeNode.GetForegroundVolumeID(), activation.GetID())
        logic.showActivation3D(activation, True)
        self.assertIsNotNone(slicer.modules.volumerendering.logic().GetFirstVolumeRenderingDisplayNode(activation))
        logic.jumpToFinding(results.largestFinding, volume)
        logic.removeResults(volume)
        self.assertEqual(logic.resultNodes(volume), [])
        self.delayDisplay("Test passed")
