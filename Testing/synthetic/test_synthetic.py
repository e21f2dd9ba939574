"""Synthetic head CT generator: determinism, geometry, HU, bleed placement, negatives, CLI, real head."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.contracts.classes import SUBTYPE_NAMES
from SMARTNetLib.synthetic import load_real_head, make_case
from SMARTNetLib.synthetic.bleeds import plan_bleed
from SMARTNetLib.synthetic.noise import SmoothNoise
from SMARTNetLib.synthetic.phantom import ProceduralHead


def arrays(ct: sitk.Image, label: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(label)


def same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
            and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection()))


@pytest.fixture(scope="module")
def all_subtypes_case():
    return make_case(3, size="small", subtypes=list(SUBTYPE_NAMES))


def test_deterministic_by_seed():
    ct1, lab1, info1 = make_case(5, size="small", subtypes=["subdural"])
    ct2, lab2, info2 = make_case(5, size="small", subtypes=["subdural"])
    assert same_geometry(ct1, ct2)
    assert np.array_equal(sitk.GetArrayFromImage(ct1), sitk.GetArrayFromImage(ct2))
    assert np.array_equal(sitk.GetArrayFromImage(lab1), sitk.GetArrayFromImage(lab2))
    assert info1 == info2
    ct3, _, _ = make_case(6, size="small", subtypes=["subdural"])
    assert ct3.GetSize() != ct1.GetSize() or not np.array_equal(sitk.GetArrayFromImage(ct3),
                                                                 sitk.GetArrayFromImage(ct1))


def test_types_geometry_and_labels(all_subtypes_case):
    ct, label, info = all_subtypes_case
    assert ct.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    assert same_geometry(ct, label)
    size = ct.GetSize()
    assert 96 <= size[0] <= 128 and size[0] == size[1] and size[2] <= 24
    a, lab = arrays(ct, label)
    assert set(np.unique(lab)) <= {0, 1, 2, 3, 4, 5}
    assert set(info["subtypes"]) == set(info["volume_ml"]) and set(info["subtypes"]) <= set(SUBTYPE_NAMES)
    assert len(info["subtypes"]) >= 4  # tiny bleeds may vanish on a coarse grid, most must be there
    voxel_ml = np.prod(ct.GetSpacing()) / 1000
    for name, ml in info["volume_ml"].items():
        value = SUBTYPE_NAMES.index(name) + 1
        assert ml == pytest.approx((lab == value).sum() * voxel_ml, rel=1e-3)
        blood = a[lab == value]
        assert 30 <= np.median(blood) <= 90, name  # thin SAH/IVH on 5 mm slices are partial volumes


def test_hu_ranges_of_tissues():
    """Noise-free anatomy straight from the phantom at known points."""
    head = ProceduralHead(np.random.default_rng(1))
    g = np.mgrid[-90:90:1.5, -110:110:1.5, -40:80:3].reshape(3, -1).astype(np.float32)
    hu, f = head.evaluate(g, g, edge=1.0)
    depth = f["depth"]
    assert np.all(hu >= -1000) and np.all(hu <= 2000)
    assert np.median(hu[np.sqrt((g**2).sum(0)) > 140]) == -1000  # air outside
    deep_brain = (f["brain"] > 0.99) & (depth > 25) & (hu < 100)
    assert 20 <= np.median(hu[deep_brain]) <= 45
    ventricle = f["ventricle"] > 0.99
    assert ventricle.sum() > 50 and 0 <= np.median(hu[ventricle]) <= 15
    skull = (depth < -2.5) & (depth > -head.skull + 2.5) & (g[2] > 20)
    assert 600 <= np.median(hu[skull]) <= 2000
    tables = (depth < -0.3) & (depth > -1.0) & (g[2] > 20)
    assert np.median(hu[tables]) > np.median(hu[skull])  # diploe is less dense than the tables
    assert np.max(hu[f["cavity"] > 0.99]) > 100 or not head.calcs  # calcifications are dense


@pytest.mark.parametrize("subtype", SUBTYPE_NAMES)
def test_each_subtype_in_its_place(subtype):
    rng = np.random.default_rng(11)
    head = ProceduralHead(rng)
    texture = SmoothNoise(rng, 6.0, 240)
    for _ in range(6):  # a few bleeds; each must follow the anatomy
        bleed = plan_bleed(rng, head, subtype, np.array([0.0, 1.0, 0.0]))
        c = bleed.center
        g = np.mgrid[-30:30:1.2, -30:30:1.2, -30:30:1.2].reshape(3, -1).astype(np.float32) * (bleed.reach / 30)
        g = g + c[:, None]
        hu, f = head.evaluate(g, g, edge=1.0)
        label = np.zeros(g.shape[1], np.uint8)
        bleed.paint(g, f, hu, label, 1.0, texture)
        inside = label == bleed.label
        if not inside.any():
            continue
        assert (35 if subtype in ("intraventricular", "subarachnoid") else 38) <= np.median(hu[inside]) <= 90
        if subtype in ("epidural", "subdural"):  # against the inner table, inside the skull
            assert f["depth"][inside].min() < 1.5 and f["depth"][inside].max() < 35
            assert np.all(f["depth"][inside] > -1.0)
        elif subtype == "intraventricular":
            assert np.all(f["ventricle"][inside] >= 0.3)  # blood fraction = min(1, 1.6 x CSF fraction)
        elif subtype == "subarachnoid":
            assert np.all(f["csf"][inside] >= 0.25)  # fill factor up to 1.2
        else:
            assert np.all(f["depth"][inside] > 0) and np.all(f["cavity"][inside] > 0.4)


def test_epidural_touches_inner_table_in_the_image():
    ct, label, _ = make_case(21, size="small", subtypes=["epidural"])
    a, lab = arrays(ct, label)
    assert (lab == 1).sum() > 0
    near = ndimage.binary_dilation(lab == 1, np.ones((1, 5, 5)))
    assert (a[near] > 300).any()  # bone right next to the lens


def test_negatives_have_empty_labels():
    _, label, info = make_case(8, size="small", subtypes=[])
    assert not sitk.GetArrayFromImage(label).any() and info["subtypes"] == [] and info["confounders"]
    from SMARTNetLib.synthetic.dataset import NEGATIVE_FRACTION, _choose_subtypes

    draws = [_choose_subtypes(np.random.default_rng(s), None) for s in range(400)]
    share = sum(not d for d in draws) / len(draws)
    assert abs(share - NEGATIVE_FRACTION) < 0.08


def test_cli_writes_valid_datalist(tmp_path: Path):
    out = tmp_path / "synth"
    proc = subprocess.run([sys.executable, "-m", "SMARTNetLib.cli", "synth", "--n", "2", "--output-dir", str(out),
                           "--seed", "4", "--validation-fraction", "0.5", "--events"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "result" and events[-1]["cases"] == 2
    assert any(e["event"] == "progress" for e in events)
    datalist = json.loads((out / "datalist.json").read_text())
    entries = datalist["training"] + datalist["validation"]
    assert len(entries) == 2 and len(datalist["validation"]) == 1
    for e in entries:
        ct = sitk.ReadImage(str(out / e["image"]))
        label = sitk.ReadImage(str(out / e["label"]))
        assert same_geometry(ct, label) and e["host"] == "procedural"
        present = {SUBTYPE_NAMES[v - 1] for v in np.unique(sitk.GetArrayFromImage(label)) if v}
        assert present == set(e["subtypes"]) == set(e["volume_ml"])


def test_real_head_loader_and_bleeds():
    image = load_real_head()
    if image is None:
        pytest.skip("Debian package invesalius-examples is not installed")
    assert image.GetSize() == (256, 256, 108)
    assert np.allclose(image.GetSpacing(), (0.957, 0.957, 1.5), atol=1e-3)
    a = sitk.GetArrayFromImage(image)
    assert a.min() <= -1000 and 1000 < a.max() < 3100
    from SMARTNetLib.synthetic.real_head import real_host

    host = real_host()
    assert 1100 < host.cavity.sum() * np.prod(image.GetSpacing()) / 1000 < 1700  # mL inside the skull
    assert 20 < np.median(host.hu[host.brain]) < 45 and host.ventricle.sum() > 0
    # orientation: the face (sinuses, jaw) is anterior (LPS: smaller y) of the brain
    low = np.argwhere(a[10] > 300).mean(0)
    high = np.argwhere(a[60] > -300).mean(0)
    y_low = image.TransformContinuousIndexToPhysicalPoint((float(low[1]), float(low[0]), 10.0))[1]
    y_high = image.TransformContinuousIndexToPhysicalPoint((float(high[1]), float(high[0]), 60.0))[1]
    assert y_low < y_high
    ct, label, info = make_case(2, size="small", subtypes=["epidural", "intraventricular"], host="real")
    assert info["host"] == "real" and same_geometry(ct, label)
    assert {"epidural", "intraventricular"} & set(info["subtypes"])
