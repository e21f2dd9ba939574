"""Analyze a volume node: write it, run ``smartnet analyze`` in a child process, load the results as nodes.

Result nodes carry two attributes (their role, the input volume's ID), so that a new run on the same
volume replaces them and nothing else.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import vtk

from SMARTNetLib.client import analysis_results, engine_command
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.files import REPORT_FILE
from SMARTNetLib.contracts.report import read_report
from SMARTNetSlicerLib.engine_session import EngineClient, EngineSession
from SMARTNetSlicerLib.heat_colors import heatColorNode
from SMARTNetSlicerLib.scene_context import ModuleLogics, nodesByClass

DICOM_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"  # set by Slicer's DICOM scalar volume plugin, slice by slice
ROLE_ATTRIBUTE = "SMARTNet.Role"
INPUT_ATTRIBUTE = "SMARTNet.InputVolumeID"
REPORT_ATTRIBUTE = "SMARTNet.Report"
RESULT_CLASSES = ("vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLScalarVolumeNode")
ANALYSIS_ROLES = ("segmentation", "table", "activation")
ACTIVATION_DISPLAY_THRESHOLD = 0.2  # heat below this is transparent in the slice views and in 3D
SINGLE_FILE = 4  # vtkSlicerVolumesLogic loading option: read this file only, not a series around it


@dataclass
class AnalysisNodes:
    """The nodes and report of one finished analysis."""

    inputVolume: Any
    segmentation: Any
    table: Any
    activation: Any  # None when the engine wrote no heat map
    report: dict
    largestFinding: analysis_results.Finding | None
    dicomSeg: str | None = None  # the DICOM SEG file, when one was asked for and written

    def nodes(self) -> list:
        return [n for n in (self.segmentation, self.table, self.activation) if n is not None]


class ResultsLogic:
    """Turns an engine output folder into MRML nodes on a CT volume node and shows them (no engine, no GUI):
    the SMARTNet module's results and ``smartnet view``'s browser scenes."""

    def __init__(self, logics: ModuleLogics) -> None:
        self.logics = logics

    @property
    def scene(self) -> Any:
        return self.logics.scene

    def loadResults(self, inputVolume: Any, resultEvent: dict) -> AnalysisNodes:
        """:meth:`loadOutputFolder` for the first case of the engine's final ``result`` event."""
        if inputVolume is None:
            raise ValueError("The input volume was removed during the analysis.")
        case = analysis_results.case_from_result(resultEvent)
        return self.loadOutputFolder(inputVolume, case.output_dir, case.report)

    def loadOutputFolder(self, inputVolume: Any, outputDir: str, reportPath: str | None = None) -> AnalysisNodes:
        """Segmentation, table and activation nodes from an output folder of ``smartnet analyze`` on
        ``inputVolume``; replaces earlier results.

        The files are checked against the report's checksums and read before anything is removed: a
        failing load leaves the earlier results.
        """
        report = read_report(reportPath or os.path.join(outputDir, REPORT_FILE))
        files = analysis_results.result_files(outputDir, report)
        if files.segmentation is None:
            raise SmartNetError("the engine wrote no segmentation", outputDir)
        analysis_results.verify_files(outputDir, report)  # Slicer's readers abort on damaged files
        baseName = inputVolume.GetName()
        added = []
        try:
            segmentation = self._loadSegmentation(files.segmentation, report, inputVolume, f"{baseName} hemorrhage")
            added.append(segmentation)
            table = self._createTable(report, f"{baseName} SMART-Net results")
            added.append(table)
            activation = None
            if files.activation:
                activation = self._loadActivation(files.activation, f"{baseName} activation")
                added.append(activation)
        except Exception:
            for node in added:
                removeWithHelpers(self.scene, node)
            raise
        self.removeResults(inputVolume)
        for role, node in (("segmentation", segmentation), ("table", table), ("activation", activation)):
            if node is not None:
                markResult(self.scene, node, role, inputVolume)
        return AnalysisNodes(inputVolume, segmentation, table, activation, report,
                             analysis_results.largest_finding(report))

    def resultNodes(self, inputVolume: Any) -> list:
        """Nodes made by earlier runs on ``inputVolume``."""
        return resultNodes(self.scene, inputVolume, ANALYSIS_ROLES)

    def removeResults(self, inputVolume: Any) -> None:
        """Remove the previous results of ``inputVolume`` with their display, storage and rendering nodes."""
        for node in self.resultNodes(inputVolume):
            removeWithHelpers(self.scene, node)

    def _loadSegmentation(self, path: str, report: dict, inputVolume: Any, name: str) -> Any:
        return loadSegmentation(self.logics, path, report, inputVolume, name)

    def _createTable(self, report: dict, name: str) -> Any:
        header, rows = analysis_results.findings_table(report)
        tableNode = textTable(self.scene, name, header, rows)
        tableNode.SetAttribute(REPORT_ATTRIBUTE, report.get("input", ""))
        return tableNode

    def _loadActivation(self, path: str, name: str) -> Any:
        activation = self.logics.volumes.AddArchetypeVolume(path, name, SINGLE_FILE)
        if activation is None:
            raise SmartNetError("Slicer could not read the activation map", path)
        displayNode = activation.GetDisplayNode()
        if displayNode is None:
            activation.CreateDefaultDisplayNodes()
            displayNode = activation.GetDisplayNode()
        displayNode.SetAndObserveColorNodeID(heatColorNode(self.scene).GetID())
        displayNode.SetAutoWindowLevel(0)
        displayNode.SetWindowLevelMinMax(0.0, 1.0)
        displayNode.SetAutoThreshold(0)
        displayNode.SetThreshold(ACTIVATION_DISPLAY_THRESHOLD, 1.0)
        displayNode.SetApplyThreshold(1)
        return activation

    # -- display -----------------------------------------------------------------------------------
    def showActivation(self, activation: Any, visible: bool, opacity: float) -> None:
        """Heat map as the foreground layer of every slice view (or no foreground)."""
        for compositeNode in nodesByClass(self.scene, "vtkMRMLSliceCompositeNode"):
            compositeNode.SetForegroundVolumeID(activation.GetID() if visible else None)
            compositeNode.SetForegroundOpacity(opacity)

    def showActivation3D(self, activation: Any, visible: bool) -> Any:
        """Volume rendering of the heat map with the slice views' colours and threshold; its display node."""
        vrLogic = self.logics.volumeRendering
        displayNode = vrLogic.GetFirstVolumeRenderingDisplayNode(activation)
        if displayNode is None:
            if not visible:
                return None
            if self.logics.volumeRenderingMethod:
                vrLogic.SetDefaultRenderingMethod(self.logics.volumeRenderingMethod)
            displayNode = vrLogic.CreateDefaultVolumeRenderingNodes(activation)
            vrLogic.CopyDisplayToVolumeRenderingDisplayNode(displayNode)
        displayNode.SetVisibility(visible)
        return displayNode

    def jumpToFinding(self, finding: analysis_results.Finding | None, inputVolume: Any = None) -> None:
        """Centre every slice view on the finding's centroid (in world coordinates)."""
        if finding is None or finding.centroid_ras is None:
            return
        position = list(finding.centroid_ras)
        if inputVolume is not None and inputVolume.GetParentTransformNode():
            world = [0.0, 0.0, 0.0]
            inputVolume.TransformPointToWorld(position, world)
            position = world
        for sliceNode in nodesByClass(self.scene, "vtkMRMLSliceNode"):
            sliceNode.JumpSliceByCentering(*position)


