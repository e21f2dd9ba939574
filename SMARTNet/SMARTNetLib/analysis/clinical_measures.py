"""Numbers clinicians read off an ICH scan, from the segmentation: ABC/2 and the ICH score's imaging items.

ABC/2 follows Kothari et al. (Stroke 1996) for each intraparenchymal finding (a connected component):
A, the largest diameter on the slice where the bleed's area is largest; B, the largest diameter
perpendicular to A on that slice; C, the slice thickness times the number of slices with bleed, where a
slice counts 1 when its area is at least 75% of the largest, 0.5 from 25% to 75%, and 0 below.
With C from all slices that show the bleed, ABC/2 of an ellipsoid is 3/pi (about 0.95) of its volume;
Kothari's weighting counts about 1.37 of the 2 semi-axes, so it gives about 0.65 of an ellipsoid's volume
(it was fitted to irregular bleeds). Both are reported, so that users compare with the bedside variant they use.

The ICH score (Hemphill et al., Stroke 2001) has three imaging items: ICH volume >= 30 mL, intraventricular
blood, infratentorial origin. The first two come from the segmentation; the third from each intraparenchymal
finding's location (:mod:`.location`, in the head frame of :mod:`.midline`). Age and GCS are not image findings
and are never guessed. Midline shift (:mod:`.midline`) is measured when hemorrhage was segmented.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

if TYPE_CHECKING:
    from SMARTNetLib.analysis.anatomy_worker import AnatomyJob
    from SMARTNetLib.analysis.midline import HeadAnatomy

MIN_COMPONENT_ML = 0.1  # smaller specks are not findings
ICH_SCORE_VOLUME_ML = 30.0


def _diameters(points_mm: np.ndarray) -> tuple[float, float]:
    """(A, B): the largest distance between two points, and the extent perpendicular to that direction."""
    if len(points_mm) < 2:
        return 0.0, 0.0
    hull = _row_extremes(points_mm)
    differences = hull[:, None, :] - hull[None, :, :]
    distances = np.linalg.norm(differences, axis=-1)
    first, second = np.unravel_index(int(np.argmax(distances)), distances.shape)
    a = float(distances[first, second])
    if a == 0:
        return 0.0, 0.0
    direction = differences[first, second] / a
    perpendicular = np.array([-direction[1], direction[0]])
    projection = hull @ perpendicular
    return a, float(projection.max() - projection.min())


def _row_extremes(points: np.ndarray) -> np.ndarray:
    """The leftmost and rightmost of the points in each row (same second coordinate): every vertex of their
    convex hull is among them, so distances and extents over these equal those over the hull, without
    importing scipy.spatial (0.16 s) for a Qhull call."""
    rows, row = np.unique(points[:, 1], return_inverse=True)
    lo = np.full(len(rows), np.inf)
    hi = np.full(len(rows), -np.inf)
    np.minimum.at(lo, row, points[:, 0])
    np.maximum.at(hi, row, points[:, 0])
    return np.concatenate([np.stack([lo, rows], axis=1), np.stack([hi, rows], axis=1)])


def abc2(mask: sitk.Image) -> list[dict]:
    """Kothari's ABC/2 for each connected component of a binary mask (slices along the image's third axis)."""
    components = sitk.ConnectedComponent(sitk.Cast(mask > 0, sitk.sitkUInt8), True)
    labels = sitk.GetArrayViewFromImage(components)  # (k, j, i)
    sx, sy, sz = mask.GetSpacing()
    voxel_ml = sx * sy * sz / 1000.0
    results = []
    for value in range(1, int(labels.max()) + 1):
        component = labels == value
        count = int(component.sum())
        if count * voxel_ml < MIN_COMPONENT_ML:
            continue
        areas = component.sum(axis=(1, 2))
        largest = int(np.argmax(areas))
        j, i = np.nonzero(component[largest])
        # voxel corners as well as centres, so that a one-voxel-wide bleed has a width
        points = np.concatenate([np.stack([(i + di) * sx, (j + dj) * sy], axis=1)
                                 for di in (-0.5, 0.5) for dj in (-0.5, 0.5)])
        a, b = _diameters(points)
        fraction = areas / areas[largest]
        slices = float(np.sum(np.where(fraction >= 0.75, 1.0, np.where(fraction >= 0.25, 0.5, 0.0))))
        c, c_all = slices * sz, float(np.count_nonzero(areas)) * sz
        k, jj, ii = (float(v.mean()) for v in np.nonzero(component))
        results.append({"a_mm": round(a, 1), "b_mm": round(b, 1), "c_mm": round(c, 1),
                        "abc2_ml": round(a * b * c / 2000.0, 2), "c_all_slices_mm": round(c_all, 1),
                        "abc2_all_slices_ml": round(a * b * c_all / 2000.0, 2),
                        "segmented_ml": round(count * voxel_ml, 2),
                        "largest_slice": largest,
                        "centroid_lps": [round(v, 2) for v in mask.TransformContinuousIndexToPhysicalPoint(
                            (ii, jj, k))]})
    return sorted(results, key=lambda r: -r["segmented_ml"])


def ich_score_imaging(findings: dict[str, dict], locations: list[dict] | None = None) -> dict:
    """The ICH score's imaging items from the report's findings (class name -> {volume_ml, ...}) and the
    intraparenchymal findings' locations (:func:`location.locate_findings`; None: not located)."""
    def volume(name: str) -> float | None:
        return float(findings[name]["volume_ml"]) if name in findings else None

    iph, ivh = volume("intraparenchymal"), volume("intraventricular")
    not_measured = {"age_and_gcs": "not image findings: never taken from the scan"}
    infratentorial = None
    if iph is not None and not locations:
        infratentorial = False if iph == 0 else None
    elif locations:
        regions = [f.get("compartment") for f in locations]
        if "infratentorial" in regions:
            infratentorial = True
        elif None not in regions:
            infratentorial = False
    if iph is not None and infratentorial is None:
        reasons = {f.get("not_measured") for f in locations or []} - {None}
        not_measured["infratentorial_origin"] = "; ".join(sorted(reasons)) or "the findings were not located"
    return {
        "volume_ge_30_ml": None if iph is None else iph >= ICH_SCORE_VOLUME_ML,
        "intraparenchymal_volume_ml": iph,
        "intraventricular_blood": None if ivh is None else ivh > 0,
        "infratentorial_origin": infratentorial,
        "not_measured": not_measured,
    }


