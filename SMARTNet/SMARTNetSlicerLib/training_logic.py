"""Fine-tuning from the scene: cases from volume/segmentation pairs, their export, the train and register
runs, the training curves as a table and a plot chart, and self-supervised pretraining on unlabelled scans
(a folder, or the loaded volumes written to one) before fine-tuning."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import vtk
from vtk.util import numpy_support

from SMARTNetLib.client import training_command, training_set
from SMARTNetLib.contracts.locations import smartnet_home
from SMARTNetSlicerLib.engine_session import EngineClient, EngineSession
from SMARTNetSlicerLib.scene_context import ModuleLogics, nodesByClass

ROLE_ATTRIBUTE = "SMARTNetTraining.Role"
CHART_COLUMNS = (("train_loss", "Training loss", (0.8, 0.3, 0.1)),
                 ("val_dice", "Validation Dice", (0.0, 0.45, 0.7)),
                 ("val_auc", "Validation AUC", (0.0, 0.62, 0.45)))


def matrixToList(getter: Callable[[Any], Any]) -> list:
    """A 4x4 matrix from a VTK getter that fills a vtkMatrix4x4 (e.g. ``volume.GetIJKToRASMatrix``)."""
    matrix = vtk.vtkMatrix4x4()
    getter(matrix)
    return [[matrix.GetElement(row, column) for column in range(4)] for row in range(4)]


def arrayFromImage(imageData: Any) -> np.ndarray:
    """A (k, j, i) copy of a single-component vtkImageData's voxels."""
    i, j, k = imageData.GetDimensions()
    return numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(k, j, i).copy()


