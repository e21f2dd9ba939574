"""Tests of the label-map-first synthetic heads (``SMARTNetLib.synthetic.labelmap_heads``)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from SMARTNetLib.contracts.classes import SUBTYPE_NAMES, SUBTYPES
from SMARTNetLib.synthetic.labelmap_heads import MIN_VOLUME_ML, _make_case, make_labelmap_case

VALUE = {c.name: c.label_value for c in SUBTYPES}
SEED = {"epidural": 3, "intraparenchymal": 2, "intraventricular": 5, "subarachnoid": 4, "subdural": 15}
NEGATIVE_SEED = 0


@cache
def case(seed: int, subtypes: tuple[str, ...] | None, mimics: bool = True):
    ct, label, info = _make_case(seed, "small", None if subtypes is None else list(subtypes), mimics=mimics)
    return ct, label, info, sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(label)


def intracranial(hu: np.ndarray) -> np.ndarray:
    """Inside the skull ring (> 250 HU), slice by slice, eroded by two pixels."""
    bone = hu > 250
    inside = np.zeros_like(bone)
    for k in range(hu.shape[0]):
        inside[k] = ndi.binary_erosion(ndi.binary_fill_holes(bone[k]) & ~bone[k], iterations=2)
    return inside


def inplane_distance_to_bone(ct: sitk.Image, hu: np.ndarray) -> np.ndarray:
    s = ct.GetSpacing()
    return np.stack([ndi.distance_transform_edt(sl <= 250, sampling=(s[1], s[0])) for sl in hu])


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, la = (sitk.GetArrayFromImage(im) for im in make_labelmap_case(7, subtypes=["subdural"])[:2])
    b, lb = (sitk.GetArrayFromImage(im) for im in make_labelmap_case(7, subtypes=["subdural"])[:2])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    c = sitk.GetArrayFromImage(make_labelmap_case(8, subtypes=["subdural"])[0])
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_types_and_geometry():
    ct, label, info, hu, lab = case(SEED["subdural"], ("subdural",))
    assert ct.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    assert ct.GetSize() == label.GetSize()
    for get in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(ct, get)(), getattr(label, get)())
    nx, ny, nz = ct.GetSize()
    sx, sy, sz = ct.GetSpacing()
    assert nx == ny and 96 <= nx <= 128 and 16 <= nz <= 24
    assert 200 <= nx * sx <= 250 and 5 <= sz <= 7 and sx == pytest.approx(sy)
    assert hu.min() >= -1024 and hu.max() <= 3071
    assert np.median(hu[0]) < -900  # air around the head
    assert info["host"] == "labelmap" and set(info) >= {"subtypes", "volume_ml", "requested_subtypes", "bleeds",
                                                         "mimics", "scanner"}


def test_negative_has_no_label():
    _, _, info, _, lab = case(NEGATIVE_SEED, ())
    assert not lab.any()
    assert info["subtypes"] == [] and info["volume_ml"] == {} and info["bleeds"] == []


def test_unknown_subtype_is_rejected():
    with pytest.raises(ValueError):
        make_labelmap_case(1, subtypes=["subdural", "haematoma of the elbow"])


@pytest.mark.parametrize("name", SUBTYPE_NAMES)
def test_each_subtype_alone_is_present_and_dense(name):
    _, _, info, hu, lab = case(SEED[name], (name,))
    assert set(np.unique(lab)) == {0, VALUE[name]}
    assert info["subtypes"] == [name] and info["requested_subtypes"] == [name]
    assert info["volume_ml"][name] >= MIN_VOLUME_ML
    assert 40 <= np.median(hu[lab == VALUE[name]]) <= 95


def test_repeated_and_mixed_subtypes():
    _, _, info, _, lab = case(21, ("subdural", "subarachnoid", "subarachnoid"))
    assert info["subtypes"] == ["subarachnoid", "subdural"]
    assert set(np.unique(lab)) == {0, VALUE["subarachnoid"], VALUE["subdural"]}
    assert min(info["volume_ml"].values()) >= MIN_VOLUME_ML


def test_extra_axial_bleeds_lie_against_the_skull_and_parenchymal_ones_do_not():
    near = {}
    for name in ("epidural", "subdural", "intraparenchymal"):
        ct, _, _, hu, lab = case(SEED[name], (name,))
        dist = inplane_distance_to_bone(ct, hu)[lab == VALUE[name]]
        near[name] = (float(np.mean(dist < 10.0)), float(dist.min()))
    for name in ("epidural", "subdural"):  # against the inner table: touching it, mostly within 10 mm
        assert near[name][0] > 0.5 and near[name][1] < 4.0, (name, near[name])
    assert near["intraparenchymal"][0] < 0.2, near


def test_intraventricular_and_subarachnoid_blood_fill_csf_spaces():
    """Same seed without the bleed: the head is identical, so the voxels the blood took were CSF before."""
    _, _, _, hu0, _ = case(SEED["intraventricular"], ())
    _, _, _, hu, lab = case(SEED["intraventricular"], ("intraventricular",))
    brain = intracranial(hu0) & (hu0 > 15) & (hu0 < 60)
    assert np.median(hu0[lab > 0]) < 18 < np.median(hu0[brain])  # ventricular CSF, not parenchyma
    assert np.median(hu[lab > 0]) - np.median(hu0[lab > 0]) > 25  # and now dense
    _, _, _, hu0, _ = case(SEED["subarachnoid"], ())
    _, _, _, _, lab = case(SEED["subarachnoid"], ("subarachnoid",))
    brain = intracranial(hu0) & (hu0 > 15) & (hu0 < 60)
    assert np.median(hu0[lab > 0]) < np.median(hu0[brain]) - 4  # sulci, fissures and cisterns


def test_negative_has_dense_mimics_that_are_not_labelled():
    _, _, info, hu, lab = case(NEGATIVE_SEED, ())
    _, _, info0, hu0, lab0 = case(NEGATIVE_SEED, (), mimics=False)
    assert {"falx", "tentorium"} <= set(info["mimics"]) and info0["mimics"] == []
    inside = intracranial(hu0)
    dense = np.count_nonzero(inside & (hu > 50) & (hu < 250))
    dense0 = np.count_nonzero(inside & (hu0 > 50) & (hu0 < 250))
    assert dense >= dense0 + 15
    assert not lab.any() and not lab0.any()


def test_brain_density_is_realistic():
    for seed, subtypes in ((NEGATIVE_SEED, ()), (SEED["subdural"], ("subdural",))):
        _, _, _, hu, lab = case(seed, subtypes)
        tissue = intracranial(hu) & (hu > -20) & (hu < 100) & (lab == 0)
        assert tissue.sum() > 5000
        assert 20 <= np.median(hu[tissue]) <= 45


def test_random_subtypes_give_negatives_and_positives():
    found = [make_labelmap_case(seed)[2] for seed in range(60, 66)]
    for info in found:
        assert info["subtypes"] == info["requested_subtypes"]
    assert any(not i["subtypes"] for i in found) and any(i["subtypes"] for i in found)
