"""Where an intraparenchymal finding lies: supratentorial or infratentorial, lobar or deep, ventricular extension.

Positions are taken in the head frame of :mod:`.midline`, relative to the septum pellucidum's middle on its level
(about the foramina of Monro): ``lateral`` from the ideal midline, ``posterior``, ``superior``, and ``depth`` below
the inner table on the finding's level. The tentorium is not segmented: it is a surface in that frame, drawn on
the real InVesalius head's sagittal sections (apex 18 mm below and 35 mm behind the landmark, falling 0.88 mm per mm
to the side down to 40 mm below at 25 mm lateral, and along the straight sinus to the torcula behind), with the
posterior fossa starting 8 mm in front of the landmark in the midline and further back laterally (the petrous
ridges). Deep (basal ganglia, thalamus) means supratentorial, at least 30 mm below the inner table, within 32 mm
of the midline and near the landmark's level; the rest of the supratentorial brain is lobar. These are
approximations of a single head's anatomy, checked on the synthetic generator's basal ganglia, thalamic, lobar and
cerebellar sites (``Testing/analysis/test_midline_location.py``), not a segmentation of the anatomy.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.analysis.midline import HeadAnatomy

TENT_APEX = (35.0, -18.0)  # (posterior, superior) mm of the tentorium's apex in the midline
TENT_LATERAL_SLOPE, TENT_LATERAL_MM = 0.88, 25.0  # it falls to the side, down to -40 mm at 25 mm lateral
TENT_STRAIGHT_SINUS_SLOPE = 0.85  # and behind the apex, in the midline, along the straight sinus
FOSSA_FRONT_MM, FOSSA_FRONT_SLOPE = -8.0, 0.8  # the posterior fossa's front: clivus in the midline, petrous ridges
DEEP_DEPTH_MM, DEEP_LATERAL_MM = 30.0, 32.0
DEEP_SUPERIOR_MM, DEEP_POSTERIOR_MM = (-25.0, 20.0), (-35.0, 40.0)
THALAMUS = (0.0, 18.0)  # thalamus: behind the landmark and within 18 mm of the midline; basal ganglia elsewhere
MIDLINE_MM = 3.0


def tentorium_superior_mm(lateral: float, posterior: float) -> float:
    """Height (mm, relative to the landmark's level) of the tentorium at a point of the frame."""
    side = min(abs(lateral), TENT_LATERAL_MM)
    behind = max(posterior - TENT_APEX[0], 0.0) * (1 - side / TENT_LATERAL_MM)
    return TENT_APEX[1] - TENT_LATERAL_SLOPE * side - TENT_STRAIGHT_SINUS_SLOPE * behind


def compartment(position: dict[str, float]) -> str:
    """``infratentorial`` (cerebellum, brainstem) or ``supratentorial``."""
    lateral, posterior, superior = abs(position["lateral"]), position["posterior"], position["superior"]
    in_fossa = posterior >= FOSSA_FRONT_MM + FOSSA_FRONT_SLOPE * lateral
    return "infratentorial" if in_fossa and superior < tentorium_superior_mm(lateral, posterior) else \
        "supratentorial"


def region(position: dict[str, float]) -> str:
    """``infratentorial``, ``deep (thalamus)``, ``deep (basal ganglia)`` or ``lobar``."""
    if compartment(position) == "infratentorial":
        return "infratentorial"
    lateral = abs(position["lateral"])
    deep = (position["depth"] >= DEEP_DEPTH_MM and lateral <= DEEP_LATERAL_MM
            and DEEP_SUPERIOR_MM[0] <= position["superior"] <= DEEP_SUPERIOR_MM[1]
            and DEEP_POSTERIOR_MM[0] <= position["posterior"] <= DEEP_POSTERIOR_MM[1])
    if not deep:
        return "lobar"
    return "deep (thalamus)" if position["posterior"] >= THALAMUS[0] and lateral <= THALAMUS[1] else \
        "deep (basal ganglia)"


def locate_findings(labels: sitk.Image, anatomy: HeadAnatomy | None, iph_value: int,
                    ivh_value: int | None) -> list[dict]:
    """For each intraparenchymal finding (a connected component, largest first, as :func:`clinical_measures.abc2`):
    its region and side, and whether it reaches intraventricular blood (ventricular extension)."""
    from SMARTNetLib.analysis.clinical_measures import MIN_COMPONENT_ML

    arr = sitk.GetArrayViewFromImage(labels)
    components, n = ndimage.label(arr == iph_value, structure=np.ones((3, 3, 3)))
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    found = []
    for value in range(1, n + 1):
        mask = components == value
        count = int(mask.sum())
        if count * voxel_ml < MIN_COMPONENT_ML:
            continue
        k, j, i = (float(v.mean()) for v in np.nonzero(mask))
        centroid = np.array(labels.TransformContinuousIndexToPhysicalPoint((i, j, k)))
        extension = bool(ivh_value is not None and (arr[ndimage.binary_dilation(mask)] == ivh_value).any())
        entry = {"segmented_ml": round(count * voxel_ml, 2), "centroid_lps": [round(float(v), 2) for v in centroid],
                 "intraventricular_extension": extension}
        position = anatomy.position(centroid) if anatomy is not None else None
        if position is None:
            entry.update(region=None, compartment=None, side=None,
                         not_measured="no septum pellucidum to anchor the head frame" if anatomy is not None
                         else "the skull's symmetry plane was not found")
        else:
            entry.update(region=region(position), compartment=compartment(position),
                         side="midline" if abs(position["lateral"]) < MIDLINE_MM else
                         ("left" if position["lateral"] > 0 else "right"),
                         frame_mm={k: round(float(v), 1) for k, v in position.items()})
        found.append(entry)
    return sorted(found, key=lambda e: -e["segmented_ml"])
