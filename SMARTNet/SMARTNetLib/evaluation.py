"""Measures of a model's output against ground truth: Dice, AUC and the pointing game."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

POINTING_MM = 10.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


def roc_auc(truth: list[int], scores: list[float]) -> float | None:
    """ROC AUC (scikit-learn), or None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(truth, scores)), 4) if 0 < sum(truth) < len(truth) else None


def pointing_hit(heat: sitk.Image, truth: np.ndarray, tolerance_mm: float = POINTING_MM) -> bool:
    """The pointing game: whether the heat map's peak lies inside ``truth`` ((k, j, i) mask on the heat map's grid)
    or within ``tolerance_mm`` of it."""
    values = sitk.GetArrayViewFromImage(heat)
    k, j, i = np.unravel_index(int(np.argmax(values)), values.shape)
    if truth[k, j, i]:
        return True
    peak = np.array(heat.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
    kk, jj, ii = np.nonzero(truth)
    if kk.size == 0:
        return False
    step = max(1, len(kk) // 200000)
    index = np.stack([ii[::step], jj[::step], kk[::step]], 1).astype(float)
    matrix = np.array(heat.GetDirection()).reshape(3, 3) * np.array(heat.GetSpacing())
    points = index @ matrix.T + np.array(heat.GetOrigin())
    return bool(np.min(np.linalg.norm(points - peak, axis=1)) <= tolerance_mm)
