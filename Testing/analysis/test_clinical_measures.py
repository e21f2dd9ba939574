"""ABC/2 against exact ellipsoid volumes, and the ICH score's imaging items (never guessing the rest)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import run_cli
from SMARTNetLib.analysis.clinical_measures import abc2, ich_score_imaging
from SMARTNetLib.client.analysis_results import findings_table


def ellipsoid(semi_axes_mm, spacing=(0.5, 0.5, 5.0), size=(160, 160, 16), angle_deg=0.0, centre_mm=(40, 40, 40)):
    sx, sy, sz = spacing
    k, j, i = np.indices(size[::-1], dtype=float)
    x, y, z = i * sx - centre_mm[0], j * sy - centre_mm[1], k * sz - centre_mm[2]
    t = math.radians(angle_deg)
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    a, b, c = semi_axes_mm
    mask = (u / a) ** 2 + (v / b) ** 2 + (z / c) ** 2 <= 1
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(spacing)
    return image, 4 / 3 * math.pi * a * b * c / 1000.0


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_abc2_of_an_ellipsoid(angle):
    image, exact_ml = ellipsoid((20, 12, 15), angle_deg=angle)
    (finding,) = abc2(image)
    assert finding["a_mm"] == pytest.approx(40, abs=1.5) and finding["b_mm"] == pytest.approx(24, abs=1.5)
    assert finding["segmented_ml"] == pytest.approx(exact_ml, rel=0.06)  # 5 mm slices through a 30 mm bleed
    # all slices: 3/pi of the ellipsoid's volume; whole 5 mm slices add up to one slice to C (30 mm), and
    # diameters measured to the voxels' edges about half a voxel to A and B
    assert 30 <= finding["c_all_slices_mm"] <= 35
    assert finding["abc2_all_slices_ml"] == pytest.approx(
        finding["a_mm"] * finding["b_mm"] * finding["c_all_slices_mm"] / 2000, abs=0.01)
    assert 3 / math.pi * exact_ml <= finding["abc2_all_slices_ml"] <= 1.25 * 3 / math.pi * exact_ml
    # Kothari's weights count ~1.37 of the 2 semi-axes: about 0.65 of an ellipsoid's volume
    assert finding["abc2_ml"] == pytest.approx(3 / math.pi * 1.366 / 2 * exact_ml, rel=0.1), (finding, exact_ml)


def test_each_intraparenchymal_finding_gets_its_own_abc2():
    big, _ = ellipsoid((20, 12, 15))
    small, _ = ellipsoid((6, 6, 10), centre_mm=(65, 65, 40))
    results = abc2(sitk.Or(big, small))
    assert len(results) == 2 and results[0]["segmented_ml"] > results[1]["segmented_ml"]
    assert results[1]["a_mm"] == pytest.approx(12, abs=1.5)


def test_ich_score_imaging_items_take_only_what_the_image_shows():
    items = ich_score_imaging({"intraparenchymal": {"volume_ml": 31.0}, "intraventricular": {"volume_ml": 0.0}})
    assert (items["volume_ge_30_ml"], items["intraventricular_blood"], items["infratentorial_origin"]) == (
        True, False, None)
    assert "not located" in items["not_measured"]["infratentorial_origin"]
    assert "never" in items["not_measured"]["age_and_gcs"]
    located = [{"compartment": "supratentorial"}, {"compartment": "infratentorial"}]
    assert ich_score_imaging({"intraparenchymal": {"volume_ml": 31.0}}, located)["infratentorial_origin"] is True
    assert ich_score_imaging({"intraparenchymal": {"volume_ml": 31.0}}, located[:1])["infratentorial_origin"] is False
    unlocated = [{"compartment": None, "not_measured": "no septum pellucidum to anchor the head frame"}]
    unknown = ich_score_imaging({"intraparenchymal": {"volume_ml": 5.0}}, unlocated)
    assert unknown["infratentorial_origin"] is None and "septum" in unknown["not_measured"]["infratentorial_origin"]
    assert ich_score_imaging({"intraparenchymal": {"volume_ml": 0.0}}, [])["infratentorial_origin"] is False
    binary = ich_score_imaging({"hemorrhage": {"volume_ml": 50.0}})  # a model without subtypes
    assert binary["volume_ge_30_ml"] is None and binary["intraventricular_blood"] is None


def test_report_table_and_summary_carry_them(tmp_path, tiny_model, ct_file):
    out = tmp_path / "out"
    proc = run_cli("analyze", str(ct_file), "-o", str(out), "--model", str(tiny_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    clinical = report["clinical"]
    assert set(clinical) == {"abc2_intraparenchymal", "location_intraparenchymal", "midline_shift",
                             "ich_score_imaging"}
    shift = clinical["midline_shift"]
    assert shift["measurable"] is True or shift["reason"], shift  # a measurement or a reason, never silence
    assert len(clinical["location_intraparenchymal"]) == len(clinical["abc2_intraparenchymal"])
    iph_ml = report["findings"]["intraparenchymal"]["volume_ml"]
    parts = clinical["abc2_intraparenchymal"]
    assert sum(f["segmented_ml"] for f in parts) <= iph_ml + 0.01 * len(parts)  # each rounded to 0.01 mL
    assert "ICH score imaging items" in proc.stdout
    rows = [r[0] for r in findings_table(report)[1]]
    assert "ICH score: infratentorial origin" in rows and "Midline shift" in rows
    assert "Midline shift:" in proc.stdout
