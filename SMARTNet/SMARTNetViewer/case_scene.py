"""One analysed case in a Slicer scene: the CT, the SMARTNet module's result nodes, and what the page toggles.

The nodes are made by the module's own logic (:class:`SMARTNetSlicerLib.analysis_logic.ResultsLogic`), so a case
looks in the browser as it does in Slicer after Analyze.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from SMARTNetLib.client import analysis_results
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetSlicerLib.analysis_logic import SINGLE_FILE, AnalysisNodes, ResultsLogic, removeWithHelpers
from SMARTNetSlicerLib.scene_context import ModuleLogics, nodesByClass
from SMARTNetViewer.cases import Case

CT_WINDOW = (80.0, 40.0)  # brain window: width, level
SEGMENT_OPACITY_3D = 1.0  # translucent surfaces need depth peeling, which renders nothing on headless Mesa


def read_ct(logics: ModuleLogics, report: dict, name: str) -> Any:
    """The analysed CT as a volume node: the report's input file, or for a DICOM folder its analysed series."""
    source = Path(report.get("input") or "")
    if not source.exists():
        raise SmartNetError("the analysed CT is gone (the viewer shows results over their CT)", source)
    if source.is_dir():
        node = _read_dicom_series(logics, source, (report.get("input_series") or {}).get("series_instance_uid"))
    else:
        node = logics.volumes.AddArchetypeVolume(str(source), name, SINGLE_FILE)
    if node is None:
        raise SmartNetError("Slicer could not read the analysed CT", source)
    node.SetName(name)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(0)
    display.SetWindowLevel(*CT_WINDOW)
    return node


def _read_dicom_series(logics: ModuleLogics, folder: Path, series_uid: str | None) -> Any:
    """The series ``series_uid`` of a DICOM folder (the engine's choice), read by trame-slicer's DICOM reader."""
    import pydicom
    from trame_slicer.core.volumes_reader import VolumesReader

    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # not DICOM
            continue
        if series_uid is None or str(header.get("SeriesInstanceUID", "")) == series_uid:
            files.append(str(path))
    nodes = VolumesReader.load_volumes(logics.scene, logics.application, files) if files else []
    return max(nodes, key=lambda n: n.GetImageData().GetNumberOfPoints(), default=None)


class CaseScene:
    """The scene of one browser session: one case at a time, with the module's result nodes."""

    def __init__(self, logics: ModuleLogics) -> None:
        self.logics = logics
        self.results = ResultsLogic(logics)
        self.ct: Any = None
        self.nodes: AnalysisNodes | None = None

    def load(self, case: Case) -> AnalysisNodes:
        """Replace the shown case by ``case`` (CT, segmentation with surfaces, table, activation map)."""
        if case.report is None:
            raise SmartNetError(case.problem or "unreadable report", case.folder)
        ct = read_ct(self.logics, case.report, Path(case.name).name if case.name != "." else case.folder.name)
        try:
            nodes = self.results.loadOutputFolder(ct, str(case.folder))
        except Exception:
            removeWithHelpers(self.logics.scene, ct)
            raise
        self.clear()
        self.ct, self.nodes = ct, nodes
        segmentation = nodes.segmentation
        segmentation.CreateDefaultDisplayNodes()
        segmentation.CreateClosedSurfaceRepresentation()
        display = segmentation.GetDisplayNode()
        display.SetOpacity2DFill(0.3)
        display.SetOpacity2DOutline(1.0)
        display.SetOpacity3D(SEGMENT_OPACITY_3D)
        for composite in nodesByClass(self.logics.scene, "vtkMRMLSliceCompositeNode"):
            composite.SetBackgroundVolumeID(ct.GetID())
        return nodes

    def clear(self) -> None:
        """Remove the shown case's nodes."""
        if self.ct is not None:
            self.results.removeResults(self.ct)
            removeWithHelpers(self.logics.scene, self.ct)
        self.ct, self.nodes = None, None

    def show(self, segmentation: bool, activation: bool, activation_3d: bool, opacity: float) -> None:
        """The page's toggles: segmentation overlay (slices and 3D), heat map in the slices (with its opacity)
        and as a volume rendering in 3D."""
        if self.nodes is None:
            return
        self.nodes.segmentation.GetDisplayNode().SetVisibility(segmentation)
        heat = self.nodes.activation
        if heat is not None:
            self.results.showActivation(heat, activation, opacity)
            self.results.showActivation3D(heat, activation_3d)

    def findings(self) -> list[analysis_results.Finding]:
        """The case's findings with volume, largest first."""
        if self.nodes is None:
            return []
        found = [f for f in analysis_results.findings(self.nodes.report) if f.volume_ml > 0 and f.centroid_lps]
        return sorted(found, key=lambda f: -f.volume_ml)

    def jump_to(self, class_name: str) -> bool:
        """Centre the slice views on the largest finding of ``class_name``; False when it has none."""
        finding = next((f for f in self.findings() if f.name == class_name), None)
        if finding is None:
            return False
        self.results.jumpToFinding(finding, self.ct)
        return True