def clinical_measures(labels: sitk.Image, findings: dict[str, dict], label_values: dict[str, int],
                      ct: sitk.Image | None = None,
                      anatomy_of_ct: Future[HeadAnatomy] | AnatomyJob | None = None) -> dict:
    """The clinical numbers of ``report.json`` (``clinical``).

    Args:
        labels: the label map (values of ``label_values``) on the CT's grid.
        findings: the report's per-class findings (volumes in mL).
        label_values: class name -> label value.
        ct: the CT; without it the midline shift and the locations are not measured.
        anatomy_of_ct: ``find_head_anatomy(ct)`` already started (:attr:`Analysis.anatomy`, or a thread's future),
            else it is run here.

    Returns:
        ``abc2_intraparenchymal`` (ABC/2 per intraparenchymal finding), ``location_intraparenchymal``,
        ``midline_shift`` (when hemorrhage was segmented) and ``ich_score_imaging`` (volume >= 30 mL,
        intraventricular blood, infratentorial origin; age and GCS are never taken from the image).
    """
    from SMARTNetLib.analysis.location import locate_findings
    from SMARTNetLib.analysis.midline import find_head_anatomy

    iph, ivh = label_values.get("intraparenchymal"), label_values.get("intraventricular")
    segmented = bool(sitk.GetArrayViewFromImage(labels).any())
    anatomy, midline = None, {"measurable": False, "reason": "not assessed: no hemorrhage segmented"}
    if ct is None:
        midline = {"measurable": False, "reason": "not assessed: no CT given"}
    elif segmented:
        try:
            anatomy = anatomy_of_ct.result() if anatomy_of_ct is not None else find_head_anatomy(ct)
            midline = anatomy.midline_shift()
        except (ValueError, RuntimeError) as exc:
            midline = {"measurable": False, "reason": f"the skull's symmetry plane was not found ({exc})"}
    locations = locate_findings(labels, anatomy, iph, ivh) if iph is not None and ct is not None else []
    return {"abc2_intraparenchymal": abc2(labels == iph) if iph is not None else [],
            "location_intraparenchymal": locations,
            "midline_shift": midline,
            "ich_score_imaging": ich_score_imaging(findings, locations if ct is not None else None)}
