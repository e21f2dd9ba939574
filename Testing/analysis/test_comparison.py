"""Follow-up comparison: rigid registration of the real head under a known motion, volume change and expansion
on a growing bleed, and ``smartnet compare`` through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import events_of, run_cli
from SMARTNetLib.analysis.comparison import change, compare_labels, register_rigid, resample_onto
from SMARTNetLib.commands.demo import SAMPLE_CT
from SMARTNetLib.contracts.classes import SUBTYPES

MOTION_DEG = (4.0, -3.0, 6.0)
MOTION_MM = (5.0, -7.0, 3.0)


def with_bleed(head: sitk.Image, radius_mm: float) -> tuple[sitk.Image, sitk.Image]:
    """The real head with a 65 HU ball in the right basal ganglia region (intraparenchymal label)."""
    hu = sitk.GetArrayFromImage(head)
    k, j, i = np.indices(hu.shape)
    sx, sy, sz = head.GetSpacing()
    centre = np.array(hu.shape) / 2 + np.array([8, 0, -20])
    ball = ((k - centre[0]) * sz) ** 2 + ((j - centre[1]) * sy) ** 2 + ((i - centre[2]) * sx) ** 2 < radius_mm ** 2
    ball &= (hu > 0) & (hu < 80)
    hu[ball] = 65
    ct = sitk.GetImageFromArray(hu)
    ct.CopyInformation(head)
    label = sitk.GetImageFromArray(np.where(ball, 2, 0).astype(np.uint8))
    label.CopyInformation(head)
    return ct, label


def moved(image: sitk.Image, label: bool) -> sitk.Image:
    """``image`` after a known rigid motion of the patient (resampled onto the same grid)."""
    motion = motion_transform(image)
    return resample_onto(image, image, motion.GetInverse(), label)


def motion_transform(image: sitk.Image) -> sitk.Euler3DTransform:
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    return sitk.Euler3DTransform(centre, *np.radians(MOTION_DEG), MOTION_MM)


def test_rigid_registration_recovers_a_known_motion_of_the_real_head(real_head):
    ct, _ = with_bleed(real_head, 12)
    followup = moved(ct, label=False)
    registration = register_rigid(ct, followup)
    truth = motion_transform(ct)  # baseline points to follow-up points, as the registration's transform
    # target registration error over head points (every 8th voxel above -300 HU)
    hu = sitk.GetArrayViewFromImage(ct)
    kji = np.argwhere(hu[::4, ::8, ::8] > -300) * [4, 8, 8]
    points = [ct.TransformIndexToPhysicalPoint([int(i), int(j), int(k)]) for k, j, i in kji[::5]]
    errors = [np.linalg.norm(np.subtract(registration.transform.TransformPoint(p), truth.TransformPoint(p)))
              for p in points]
    assert np.max(errors) <= 1.0, f"target registration error up to {np.max(errors):.2f} mm"
    assert registration.describe()["rotation_deg"] != [0.0, 0.0, 0.0]


def test_registration_of_thick_slices_is_accurate_whatever_the_thread_count():
    """The 5 mm sample head turned in-plane by 5 degrees: the coarse levels keep the rotation (a pyramid on the
    scan's own grid left four slices and found 3.2-4.4 degrees, depending on the machine's threads)."""
    head = sitk.ReadImage(str(SAMPLE_CT))
    assert head.GetSpacing()[2] == pytest.approx(5.0)
    centre = head.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in head.GetSize()])
    motion = sitk.Euler3DTransform(centre, 0.0, 0.0, np.radians(5.0), (4.0, -3.0, 0.0))
    followup = sitk.Resample(head, head, motion, sitk.sitkLinear, -1024)
    found = []
    default_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        for threads in (1, 4):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            found.append(register_rigid(head, followup).transform)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(default_threads)
    truth = motion.GetInverse()
    hu = sitk.GetArrayViewFromImage(head)
    points = [head.TransformIndexToPhysicalPoint([int(i), int(j), int(k)])
              for k, j, i in np.argwhere(hu[::2, ::16, ::16] > -300) * [2, 16, 16]]
    for transform in found:
        errors = [np.linalg.norm(np.subtract(transform.TransformPoint(p), truth.TransformPoint(p))) for p in points]
        assert np.max(errors) <= 1.0, f"target registration error up to {np.max(errors):.2f} mm"
    assert np.degrees(found[0].GetParameters()[2]) == pytest.approx(np.degrees(found[1].GetParameters()[2]), abs=0.05)


def test_growing_bleed_is_measured_and_flagged_after_motion(real_head):
    base_ct, base_label = with_bleed(real_head, 12)
    follow_ct, unmoved_label = with_bleed(real_head, 16)
    follow_ct, follow_label = moved(follow_ct, label=False), moved(unmoved_label, label=True)
    registration = register_rigid(base_ct, follow_ct)
    aligned = resample_onto(follow_label, base_label, registration.transform, label=True)
    result = compare_labels(base_label, follow_label, aligned, list(SUBTYPES))
    ml = float(np.prod(real_head.GetSpacing())) / 1000
    before = float((sitk.GetArrayViewFromImage(base_label) > 0).sum() * ml)
    after = float((sitk.GetArrayViewFromImage(follow_label) > 0).sum() * ml)
    iph = result["classes"]["intraparenchymal"]
    assert iph["baseline_ml"] == pytest.approx(before, abs=1e-3)
    assert iph["followup_ml"] == pytest.approx(after, abs=1e-3)
    true_growth = float((sitk.GetArrayViewFromImage(unmoved_label) > 0).sum() * ml) - before  # about 8 mL
    assert iph["change_ml"] == pytest.approx(true_growth, rel=0.1)
    assert result["hematoma_expansion"] and iph["expansion_gt_6_ml"] and iph["expansion_gt_33_percent"]
    assert result["new_blood_ml"] == pytest.approx(true_growth, rel=0.1)  # old blood lies inside the new, once aligned
    assert result["resolved_blood_ml"] < 0.1 * before


def test_expansion_definitions():
    assert change(10.0, 15.9)["expansion_gt_6_ml"] is False and change(10.0, 16.1)["expansion_gt_6_ml"] is True
    assert change(3.0, 4.1)["expansion_gt_33_percent"] is True and change(3.0, 3.9)["expansion_gt_33_percent"] is False
    assert change(0.0, 2.0)["change_fraction"] is None and change(0.0, 7.0)["expansion_gt_6_ml"] is True


def test_smartnet_compare_cli_analyses_both_and_reuses_outputs(real_head, tmp_path):
    base_ct, _ = with_bleed(real_head, 12)
    follow_ct, _ = with_bleed(real_head, 16)
    paths = {}
    for role, image in (("baseline", base_ct), ("followup", moved(follow_ct, label=False))):
        paths[role] = tmp_path / f"{role}.nrrd"
        sitk.WriteImage(image, str(paths[role]), useCompression=True)
    out = tmp_path / "compare"
    proc = run_cli("compare", str(paths["baseline"]), str(paths["followup"]), "-o", str(out), "--events")
    assert proc.returncode == 0, proc.stderr
    result = events_of(proc)[-1]
    saved = json.loads((out / "comparison.json").read_text())
    assert {p.name for p in out.iterdir()} >= {"comparison.json", "comparison.png", "followup-in-baseline.seg.nrrd",
                                              "baseline", "followup"}
    for role in ("baseline", "followup"):
        report = json.loads((out / role / "report.json").read_text())
        assert saved["total"][f"{role}_ml"] == pytest.approx(report["total_volume_ml"], abs=0.01)
    assert result["total"] == saved["total"] and max(np.abs(saved["registration"]["translation_mm"])) > 2
    # the second time, the analyses are reused as they are (no model is loaded)
    again = run_cli("compare", str(out / "baseline"), str(out / "followup"), "-o", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert "total:" in again.stdout and "hematoma expansion" in again.stdout
    assert json.loads((tmp_path / "again" / "comparison.json").read_text())["total"] == saved["total"]


def test_compare_bad_inputs_are_one_line_errors(tmp_path):
    missing = run_cli("compare", str(tmp_path / "none.nrrd"), str(tmp_path / "none2.nrrd"), "-o", str(tmp_path / "o"))
    assert missing.returncode == 2 and "file not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    folder = tmp_path / "analysis"
    folder.mkdir()
    (folder / "report.json").write_text("{not json")
    broken = run_cli("compare", str(folder), str(folder), "-o", str(tmp_path / "o"))
    assert broken.returncode == 2 and "report.json" in broken.stderr and "not valid JSON" in broken.stderr
    assert not (tmp_path / "o").exists()