class AnalysisLogic(ResultsLogic, EngineClient):
    """Runs the engine on a volume node and turns its files into MRML nodes (no GUI)."""

    def __init__(self, logics: ModuleLogics, session: EngineSession,
                 fileForInstance: Callable[[str], str] | None = None) -> None:
        """``fileForInstance``: a DICOM SOP instance UID's file (Slicer: ``slicer.dicomDatabase.fileForInstance``),
        needed for DICOM SEG export."""
        super().__init__(logics)
        self.session = session
        self.fileForInstance = fileForInstance

    @property
    def analyzing(self) -> bool:
        return self.session.busy and self.session.task == "analysis"

    # -- analysis ----------------------------------------------------------------------------------
    def dicomSourceFiles(self, volume: Any) -> list[str]:
        """The DICOM files ``volume`` was loaded from, in its slice order, or [] when unknown."""
        uids = (volume.GetAttribute(DICOM_UIDS_ATTRIBUTE) or "").split()
        if not uids or "Unknown" in uids or self.fileForInstance is None:
            return []
        files = [self.fileForInstance(uid) for uid in uids]
        return files if all(f and os.path.isfile(f) for f in files) else []

    def analyze(self, inputVolume: Any, model: str | None = None, device: str = "auto",
                onEvent: Callable[[dict], None] | None = None,
                onFinished: Callable[[Any, AnalysisNodes | None, str], None] | None = None,
                dicomSegFolder: str | None = None) -> None:
        """Write the volume to a temp folder and start the engine on it; returns at once.

        ``onFinished(outcome, results, errorMessage)``: ``results`` is :meth:`loadResults`'s (None on
        failure or cancel, when no node is added); the temp folder is removed in every case.
        ``dicomSegFolder``: also export a DICOM SEG there; the engine then reads the volume's own DICOM
        files (linked into the temp folder) so that the SEG references them.
        """
        if inputVolume is None:
            raise ValueError("Select an input volume.")
        dicomFiles = self.dicomSourceFiles(inputVolume) if dicomSegFolder else []
        if dicomSegFolder and not dicomFiles:
            raise ValueError("DICOM SEG export needs a volume loaded from the DICOM database (its files are not "
                             "known for this one).")
        tempDir = tempfile.mkdtemp(prefix="SMARTNet-")
        try:
            if dicomFiles:
                inputPath = os.path.join(tempDir, "dicom")
                os.mkdir(inputPath)
                for index, source in enumerate(dicomFiles):
                    _linkOrCopy(source, os.path.join(inputPath, f"{index:05d}.dcm"))
            else:
                inputPath = os.path.join(tempDir, "input.nrrd")
                self.writeVolume(inputVolume, inputPath)
            outputDir = os.path.join(tempDir, "output")
            args = engine_command.analyze_command(self.session.python, inputPath, outputDir, model, device,
                                                  output_format="dicom-seg" if dicomFiles else None)
            inputVolumeID = inputVolume.GetID()

            def load(outcome: Any) -> AnalysisNodes:
                results = self.loadResults(self.scene.GetNodeByID(inputVolumeID), outcome.result)
                name = (results.report.get("files") or {}).get("dicom_seg")  # absent: nothing found
                if dicomSegFolder and name:
                    os.makedirs(dicomSegFolder, exist_ok=True)
                    results.dicomSeg = shutil.copy2(os.path.join(outputDir, name), os.path.join(dicomSegFolder, name))
                return results

            self.session.start(args, onEvent=onEvent, onFinished=loadThenClean(load, tempDir, onFinished),
                               task="analysis")
        except Exception:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise

    def writeVolume(self, volumeNode: Any, path: str) -> None:
        """Write through a temporary storage node, so that the node's own storage keeps its file name."""
        storageNode = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        try:
            storageNode.SetFileName(path)
            storageNode.UseCompressionOff()
            if not storageNode.WriteData(volumeNode):
                raise RuntimeError(f"Could not write the input volume to {path}")
        finally:
            self.scene.RemoveNode(storageNode)


