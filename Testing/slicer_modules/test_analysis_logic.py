"""The SMARTNet module's logic on slicer-core: Analyze end to end, repeated, cancelled and failing runs."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from conftest import run_cli
from mrml_world import SAMPLE_HEAD, SceneUnderTest, new_engine, run_analysis
from SMARTNetLib.client import analysis_results
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetSlicerLib.analysis_logic import (
    ACTIVATION_DISPLAY_THRESHOLD,
    INPUT_ATTRIBUTE,
    ROLE_ATTRIBUTE,
    AnalysisLogic,
)
from SMARTNetSlicerLib.heat_colors import heatColorNode
from SMARTNetSlicerLib.scene_context import CPU_RAY_CAST


@pytest.fixture()
def scene() -> SceneUnderTest:
    return SceneUnderTest()


@pytest.fixture()
def analysis(scene) -> AnalysisLogic:
    return AnalysisLogic(scene.logics, new_engine())


def matrix(getter) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    getter(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def segment_volume_ml(segmentation, segmentId: str) -> float:
    """mL of a segment, counted on its binary labelmap in the MRML segmentation."""
    segment = segmentation.GetSegmentation().GetSegment(segmentId)
    image = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return float(np.count_nonzero(voxels == segment.GetLabelValue()) * np.prod(image.GetSpacing()) / 1000.0)


@pytest.fixture(scope="module")
def sample_run():
    """The bundled model on the bundled sample head CT (two bleeds), loaded as the module does."""
    world = SceneUnderTest()
    logic = AnalysisLogic(world.logics, new_engine())
    volume = world.loadVolume(SAMPLE_HEAD, "sample head")
    outcome, results, error, events = run_analysis(logic, volume)
    assert error == "", f"{error} {outcome.stderr_tail}"
    return world, logic, volume, results, events


def test_analyze_streams_progress_and_marks_three_result_nodes(sample_run):
    world, logic, volume, results, events = sample_run
    assert any(e["event"] == "progress" for e in events)
    assert results.activation is not None
    assert sorted(n.GetAttribute(ROLE_ATTRIBUTE) for n in logic.resultNodes(volume)) == [
        "activation", "segmentation", "table"]
    assert {n.GetAttribute(INPUT_ATTRIBUTE) for n in results.nodes()} == {volume.GetID()}


def test_segments_are_named_coloured_and_tagged_per_report(sample_run):
    _world, _logic, _volume, results, _events = sample_run
    segmentation = results.segmentation.GetSegmentation()
    found = {f.display_name: f for f in analysis_results.findings(results.report) if f.volume_ml > 0}
    assert found, "the bundled model found no bleed on the sample head"
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert sorted(names) == sorted(found)  # classes with no volume are removed
    plans = {p.name: p for p in analysis_results.segment_plan(results.report, names)}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        assert segment.GetColor() == pytest.approx(plans[segment.GetName()].color)
        tag = segment.GetTerminology()
        assert tag == plans[segment.GetName()].terminology and "SCT^" in tag


def test_segment_volumes_equal_report(sample_run):
    _world, _logic, _volume, results, _events = sample_run
    segmentation = results.segmentation
    byName = {f.display_name: f.volume_ml for f in analysis_results.findings(results.report)}
    for index in range(segmentation.GetSegmentation().GetNumberOfSegments()):
        segmentId = segmentation.GetSegmentation().GetNthSegmentID(index)
        name = segmentation.GetSegmentation().GetSegment(segmentId).GetName()
        assert segment_volume_ml(segmentation, segmentId) == pytest.approx(byName[name], abs=0.01), name


def test_segmentation_and_activation_sit_on_the_input_grid(sample_run):
    _world, _logic, volume, results, _events = sample_run
    segmentation = results.segmentation
    assert segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole()) == volume.GetID()
    geometry = segmentation.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    segIjkToRas, extent = vtk.vtkMatrix4x4(), [0] * 6
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, segIjkToRas, extent)
    volumeIjkToRas = matrix(volume.GetIJKToRASMatrix)
    assert np.allclose([[segIjkToRas.GetElement(r, c) for c in range(4)] for r in range(4)], volumeIjkToRas,
                       atol=1e-3)
    assert list(extent) == list(volume.GetImageData().GetExtent())
    activation = results.activation
    assert activation.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
    assert np.allclose(matrix(activation.GetIJKToRASMatrix), volumeIjkToRas, atol=1e-3)


def test_table_holds_the_report(sample_run):
    _world, _logic, _volume, results, _events = sample_run
    table = results.table
    header, rows = analysis_results.findings_table(results.report)
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == list(header)
    assert [tuple(table.GetCellText(r, c) for c in range(3)) for r in range(table.GetNumberOfRows())] == rows
    assert float(table.GetCellText(0, 1)) == pytest.approx(results.report["ich_probability"], abs=0.005)
    assert ("Model", results.report["model"]["name"], "") in rows


def test_activation_has_the_heat_colours_and_threshold(sample_run):
    world, _logic, _volume, results, _events = sample_run
    display = results.activation.GetDisplayNode()
    assert display.GetColorNodeID() == heatColorNode(world.scene).GetID()
    assert display.GetApplyThreshold() == 1
    assert display.GetLowerThreshold() == pytest.approx(ACTIVATION_DISPLAY_THRESHOLD)
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, 1.0))
    low, high = results.activation.GetImageData().GetScalarRange()
    assert 0.0 <= low and high <= 1.0 + 1e-6 and high > ACTIVATION_DISPLAY_THRESHOLD


def test_activation_in_slice_views_and_3d(sample_run):
    world, logic, _volume, results, _events = sample_run
    activation = results.activation
    logic.showActivation(activation, True, 0.4)
    composites = [s.GetSliceCompositeNode() for s in world.sliceLogics]
    assert [(c.GetForegroundVolumeID(), c.GetForegroundOpacity()) for c in composites] == [
        (activation.GetID(), pytest.approx(0.4))] * 3
    logic.showActivation(activation, False, 0.4)
    assert [c.GetForegroundVolumeID() for c in composites] == [None] * 3

    display = logic.showActivation3D(activation, True)
    assert display.IsA(CPU_RAY_CAST) and display.GetVisibility() == 1
    assert world.logics.volumeRendering.GetFirstVolumeRenderingDisplayNode(activation) is display
    assert logic.showActivation3D(activation, False) is display and display.GetVisibility() == 0


def test_jump_to_finding_centres_every_slice_view(sample_run):
    world, logic, volume, results, _events = sample_run
    finding = results.largestFinding
    assert finding is not None and finding.volume_ml == max(f.volume_ml for f in
                                                            analysis_results.findings(results.report))
    logic.jumpToFinding(finding, volume)
    for sliceLogic in world.sliceLogics:
        sliceToRas = sliceLogic.GetSliceNode().GetSliceToRAS()
        assert [sliceToRas.GetElement(row, 3) for row in range(3)] == pytest.approx(finding.centroid_ras, abs=1e-3)


def test_repeated_analyze_keeps_one_set_of_results(scene, analysis, tiny_model, ct_file):
    volume = scene.loadVolume(ct_file)
    counts = []
    for _run in range(3):
        outcome, results, error, _events = run_analysis(analysis, volume, str(tiny_model))
        assert error == "" and outcome.succeeded, f"{error} {outcome.stderr_tail}"
        assert len(analysis.resultNodes(volume)) == len(results.nodes()) == 3
        counts.append(scene.scene.GetNumberOfNodes())
        ids = scene.nodeIDs()
        assert all(n.GetID() in ids for n in results.nodes())
    assert counts[0] == counts[1] == counts[2], "earlier runs leaked nodes"
    analysis.removeResults(volume)
    assert analysis.resultNodes(volume) == []


def test_cancelled_analysis_adds_no_node_and_removes_its_files(scene, analysis, tiny_model, ct_file, tmp_path,
                                                                monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    volume = scene.loadVolume(ct_file)
    before = scene.nodeIDs()
    finished = []

    def onEvent(event):
        if event["event"] == "progress":
            analysis.cancel()

    analysis.analyze(volume, str(tiny_model), "cpu", onEvent=onEvent, onFinished=lambda *a: finished.append(a))
    assert analysis.analyzing
    analysis.waitForCompletion(120)
    outcome, results, error = finished[0]
    assert (outcome.status, results, error) == ("cancelled", None, "")
    assert scene.nodeIDs() == before
    assert list(temp.iterdir()) == []
    assert not analysis.busy


def test_engine_error_reaches_the_caller_and_adds_no_node(scene, analysis, tiny_model, tmp_path):
    flat = sitk.Image(32, 32, 1, sitk.sitkInt16)  # one slice: the engine refuses 2D inputs
    path = tmp_path / "one-slice.nrrd"
    sitk.WriteImage(flat, str(path))
    volume = scene.loadVolume(path, "one slice")
    before = scene.nodeIDs()
    outcome, results, error, _events = run_analysis(analysis, volume, str(tiny_model))
    assert results is None and outcome.status == "failed"
    assert error and "\n" not in error
    assert scene.nodeIDs() == before


def test_failed_load_keeps_the_previous_results(scene, analysis, tiny_model, ct_file, tmp_path):
    good = tmp_path / "good"
    proc = run_cli("analyze", str(ct_file), "--output-dir", str(good), "--model", str(tiny_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    volume = scene.loadVolume(ct_file)
    first = analysis.loadResults(volume, {"cases": [{"output_dir": str(good)}]})
    ids = scene.nodeIDs()
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    damaged = bad / "segmentation.seg.nrrd"
    damaged.write_bytes(damaged.read_bytes()[:-100])  # truncated: Slicer's NRRD reader would abort
    with pytest.raises(SmartNetError, match="damaged"):
        analysis.loadResults(volume, {"cases": [{"output_dir": str(bad)}]})
    assert scene.nodeIDs() == ids
    assert analysis.resultNodes(volume) == [n for n in analysis.resultNodes(volume) if n in first.nodes()]
    assert len(analysis.resultNodes(volume)) == 3


def test_heat_colour_table_is_inferno_and_one_per_scene(scene):
    node = heatColorNode(scene.scene)
    assert heatColorNode(scene.scene) is node and node.GetNumberOfColors() == 256
    first, last = [0.0] * 4, [0.0] * 4
    node.GetColor(0, first)
    node.GetColor(255, last)
    assert first[:3] == pytest.approx((0.001, 0.0, 0.014), abs=0.01)
    assert last[:3] == pytest.approx((0.988, 0.998, 0.645), abs=0.01)


def test_dicom_seg_export_from_the_volume_s_own_dicom_files(scene, tmp_path):
    """A volume that Slicer's DICOM plugin loaded carries its instance UIDs; the SEG references them."""
    import highdicom as hd
    import pydicom

    from conftest import write_dicom_series
    from SMARTNetLib.io.volume import dicom_series_files

    image = sitk.Cast(sitk.ReadImage(str(SAMPLE_HEAD)), sitk.sitkInt16)
    files = dicom_series_files(write_dicom_series(image, tmp_path / "series"))
    byUid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    logic = AnalysisLogic(scene.logics, new_engine(), fileForInstance=byUid.get)
    volume = scene.loadVolume(SAMPLE_HEAD, "from DICOM")
    with pytest.raises(ValueError, match="loaded from the DICOM database"):
        logic.analyze(volume, None, "cpu", dicomSegFolder=str(tmp_path / "seg"))
    assert not logic.busy
    volume.SetAttribute("DICOM.instanceUIDs", " ".join(byUid))
    finished = []
    logic.analyze(volume, None, "cpu", onFinished=lambda *a: finished.append(a), dicomSegFolder=str(tmp_path / "seg"))
    logic.waitForCompletion(300)
    outcome, results, error = finished[0]
    assert error == "", f"{error} {outcome.stderr_tail}"
    assert results.dicomSeg == str(tmp_path / "seg" / "segmentation.dcm")
    seg = hd.seg.segread(results.dicomSeg)
    assert {uid for _study, _series, uid in seg.get_source_image_uids()} == set(byUid)
    names = sorted(seg.get_segment_description(n).SegmentLabel for n in seg.get_segment_numbers())
    segmentation = results.segmentation.GetSegmentation()
    shown = sorted(segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments()))
    assert [n.split(" (")[0] for n in shown] == names  # "Subdural (SDH)" in Slicer, "Subdural" in the SEG


def test_a_warm_session_keeps_the_model_loaded_between_analyses():
    import os

    from SMARTNetSlicerLib.engine_session import EngineSession

    world = SceneUnderTest()
    logic = AnalysisLogic(world.logics, EngineSession(os.environ, warm=True))
    volume = world.loadVolume(SAMPLE_HEAD, "sample head")
    try:
        outcomes = [run_analysis(logic, volume)[0] for _ in range(2)]
    finally:
        logic.session.close()
    assert [o.result["model_reused"] for o in outcomes] == [False, True]
    assert logic.session.worker.started == 1 and len(logic.resultNodes(volume)) == 3
