"""Compare with prior on slicer-core: two volume nodes, ``smartnet compare`` in a child process, the follow-up's
segmentation on the prior's grid and the comparison table; a second run replaces them; analyses stay."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from mrml_world import SAMPLE_HEAD, SceneUnderTest, new_engine, run_analysis
from SMARTNetLib.client import analysis_results
from SMARTNetSlicerLib.analysis_logic import INPUT_ATTRIBUTE, ROLE_ATTRIBUTE, AnalysisLogic
from SMARTNetSlicerLib.comparison_logic import FOLLOWUP_ATTRIBUTE, ROLES, ComparisonLogic


def run_comparison(logic: ComparisonLogic, prior, current, timeout: float = 400) -> tuple:
    finished = []
    logic.compare(prior, current, None, "cpu", onFinished=lambda *args: finished.append(args))
    logic.waitForCompletion(timeout)
    assert len(finished) == 1
    return finished[0]


def table_rows(table) -> list[tuple[str, ...]]:
    t = table.GetTable()
    columns = range(t.GetNumberOfColumns())
    return [tuple(t.GetValue(r, c).ToString() for c in columns) for r in range(t.GetNumberOfRows())]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The sample head as the prior and the same head turned by 5 degrees and shifted as the current scan."""
    moved_path = tmp_path_factory.mktemp("current") / "current.nrrd"
    head = sitk.ReadImage(str(SAMPLE_HEAD))
    centre = head.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in head.GetSize()])
    motion = sitk.Euler3DTransform(centre, 0.0, 0.0, np.radians(5.0), (4.0, -3.0, 0.0))
    sitk.WriteImage(sitk.Resample(head, head, motion, sitk.sitkLinear, -1024), str(moved_path), useCompression=True)
    scene = SceneUnderTest()
    analysis = AnalysisLogic(scene.logics, new_engine())
    prior, current = scene.loadVolume(SAMPLE_HEAD, "prior"), scene.loadVolume(moved_path, "current")
    return scene, analysis, ComparisonLogic(analysis, new_engine()), prior, current


def test_compare_with_prior_loads_the_followup_on_the_prior_grid_and_the_table(world):
    scene, analysis, logic, prior, current = world
    _outcome, analysed, error, _events = run_analysis(analysis, prior)
    assert error == ""
    outcome, nodes, error = run_comparison(logic, prior, current)
    assert error == "", f"{error} {outcome.stderr_tail}"
    result = nodes.result
    assert table_rows(nodes.table) == analysis_results.comparison_table(result)[1]
    assert nodes.table.GetTable().GetColumnName(1) == "Baseline (mL)"
    # the follow-up's segmentation lies on the prior's grid
    assert nodes.segmentation.GetNodeReference(
        nodes.segmentation.GetReferenceImageGeometryReferenceRole()).GetID() == prior.GetID()
    segment = nodes.segmentation.GetSegmentation().GetNthSegment(0)
    labelmap = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    assert labelmap.GetSpacing() == pytest.approx(prior.GetSpacing())
    names = {nodes.segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(nodes.segmentation.GetSegmentation().GetNumberOfSegments())}
    expected = {analysis_results._display_name(n) for n, c in result["classes"].items() if c["followup_ml"] > 0}
    assert names == expected and names
    assert {n.GetAttribute(ROLE_ATTRIBUTE) for n in logic.comparisonNodes(prior)} == set(ROLES)
    assert {n.GetAttribute(INPUT_ATTRIBUTE) for n in logic.comparisonNodes(prior)} == {prior.GetID()}
    assert {n.GetAttribute(FOLLOWUP_ATTRIBUTE) for n in logic.comparisonNodes(prior)} == {current.GetID()}
    # the motion is found (the volumes at both times are the model's: see test_comparison.py for growth)
    assert abs(result["registration"]["rotation_deg"][2]) == pytest.approx(5.0, abs=0.5)  # 5 mm slices

    # a second comparison replaces the first; the prior's analysis results stay
    count = scene.scene.GetNumberOfNodes()
    _outcome, again, error = run_comparison(logic, prior, current)
    assert error == "" and scene.scene.GetNumberOfNodes() == count
    assert {n.GetID() for n in logic.comparisonNodes(prior)} == {again.segmentation.GetID(), again.table.GetID()}
    assert nodes.table.GetScene() is None and nodes.segmentation.GetScene() is None
    assert {n.GetID() for n in analysis.resultNodes(prior)} == {n.GetID() for n in analysed.nodes()}


def test_compare_refuses_one_volume_twice(world):
    _scene, _analysis, logic, prior, _current = world
    with pytest.raises(ValueError, match="same volume"):
        logic.compare(prior, prior)