def loadThenClean(load: Callable[[Any], Any], tempDir: str,
                  onFinished: Callable[[Any, Any, str], None] | None) -> Callable[[Any], None]:
    """The engine session's ``onFinished`` for a run into ``tempDir``: ``load(outcome)`` after a success, then
    ``tempDir`` removed in every case, then ``onFinished(outcome, loaded or None, errorMessage)`` (the message is
    empty on success and on cancel)."""

    def finished(outcome: Any) -> None:
        loaded, error = None, ""
        try:
            if outcome.succeeded:
                loaded = load(outcome)
            elif outcome.status != "cancelled":
                error = outcome.message
        except Exception as err:  # shown to the user; the GUI must leave its running state
            error = str(err)
            logging.exception("SMART-Net: loading the engine's results failed")
        finally:
            shutil.rmtree(tempDir, ignore_errors=True)
        if onFinished:
            onFinished(outcome, loaded, error)

    return finished


def markResult(scene: Any, node: Any, role: str, inputVolume: Any) -> None:
    """Tag ``node`` as the ``role`` result of ``inputVolume``; it follows the volume's transform and sits beside
    it in the subject hierarchy."""
    import slicer

    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.SetAttribute(INPUT_ATTRIBUTE, inputVolume.GetID())
    if hasattr(node, "SetAndObserveTransformNodeID"):
        node.SetAndObserveTransformNodeID(inputVolume.GetTransformNodeID())
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    inputItem, item = shNode.GetItemByDataNode(inputVolume), shNode.GetItemByDataNode(node)
    if inputItem and item:  # without Slicer's subject hierarchy plugins, data nodes get no items
        shNode.SetItemParent(item, shNode.GetItemParent(inputItem))


def resultNodes(scene: Any, inputVolume: Any, roles: tuple[str, ...]) -> list:
    """Nodes tagged by :func:`markResult` with one of ``roles`` for ``inputVolume``."""
    volumeID = inputVolume.GetID()
    return [node for className in RESULT_CLASSES for node in nodesByClass(scene, className)
            if node.GetAttribute(INPUT_ATTRIBUTE) == volumeID and node.GetAttribute(ROLE_ATTRIBUTE) in roles]


def removeWithHelpers(scene: Any, node: Any) -> None:
    """Remove ``node`` with its display, storage and volume-rendering property nodes."""
    helpers = []
    # a table is a storable node, not a displayable one: it has no display nodes
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
    scene.RemoveNode(node)
    for helper in helpers:
        if helper.GetScene():
            scene.RemoveNode(helper)


def loadSegmentation(logics: ModuleLogics, path: str, report: dict, inputVolume: Any, name: str) -> Any:
    """A ``.seg.nrrd`` of the engine as a segmentation node on ``inputVolume``'s grid: segments named, coloured
    and tagged, those without volume in ``report`` removed."""
    segmentationNode = logics.segmentations.LoadSegmentationFromFile(path, True, name)
    if segmentationNode is None:
        raise SmartNetError("Slicer could not read the segmentation", path)
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


def textTable(scene: Any, name: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> Any:
    """A table node of text columns."""
    tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    for title in header:
        column = vtk.vtkStringArray()
        column.SetName(title)
        tableNode.AddColumn(column)
    for row in rows:
        rowIndex = tableNode.AddEmptyRow()
        for columnIndex, text in enumerate(row):
            tableNode.SetCellText(rowIndex, columnIndex, text)
    return tableNode


def _linkOrCopy(source: str, target: str) -> None:
    """A symbolic link where the system allows it (no copy of a large series), a copy otherwise."""
    try:
        os.symlink(os.path.abspath(source), target)
    except OSError:
        shutil.copy2(source, target)