class TrainingLogic(EngineClient):
    """What the SMARTNetTraining module does with the scene and the engine (no GUI)."""

    def __init__(self, logics: ModuleLogics, session: EngineSession) -> None:
        self.logics = logics
        self.session = session
        self.chart: tuple[Any, Any] | None = None  # (table, chart) nodes of the live curves

    @property
    def scene(self) -> Any:
        return self.logics.scene



    # -- cases from the scene ----------------------------------------------------------------------
    @staticmethod
    def caseFromNodes(volume: Any, segmentation: Any) -> training_set.TrainingCase:
        segments = []
        seg = segmentation.GetSegmentation()
        for index in range(seg.GetNumberOfSegments()):
            segmentId = seg.GetNthSegmentID(index)
            segment = seg.GetSegment(segmentId)
            segments.append(training_set.segment_info(segmentId, segment.GetName(), segment.GetTerminology()))
        return training_set.TrainingCase(volume.GetName(), volume_id=volume.GetID(),
                                         segmentation_id=segmentation.GetID(), segments=segments)

    def loadedPairs(self) -> list:
        """(volume, segmentation) pairs: each segmentation with the volume of its reference geometry."""
        pairs = []
        for segmentation in nodesByClass(self.scene, "vtkMRMLSegmentationNode"):
            volume = segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())
            if volume is not None and volume.IsA("vtkMRMLScalarVolumeNode") and not volume.IsA(
                    "vtkMRMLLabelMapVolumeNode"):
                pairs.append((volume, segmentation))
        return pairs

    def caseProblem(self, case: training_set.TrainingCase) -> str:
        """Why a case cannot be used (missing node or file, segmentation outside its volume), or ""."""
        if not case.from_scene:
            if not os.path.exists(case.image) or (case.label and not os.path.exists(case.label)):
                return "file not found"
            return ""
        volume = self.scene.GetNodeByID(case.volume_id)
        segmentation = self.scene.GetNodeByID(case.segmentation_id)
        if volume is None or segmentation is None:
            return "volume or segmentation removed from the scene"
        if volume.GetImageData() is None:
            return "the volume has no voxels"
        return self.coverageProblem(volume, segmentation)

    @staticmethod
    def coverageProblem(volume: Any, segmentation: Any) -> str:
        """Why the segments' content (non-zero voxels, on their own grid) leaves ``volume``, or ""."""
        import slicer

        representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
        if not segmentation.GetSegmentation().ContainsRepresentation(representation):
            segmentation.CreateBinaryLabelmapRepresentation()
        seg = segmentation.GetSegmentation()
        volumeMatrix, dimensions = matrixToList(volume.GetIJKToRASMatrix), volume.GetImageData().GetDimensions()
        for index in range(seg.GetNumberOfSegments()):
            image = seg.GetNthSegment(index).GetRepresentation(representation)
            if image is None:
                continue
            extent = [0, -1, 0, -1, 0, -1]
            slicer.vtkOrientedImageDataResample.CalculateEffectiveExtent(image, extent)
            problem = training_set.coverage_problem(volumeMatrix, dimensions, extent,
                                                    content_ijk_to_world=matrixToList(image.GetImageToWorldMatrix))
            if problem:
                return problem
        return ""

    def segmentMask(self, segmentation: Any, segmentId: str, volume: Any) -> np.ndarray:
        """A segment as a boolean (k, j, i) array on ``volume``'s grid (through a temporary labelmap node)."""
        before = {self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())}
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segmentId)
        labelmap = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__SMARTNet_export__")
        try:
            if not self.logics.segmentations.ExportSegmentsToLabelmapNode(segmentation, ids, labelmap, volume):
                raise RuntimeError(f"Could not export segment {segmentId} of {segmentation.GetName()}")
            return arrayFromImage(labelmap.GetImageData()) > 0
        finally:  # the labelmap and whatever the export added for it (display node, colour table)
            added = [self.scene.GetNthNode(i) for i in range(self.scene.GetNumberOfNodes())]
            for node in added:
                if node.GetID() not in before:
                    self.scene.RemoveNode(node)

    # -- files -------------------------------------------------------------------------------------
    @staticmethod
    def workFolder(modelName: str) -> str:
        return os.path.join(str(smartnet_home()), "training", modelName)

    @staticmethod
    def canResume(workFolder: str) -> bool:
        return bool(workFolder) and os.path.isfile(os.path.join(workFolder, "model", "checkpoints", "last.pt"))

    def exportCases(self, cases: training_set.TrainingSet, folder: str) -> list:
        """(image, label) files of every case: scene cases written to ``folder`` (CT + one segment per type)."""
        pairs = []
        stems = training_set.file_stems(c.name for c in cases.cases)
        for case, stem in zip(cases.cases, stems):
            if not case.from_scene:
                pairs.append((case.image, case.label or None))
                continue
            volume = self.scene.GetNodeByID(case.volume_id)
            segmentation = self.scene.GetNodeByID(case.segmentation_id)
            masks: dict[str, np.ndarray] = {}
            for segment in case.mapped_segments:
                mask = self.segmentMask(segmentation, segment.segment_id, volume)
                masks[segment.subtype] = masks[segment.subtype] | mask if segment.subtype in masks else mask
            ct = arrayFromImage(volume.GetImageData())
            pairs.append(training_set.export_case(folder, stem, ct, matrixToList(volume.GetIJKToRASMatrix), masks))
        return pairs

    def prepareWorkFolder(self, cases: training_set.TrainingSet, workFolder: str) -> str:
        """A fresh work folder with ``cases/`` and ``datalist.json``; returns the datalist's path."""
        shutil.rmtree(workFolder, ignore_errors=True)
        pairs = self.exportCases(cases, os.path.join(workFolder, "cases"))
        return str(training_set.write_datalist(workFolder, pairs))

    def saveProject(self, cases: training_set.TrainingSet, folder: str) -> str:
        """Scene cases written to ``folder/cases``; ``training_set.json`` lists every case as files."""
        pairs = self.exportCases(cases, os.path.join(folder, "cases"))
        saved = training_set.TrainingSet([training_set.file_case(image, label) for image, label in pairs])
        for new, old in zip(saved.cases, cases.cases):
            new.name = old.name
        return str(saved.save(folder))

    # -- runs --------------------------------------------------------------------------------------
    def train(self, options: training_command.TrainingOptions, onEvent: Callable[[dict], None] | None = None,
              onFinished: Callable[[Any], None] | None = None) -> None:
        """Start ``smartnet train`` (returns at once); ``onFinished(outcome)`` when it ended."""
        args = training_command.train_command(self.session.python, options)
        self.session.start(args, onEvent=onEvent, onFinished=onFinished, task="training")

    def register(self, options: training_command.TrainingOptions, caseNames: list[str], overwrite: bool,
                 onFinished: Callable[[Any], None] | None = None) -> None:
        """Start ``smartnet register``: base and new model on the validation cases, copy to the user models."""
        args = training_command.register_command(self.session.python, options, caseNames, overwrite)
        self.session.start(args, onFinished=onFinished, task="register")

    # -- pretraining -------------------------------------------------------------------------------
    @staticmethod
    def pretrainingFolder(name: str) -> str:
        """Where a pretraining run of ``name`` lives: ``scans/`` (loaded volumes written out) and ``model/``."""
        return os.path.join(str(smartnet_home()), "pretraining", name)

    @staticmethod
    def canResumePretraining(modelFolder: str) -> bool:
        return bool(modelFolder) and os.path.isfile(os.path.join(modelFolder, "checkpoints", "last.pt"))

    def unlabelledVolumes(self) -> list:
        """The scene's CT volumes (scalar volumes that are not label maps)."""
        return [v for v in nodesByClass(self.scene, "vtkMRMLScalarVolumeNode")
                if not v.IsA("vtkMRMLLabelMapVolumeNode")]

    def exportVolumes(self, volumes: list, folder: str) -> list[str]:
        """Each volume written to ``folder`` as NRRD (through a temporary storage node, so that the node keeps
        its own file name); returns the files."""
        os.makedirs(folder, exist_ok=True)
        files = []
        for volume, stem in zip(volumes, training_set.file_stems(v.GetName() for v in volumes)):
            path = os.path.join(folder, f"{stem}.nrrd")
            storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            try:
                storage.SetFileName(path)
                if not storage.WriteData(volume):
                    raise RuntimeError(f"Could not write {volume.GetName()} to {path}")
            finally:
                self.scene.RemoveNode(storage)
            files.append(path)
        return files

    def pretrain(self, options: training_command.PretrainingOptions, onEvent: Callable[[dict], None] | None = None,
                 onFinished: Callable[[Any], None] | None = None) -> None:
        """Start ``smartnet pretrain`` (returns at once); ``onFinished(outcome)`` when it ended. Stop is
        :meth:`cancel`; ``options.resume`` continues from the last finished epoch."""
        args = training_command.pretrain_command(self.session.python, options)
        self.session.start(args, onEvent=onEvent, onFinished=onFinished, task="pretraining")

    # -- chart -------------------------------------------------------------------------------------
    def showChart(self, curves: training_command.TrainingCurves, title: str = "SMART-Net training") -> Any:
        """Create (or reuse) the curves' table, series and chart, and make the chart the active one."""
        table = self.chart[0] if self.chart and self.chart[0].GetScene() else None
        chart = self.chart[1] if self.chart and self.chart[1].GetScene() else None
        if table is None:
            table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{title} curves")
            table.SetAttribute(ROLE_ATTRIBUTE, "curves")
        self.updateChart(curves, table)
        if chart is None:
            import slicer

            chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", title)
            chart.SetAttribute(ROLE_ATTRIBUTE, "chart")
            chart.SetTitle(title)
            chart.SetXAxisTitle("Epoch")
            chart.SetYAxisTitle("Loss / Dice / AUC")
            for column, seriesTitle, color in CHART_COLUMNS:
                series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", seriesTitle)
                series.SetAttribute(ROLE_ATTRIBUTE, "series")
                series.SetAndObserveTableNodeID(table.GetID())
                series.SetXColumnName("epoch")
                series.SetYColumnName(column)
                series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
                series.SetColor(*color)
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
        self.chart = (table, chart)
        if self.logics.plots is not None:
            self.logics.plots.ShowChartInLayout(chart)
        return chart

    def updateChart(self, curves: training_command.TrainingCurves, table: Any = None) -> None:
        """Rewrite the curves table: one row per finished epoch, one column per curve."""
        table = table or (self.chart[0] if self.chart else None)
        if table is None:
            return
        columns = curves.columns()
        vtkTable = vtk.vtkTable()
        for name in ("epoch", *(c for c, _title, _color in CHART_COLUMNS)):
            array = numpy_support.numpy_to_vtk(np.asarray(columns[name], dtype=float), deep=True)
            array.SetName(name)
            vtkTable.AddColumn(array)
        table.SetAndObserveTable(vtkTable)
