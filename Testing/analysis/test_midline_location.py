"""Midline shift against the generator's known mass effect and on the real head under motion; each
intraparenchymal finding's location against the generator's bleed sites; ventricular extension; clear reasons
when nothing can be measured."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SMARTNetLib.analysis.location import compartment, locate_findings, tentorium_superior_mm
from SMARTNetLib.analysis.midline import find_head_anatomy, measure_midline_shift
from SMARTNetLib.synthetic import make_case

IPH, IVH = 2, 3


@pytest.mark.parametrize("seed", [1086, 1300, 100, 400])
def test_midline_shift_matches_the_generators_mass_effect(seed):
    """Basal ganglia bleeds pushing the septum 4.8 mm right and 5.4 mm left (1.25 and 5 mm slices), a smaller
    push, and a head without a bleed: within 1.5 mm of the truth, in the right direction."""
    ct, _, info = make_case(seed, size="full", subtypes=["intraparenchymal"] if seed < 400 else [],
                            host="procedural")
    shift = measure_midline_shift(ct)
    assert shift["measurable"], shift
    truth = info["midline_shift_mm"]
    assert shift["signed_to_left_mm"] == pytest.approx(truth, abs=1.5), (shift, truth)
    if abs(truth) > 2:
        assert shift["direction"] == ("left" if truth > 0 else "right")
    assert shift["ideal_midline"]["method"] in ("falx attachments", "skull symmetry plane")


def test_real_normal_head_shift_is_small_and_stays_under_motion(real_head):
    centre = real_head.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in real_head.GetSize()])
    shifts = []
    for rotation in ((0, 0, 0), (0, 0, -10), (6, 0, 5)):
        moved = sitk.Resample(real_head, real_head,
                              sitk.Euler3DTransform(centre, *np.radians(rotation), (3.0, -2.0, 1.0)),
                              sitk.sitkLinear, -1024)
        shift = measure_midline_shift(moved)
        assert shift["measurable"], shift
        shifts.append(shift["signed_to_left_mm"])
    # this normal head's septum lies about 2 mm right of its falx line (visible on the slices); what matters is
    # that a rotated scan gives the same figure and that it stays below the usual 3 mm of a normal scan
    assert max(abs(s) for s in shifts) < 3.0 and max(shifts) - min(shifts) < 1.0, shifts


@pytest.mark.parametrize("seed,region", [(5003, "deep (basal ganglia)"), (5006, "deep (thalamus)"),
                                         (5000, "lobar"), (5001, "infratentorial")])
def test_location_of_the_generators_bleed_sites(seed, region):
    ct, label, info = make_case(seed, size="full", subtypes=["intraparenchymal"], host="procedural")
    finding = locate_findings(label, find_head_anatomy(ct), IPH, IVH)[0]  # the largest component
    assert finding["region"] == region, (finding, info["bleeds"])
    assert finding["compartment"] == ("infratentorial" if region == "infratentorial" else "supratentorial")
    # the head frame's x is the patient's left (LPS) in the generator's canonical pose
    assert finding["side"] == ("left" if info["bleeds"][0]["center_mm"][0] > 0 else "right")


def test_tentorium_falls_to_the_side_and_behind():
    assert tentorium_superior_mm(0, 0) > tentorium_superior_mm(20, 0) > tentorium_superior_mm(40, 0)
    assert tentorium_superior_mm(0, 40) > tentorium_superior_mm(0, 70)
    position = {"lateral": 25.0, "posterior": 50.0, "superior": -50.0, "depth": 20.0}  # a cerebellar hemisphere
    assert compartment(position) == "infratentorial"
    assert compartment({**position, "posterior": 0.0}) == "supratentorial"  # the temporal lobe, in front


def test_ventricular_extension_and_no_head_frame():
    labels = np.zeros((20, 40, 40), np.uint8)
    labels[5:12, 10:20, 10:20] = IPH
    labels[5:12, 20:24, 10:20] = IVH  # touching: the bleed has ruptured into the ventricle
    labels[14:18, 30:36, 30:36] = IPH  # a second, separate bleed
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((1.0, 1.0, 2.0))
    first, second = locate_findings(image, None, IPH, IVH)
    assert first["intraventricular_extension"] is True and second["intraventricular_extension"] is False
    assert first["region"] is None and "symmetry" in first["not_measured"]
    assert first["segmented_ml"] == pytest.approx(7 * 10 * 10 * 2 / 1000)


def test_no_skull_is_not_measurable_with_a_reason():
    water = sitk.GetImageFromArray(np.zeros((20, 64, 64), np.int16))
    water.SetSpacing((3.0, 3.0, 5.0))
    shift = measure_midline_shift(water)
    assert shift["measurable"] is False and "skull" in shift["reason"]


def test_anatomy_found_beside_the_analysis_gives_the_same_clinical_measures():
    """``Analyzer.analyze(find_anatomy=True)`` starts the head's frame in the helper process (a thread's future
    is accepted too); the clinical measures from it equal those computed in line, and nothing is started unless
    asked or when nothing is segmented."""
    from concurrent.futures import ThreadPoolExecutor

    from SMARTNetLib.analysis.clinical_measures import clinical_measures

    ct, label, _ = make_case(5003, size="full", subtypes=["intraparenchymal"], host="procedural")
    findings = {"intraparenchymal": {"volume_ml": 10.0}, "intraventricular": {"volume_ml": 0.0}}
    values = {"intraparenchymal": IPH, "intraventricular": IVH}
    with ThreadPoolExecutor(1) as pool:
        threaded = clinical_measures(label, findings, values, ct, pool.submit(find_head_anatomy, ct))
    inline = clinical_measures(label, findings, values, ct)
    assert threaded == inline and threaded["midline_shift"]["measurable"], threaded

    import torch

    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.model.store import load_model, resolve_model

    analyzer = Analyzer(*load_model(resolve_model("smartnet-default")), torch.device("cpu"))
    found = analyzer.analyze(ct, explain="none", find_anatomy=True)
    assert sitk.GetArrayViewFromImage(found.labels).any()
    assert found.anatomy.result().midline_shift() == inline["midline_shift"]
    assert analyzer.analyze(ct, explain="none").anatomy is None
    air = sitk.Image(ct.GetSize(), sitk.sitkInt16) - 1000
    air.CopyInformation(ct)
    assert analyzer.analyze(air, explain="none", find_anatomy=True).anatomy is None


def test_the_frame_is_smoothed_where_the_searches_read_it_exactly_as_a_whole(real_head):
    """The plane frame is smoothed only on the levels with rows deep below the inner table (and the falx levels
    beside them): there, the same values as smoothing every level."""
    from scipy import ndimage

    from SMARTNetLib.analysis.midline import FALX_LEVELS, MIN_DEPTH_MM, SMOOTH_SIGMA, FrameImage

    anatomy = find_head_anatomy(real_head)
    frame = sitk.GetArrayFromImage(anatomy.frame)
    image = FrameImage.of(frame)
    deep = np.flatnonzero((image.depth[:, :, int(image.centre_i)] > MIN_DEPTH_MM).any(axis=1))
    used = np.arange(max(deep[0] - FALX_LEVELS, 0), min(deep[-1] + FALX_LEVELS + 1, frame.shape[0]))
    assert 0 < len(used) < frame.shape[0]  # the real head covers part of the frame's levels
    whole = ndimage.gaussian_filter(frame, sigma=SMOOTH_SIGMA)
    assert np.array_equal(image.smooth[used], whole[used])
    assert not np.delete(image.smooth, used, axis=0).any()
    assert anatomy.septum_level in used
