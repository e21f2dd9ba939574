"""SMARTNetTraining's training set: JSON round trip, segment mapping, folders/datalists, coverage, export."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk
import slicerio

from conftest import head_phantom
from SMARTNetLib.client.training_set import (
    TrainingCase,
    TrainingSet,
    class_from_terminology,
    coverage_problem,
    export_case,
    file_case,
    file_stems,
    find_pairs,
    label_coverage_problem,
    parse_terminology,
    segment_info,
    write_datalist,
)
from SMARTNetLib.contracts.classes import get_class
from SMARTNetLib.io.volume import ijk_to_lps
from SMARTNetLib.training.datalist import load_datalist, read_label

SDH_TAG = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^49755003^Morphologically Altered "
           "Structure~SCT^50960005^Hemorrhage~99SMARTNET^SDH^Subdural~Anatomic codes - DICOM master list~^^~^^")


def ras_matrix(image: sitk.Image) -> np.ndarray:
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_lps(image)


def scene_case(name="head 1", volume="vtkMRMLScalarVolumeNode1", segments=("SDH", "Skull")) -> TrainingCase:
    return TrainingCase(name, volume_id=volume, segmentation_id="vtkMRMLSegmentationNode1",
                        segments=[segment_info(f"Segment_{n}", s) for n, s in enumerate(segments)])


def test_segment_mapping_by_name_terminology_and_unmapped():
    assert segment_info("s1", "Subdural hematoma").subtype == "subdural"
    assert segment_info("s1", "IVH").source == "name"
    by_terminology = segment_info("s2", "Segment_1", SDH_TAG)
    assert (by_terminology.subtype, by_terminology.source) == ("subdural", "terminology")
    generic = SDH_TAG.replace("99SMARTNET^SDH^Subdural", "^^")
    assert class_from_terminology(generic) == "hemorrhage"
    skull = segment_info("s3", "Skull", "ctx~SCT^123037004^Anatomical Structure~SCT^89546000^Skull~^^~x~^^~^^")
    assert not skull.mapped and skull.source == ""
    assert parse_terminology(SDH_TAG)["typeModifier"] == ["99SMARTNET", "SDH", "Subdural"]
    assert parse_terminology("")["type"] == []


def test_round_trip_and_problems(tmp_path):
    cases = TrainingSet()
    assert cases.add(scene_case())
    assert not cases.add(scene_case(segments=("SAH",)))  # same volume: replaced
    assert len(cases) == 1 and cases.cases[0].segments[0].subtype == "subarachnoid"
    errors = [p for p in cases.problems() if p.level == "error"]
    assert any("Too few cases" in p.message for p in errors)
    cases.add(scene_case("head 2", "vtkMRMLScalarVolumeNode2", ("Subdural", "Skull")))
    problems = cases.problems()
    assert not [p for p in problems if p.level == "error"]
    flagged = [p for p in problems if p.level == "warning" and "'Skull'" in p.message]
    assert [p.case for p in flagged] == ["head 2"]

    restored = TrainingSet.from_json(cases.to_json())
    assert restored == cases
    assert restored.cases[1].unmapped_segments[0].name == "Skull"
    assert TrainingSet.load(cases.save(tmp_path)) == cases
    assert TrainingSet.from_json("") == TrainingSet()

    only_skull = TrainingSet([scene_case("a", "v1", ("Skull",)), scene_case("b", "v2", ("Bone",))])
    assert any("No case has a hemorrhage segment" in p.message for p in only_skull.problems())


def write_pair(folder, stem, label_kind="seg", **phantom):
    ct, label = head_phantom(**phantom)
    image_path = folder / f"{stem}.nrrd"
    sitk.WriteImage(ct, str(image_path))
    if label_kind == "seg":
        _, label_path = export_case(folder / "tmp", stem, sitk.GetArrayFromImage(ct), ras_matrix(ct),
                                    {"subdural": sitk.GetArrayFromImage(label) == 5})
        target = folder / f"{stem}.seg.nrrd"
        label_path.replace(target)
        return image_path, target
    target = folder / f"{stem}_label.nii.gz"
    sitk.WriteImage(label, str(target))
    return image_path, target


def test_folder_and_datalist_import(tmp_path):
    a = write_pair(tmp_path, "a", "seg")
    b = write_pair(tmp_path, "b", "labelmap")
    (tmp_path / "lonely.nrrd").write_bytes(a[0].read_bytes())  # no label: skipped
    assert find_pairs(tmp_path) == [a, b]
    cases = TrainingSet()
    assert cases.add_from_folder(tmp_path) == 2
    assert [c.name for c in cases.cases] == ["a", "b"]
    assert [(s.name, s.subtype) for s in cases.cases[0].segments] == [("Subdural", "subdural")]
    assert [(s.name, s.subtype, s.source) for s in cases.cases[1].segments] == [("label 5", "subdural",
                                                                                  "label value")]
    datalist = write_datalist(tmp_path, [a], [b])
    other = TrainingSet()
    assert other.add_from_datalist(datalist) == 2
    assert [c.key() for c in other.cases] == [c.key() for c in cases.cases]
    assert other.add_from_datalist(datalist) == 0  # already there


def test_nnunet_layout(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    ct, label = head_phantom()
    sitk.WriteImage(ct, str(tmp_path / "imagesTr" / "h1_0000.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "labelsTr" / "h1.nii.gz"))
    assert find_pairs(tmp_path) == [(tmp_path / "imagesTr" / "h1_0000.nii.gz", tmp_path / "labelsTr" / "h1.nii.gz")]


def test_export_writes_files_the_trainer_reads(tmp_path):
    ct, label = head_phantom()
    array = sitk.GetArrayFromImage(ct)
    masks = {"subdural": sitk.GetArrayFromImage(label) == 5, "hemorrhage": np.zeros(array.shape, bool)}
    stems = file_stems(["Head CT 1", "Head CT 1", "../x"])
    assert stems == ["Head_CT_1", "Head_CT_1_2", "x"]
    image_path, label_path = export_case(tmp_path / "cases", stems[0], array, ras_matrix(ct), masks)
    written = sitk.ReadImage(str(image_path))
    assert written.GetSize() == ct.GetSize()
    np.testing.assert_allclose(written.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), ct.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(written.GetSpacing(), ct.GetSpacing(), atol=1e-6)
    segmentation = slicerio.read_segmentation(str(label_path), skip_voxels=True)
    assert [(s["name"], s["labelValue"]) for s in segmentation["segments"]] == [("Subdural", 5)]
    info = read_label(label_path, written)  # the trainer's own reader accepts it, on the CT's grid
    assert info.kind == "subtypes"
    np.testing.assert_array_equal(info.array, sitk.GetArrayFromImage(label))
    assert not list((tmp_path / "cases").glob(".*"))  # no temporary files left

    datalist = write_datalist(tmp_path, [(image_path, label_path)] * 2, synthetic=True)
    data = json.loads(datalist.read_text())
    assert data["training"][0] == {"image": "cases/Head_CT_1.nrrd", "label": "cases/Head_CT_1.seg.nrrd"}
    assert data["synthetic"] is True
    loaded = load_datalist(datalist, val_split=0.5)
    assert len(loaded.training) == 1 and len(loaded.validation) == 1
    assert file_case(image_path, label_path).segments[0].subtype == "subdural"


def test_coverage_checks():
    ijk_to_ras = np.diag([0.5, 0.5, 2.0, 1.0])
    ijk_to_ras[:3, 3] = (-10, -10, -10)
    dims = (40, 40, 10)  # covers [-10.25, 9.75] x [-10.25, 9.75] x [-11, 9]
    assert coverage_problem(ijk_to_ras, dims, [-5, 5, -5, 5, -5, 5]) is None
    assert coverage_problem(ijk_to_ras, dims, [1, -1, 1, -1, 1, -1]) is None  # empty: a CT without hemorrhage
    assert "entirely outside" in coverage_problem(ijk_to_ras, dims, [50, 60, 50, 60, 0, 1])
    partly = coverage_problem(ijk_to_ras, dims, [-5, 5, -5, 5, -5, 30])
    assert "beyond its volume" in partly and "axis K" in partly


def test_label_coverage_problem_on_files(tmp_path):
    ct, label = head_phantom()
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(label, str(tmp_path / "label.nrrd"))
    assert label_coverage_problem(tmp_path / "ct.nrrd", tmp_path / "label.nrrd") is None
    moved = sitk.Image(label)
    moved.SetOrigin([v + 200.0 for v in label.GetOrigin()])
    sitk.WriteImage(moved, str(tmp_path / "moved.nrrd"))
    assert "outside" in label_coverage_problem(tmp_path / "ct.nrrd", tmp_path / "moved.nrrd")
    _, seg = export_case(tmp_path / "c", "c", sitk.GetArrayFromImage(ct), ras_matrix(ct),
                         {"subdural": sitk.GetArrayFromImage(label) == 5})
    assert label_coverage_problem(tmp_path / "ct.nrrd", seg) is None
    assert get_class("subdural").label_value == 5


def test_coverage_of_content_on_an_oblique_grid():
    """A full-grid segment on an oblique volume is inside it; its world-axis box is not."""
    angle = np.radians(15)
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    ijk_to_ras[:3, 3] = (5, -7, 3)
    dims = (40, 30, 10)
    extent = [0, 39, 0, 29, 0, 9]
    assert coverage_problem(ijk_to_ras, dims, extent, content_ijk_to_world=ijk_to_ras) is None
    corners = np.array([[i, j, k, 1] for i in extent[:2] for j in extent[2:4] for k in extent[4:]]) @ ijk_to_ras.T
    box = [v for axis in range(3) for v in (corners[:, axis].min(), corners[:, axis].max())]
    assert "beyond its volume" in coverage_problem(ijk_to_ras, dims, box)  # why the extent form exists
    shifted = ijk_to_ras.copy()
    shifted[:3, 3] += ijk_to_ras[:3, 1] * 10  # ten voxels along J
    assert "axis J" in coverage_problem(ijk_to_ras, dims, extent, content_ijk_to_world=shifted)
