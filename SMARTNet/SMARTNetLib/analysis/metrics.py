"""Measures of a model's output against ground truth: Dice, AUC and the pointing game."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

POINTING_MM = 10.0


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks (MONAI's ``compute_dice``; 1.0 when both are empty)."""
    import torch
    from monai.metrics import compute_dice

    def batch(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))[None, None]

    return float(compute_dice(batch(prediction), batch(truth), include_background=True, ignore_empty=False))


def roc_auc(truth: list[int], scores: list[float]) -> float | None:
    """ROC AUC (scikit-learn's ``roc_auc_score``, rounded to 4 digits), or None when only one class is present
    (AUC undefined). scikit-learn rather than MONAI's ``compute_roc_auc``: the scores are plain lists."""
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


def calibration_error(truth: list[int], probs: list[float], bins: int = 10) -> tuple[float | None, list[dict]]:
    """Expected calibration error (equal-width bins) and the reliability table (per bin: count, mean
    probability, observed frequency)."""
    t, p = np.asarray(truth, float), np.asarray(probs, float)
    if t.size == 0:
        return None, []
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        conf, freq = float(p[sel].mean()), float(t[sel].mean())
        ece += sel.sum() / t.size * abs(conf - freq)
        table.append({"bin": [round(edges[b], 2), round(edges[b + 1], 2)], "count": int(sel.sum()),
                      "mean_probability": round(conf, 4), "observed": round(freq, 4)})
    return round(float(ece), 4), table


def finding_subtypes(truth: np.ndarray, pred: np.ndarray, voxel_ml: float, min_ml: float = 0.0) -> list[dict]:
    """Finding-level subtype check: each connected component of each true subtype (label values) gets the
    predicted label most common inside it (0 = missed)."""
    from scipy import ndimage

    out = []
    for value in np.unique(truth):
        if value == 0:
            continue
        components, n = ndimage.label(truth == value)
        for c in range(1, n + 1):
            inside = components == c
            ml = float(inside.sum() * voxel_ml)
            if ml < min_ml:
                continue
            counts = np.bincount(pred[inside].ravel(), minlength=6)
            predicted = int(np.argmax(counts[1:]) + 1) if counts[1:].any() else 0
            out.append({"true": int(value), "predicted": predicted, "ml": round(ml, 3),
                        "found": bool(counts[1:].sum() > 0)})
    return out
