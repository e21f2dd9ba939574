"""Follow-up comparison of two analysed head CTs: rigid registration, volume change, hematoma expansion.

Volumes are measured on each scan's own grid (a rigid motion does not change them); the registration
(SimpleITK, rigid Euler 3D, Mattes mutual information on the skull and brain window, multi-resolution) brings
the follow-up onto the baseline so that both can be shown at the same level and new blood told from old.
Expansion follows the definitions used in ICH trials: growth of more than 6 mL or more than 33% of the
baseline volume (Dowlatshahi et al., Stroke 2011), for the intraparenchymal hematoma and for all blood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.contracts.classes import HemorrhageClass

EXPANSION_ML = 6.0
EXPANSION_FRACTION = 0.33
HU_RANGE = (-100.0, 1500.0)  # brain to bone: what a rigid head registration should look at
WORKING_SPACING_MM = 2.0


@dataclass
class Registration:
    """The follow-up-to-baseline rigid transform (maps baseline points to follow-up points, as SimpleITK's
    resampling expects) and how well the images agree after it."""

    transform: sitk.Euler3DTransform
    metric: float
    iterations: int

    def describe(self) -> dict:
        params = self.transform.GetParameters()
        return {"type": "rigid (Euler 3D)", "rotation_deg": [round(float(np.degrees(a)), 3) for a in params[:3]],
                "translation_mm": [round(float(t), 3) for t in params[3:]],
                "center_mm": [round(float(c), 3) for c in self.transform.GetCenter()],
                "mattes_mutual_information": round(self.metric, 4), "iterations": self.iterations}


def _prepared(image: sitk.Image, hu_range: tuple[float, float] = HU_RANGE,
              spacing_mm: float = WORKING_SPACING_MM) -> sitk.Image:
    """HU clamped to brain-to-bone and shifted to start at 0 (the moments initialiser weighs by intensity, and
    negative air would pull the centre away from the head), on an isotropic working grid of
    ``WORKING_SPACING_MM``: thick-slice scans (5 mm) would otherwise keep only a few slices on the coarse pyramid
    levels, as SimpleITK shrinks every axis by the same factor, and the rotation would not be found."""
    hu = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, *hu_range) - hu_range[0]
    hu = sitk.SmoothingRecursiveGaussian(hu, spacing_mm / 2)  # against aliasing on the coarser grid
    extent = [size * spacing for size, spacing in zip(image.GetSize(), image.GetSpacing())]
    size = [max(int(round(e / spacing_mm)), 1) for e in extent]
    return sitk.Resample(hu, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing_mm] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def register_rigid(baseline: sitk.Image, followup: sitk.Image, hu_range: tuple[float, float] = HU_RANGE,
                   spacing_mm: float = WORKING_SPACING_MM) -> Registration:
    """Rigid registration of ``followup`` onto ``baseline``, deterministic (no random sampling, one thread).

    Args:
        baseline: the fixed CT in HU.
        followup: the moving CT in HU.
        hu_range: the HU the metric looks at (clipped outside).
        spacing_mm: the isotropic working grid (thick slices keep their levels through the pyramid).

    Returns:
        The :class:`Registration`: the Euler transform mapping baseline points to follow-up points, and its
        metric value.
    """
    fixed, moving = _prepared(baseline, hu_range, spacing_mm), _prepared(followup, hu_range, spacing_mm)
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    # every voxel of the working grid: random sampling made the result depend on the machine's threads and let
    # the optimiser stop early (4.1 instead of 5 degrees on the 5 mm sample head)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4, numberOfIterations=300,
                                                     relaxationFactor=0.8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])  # 8, 4 and 2 mm by default
    method.SetSmoothingSigmasPerLevel([2 * spacing_mm, spacing_mm, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    # ITK's metric sums its threads' shares in whatever order they finish, so that with the default threads the
    # symmetry plane of a head moved by 1e-4 and a septum sample by a row from run to run: one thread, the same
    # answer every time (0.1 s more on benchmarks/analyze.py's head)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        result = method.Execute(fixed, moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    transform = sitk.Euler3DTransform(sitk.CompositeTransform(result).GetNthTransform(0))
    return Registration(transform, float(method.GetMetricValue()), int(method.GetOptimizerIteration()))


def resample_onto(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform, label: bool) -> sitk.Image:
    """``image`` on ``reference``'s grid through ``transform`` (nearest neighbour for label maps)."""
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    default = 0 if label else -1024
    return sitk.Resample(image, reference, transform, interpolator, default, image.GetPixelID())


def volumes_ml(labels: sitk.Image, classes: list[HemorrhageClass]) -> dict[str, float]:
    """Segmented mL of each class."""
    array = sitk.GetArrayViewFromImage(labels)
    ml = float(np.prod(labels.GetSpacing())) / 1000
    return {c.name: round(float((array == c.label_value).sum() * ml), 3) for c in classes}


def change(baseline_ml: float, followup_ml: float) -> dict:
    """Absolute and relative change, and whether it is an expansion (> 6 mL or > 33%)."""
    grown = followup_ml - baseline_ml
    relative = grown / baseline_ml if baseline_ml > 0 else None
    return {"baseline_ml": round(baseline_ml, 3), "followup_ml": round(followup_ml, 3), "change_ml": round(grown, 3),
            "change_fraction": round(relative, 4) if relative is not None else None,
            "expansion_gt_6_ml": bool(grown > EXPANSION_ML),
            "expansion_gt_33_percent": bool(relative is not None and relative > EXPANSION_FRACTION)}


def compare_labels(baseline: sitk.Image, followup: sitk.Image, followup_aligned: sitk.Image,
                   classes: list[HemorrhageClass]) -> dict:
    """Per class and in total: volume change and expansion flags; and the blood of the follow-up, on the
    baseline grid, that lies outside the baseline's blood (``new_blood_ml``)."""
    before, after = volumes_ml(baseline, classes), volumes_ml(followup, classes)
    per_class = {c.name: change(before[c.name], after[c.name]) for c in classes}
    total = change(sum(before.values()), sum(after.values()))
    old = sitk.GetArrayViewFromImage(baseline) > 0
    new = sitk.GetArrayViewFromImage(followup_aligned) > 0
    ml = float(np.prod(baseline.GetSpacing())) / 1000
    iph = per_class.get("intraparenchymal")
    return {"classes": per_class, "total": total, "new_blood_ml": round(float((new & ~old).sum() * ml), 3),
            "resolved_blood_ml": round(float((old & ~new).sum() * ml), 3),
            "hematoma_expansion": bool(iph and (iph["expansion_gt_6_ml"] or iph["expansion_gt_33_percent"])),
            "any_expansion": bool(total["expansion_gt_6_ml"] or total["expansion_gt_33_percent"])}
