"""DICOM SEG export (``smartnet analyze DICOM_FOLDER --format dicom-seg``), read back with highdicom."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicerio
from highdicom.color import CIELabColor

from conftest import events_of, run_cli, write_dicom_series
from SMARTNetLib.commands.demo import SAMPLE_CT
from SMARTNetLib.contracts.classes import SUBTYPES
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.io.dicom_seg import write_dicom_seg
from SMARTNetLib.io.volume import dicom_series_files


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """The bundled sample head CT as a DICOM series, analyzed by the bundled model with --format dicom-seg."""
    root = tmp_path_factory.mktemp("dicomseg")
    image = sitk.Cast(sitk.ReadImage(str(SAMPLE_CT)), sitk.sitkInt16)
    series = write_dicom_series(image, root / "series")
    out = root / "out"
    proc = run_cli("analyze", str(series), "--output-dir", str(out), "--format", "dicom-seg", "--device", "cpu",
                   "--events")
    assert proc.returncode == 0, proc.stderr
    return series, out, json.loads((out / "report.json").read_text()), events_of(proc)


def test_seg_references_the_series_and_names_each_finding(analyzed):
    series, out, report, _events = analyzed
    assert report["files"]["dicom_seg"] == "segmentation.dcm"
    seg = hd.seg.segread(str(out / "segmentation.dcm"))
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in dicom_series_files(series)]
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    referenced = {uid for _study, _series, uid in seg.get_source_image_uids()}
    assert referenced == {s.SOPInstanceUID for s in sources}
    found = [c for c in SUBTYPES if report["findings"][c.name]["volume_ml"] > 0]
    assert found
    labels = [seg.get_segment_description(n).SegmentLabel for n in seg.get_segment_numbers()]
    assert labels == [c.display_name for c in found]
    for number, cls in zip(seg.get_segment_numbers(), found):
        description = seg.get_segment_description(number)
        assert description.segmented_property_category.value == "49755003"
        assert description.segmented_property_type.value == "50960005"
        modifier = description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
        assert (modifier.CodeValue, modifier.CodingSchemeDesignator) == (cls.abbreviation, "99SMARTNET")
        rgb = CIELabColor.from_dicom_value(description.RecommendedDisplayCIELabValue).to_rgb()
        assert np.allclose(rgb, [255 * v for v in cls.color], atol=2)
        assert description.SegmentAlgorithmType == "AUTOMATIC"


def test_seg_masks_equal_the_seg_nrrd_slice_for_slice(analyzed):
    series, out, report, _events = analyzed
    seg = hd.seg.segread(str(out / "segmentation.dcm"))
    files = dicom_series_files(series)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    nrrd = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    for number in seg.get_segment_numbers():
        name = seg.get_segment_description(number).SegmentLabel
        cls = next(c for c in SUBTYPES if c.display_name == name)
        expected = slicerio.extract_segments(nrrd, [(s["name"], 1) for s in nrrd["segments"]
                                                    if s["labelValue"] == cls.label_value])["voxels"]
        expected_kji = np.transpose(expected, (2, 1, 0)) > 0
        masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[number],
                                                  assert_missing_frames_are_empty=True)[..., 0]
        assert masks.shape == expected_kji.shape
        assert np.array_equal(masks > 0, expected_kji), name
        assert masks.any(), name


def test_seg_frames_sit_on_the_source_slices(analyzed):
    series, out, _report, _events = analyzed
    seg = pydicom.dcmread(str(out / "segmentation.dcm"))
    by_uid = {d.SOPInstanceUID: d for d in (pydicom.dcmread(f, stop_before_pixels=True)
                                            for f in dicom_series_files(series))}
    assert len(seg.PerFrameFunctionalGroupsSequence) > 0
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = by_uid[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert np.allclose(frame.PlanePositionSequence[0].ImagePositionPatient, source.ImagePositionPatient,
                           atol=1e-3)


def test_dicom_seg_needs_a_dicom_folder(tmp_path, ct_file, tiny_model):
    out = tmp_path / "out"
    proc = run_cli("analyze", str(ct_file), "--output-dir", str(out), "--format", "dicom-seg", "--model",
                   str(tiny_model), "--device", "cpu")
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and str(ct_file) in proc.stderr and "DICOM folder" in proc.stderr
    assert not out.exists()


def test_no_finding_means_no_seg_and_says_why(tmp_path, ct_file):
    series = write_dicom_series(sitk.Cast(sitk.ReadImage(str(ct_file)), sitk.sitkInt16), tmp_path / "series")
    labels = np.zeros(sitk.ReadImage(str(ct_file)).GetSize()[::-1], np.uint8)
    with pytest.raises(SmartNetError, match="no hemorrhage found"):
        write_dicom_seg(tmp_path / "seg.dcm", labels, SUBTYPES, dicom_series_files(series), ("m", "1"))
    with pytest.raises(SmartNetError, match="images but the volume"):
        write_dicom_seg(tmp_path / "seg.dcm", labels[:-1], SUBTYPES, dicom_series_files(series), ("m", "1"))
    assert not (tmp_path / "seg.dcm").exists()


def test_no_seg_for_a_series_that_had_to_be_resampled(tmp_path, tiny_model):
    """A tilted gantry's slices are moved onto a regular grid: frames on the source images would not match."""
    from test_dicom_inputs import _moved

    from conftest import head_phantom

    ct, _ = head_phantom(size=(48, 40, 10))
    tilted = _moved(write_dicom_series(ct, tmp_path / "series"), tmp_path / "tilted", shift_rows_per_slice=1)
    out = tmp_path / "out"
    proc = run_cli("analyze", str(tilted), "--output-dir", str(out), "--format", "dicom-seg", "--model",
                   str(tiny_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert "dicom_seg" not in report["files"] and not (out / "segmentation.dcm").exists()
    assert any("no DICOM SEG written: the slices were resampled" in w for w in report["warnings"])
