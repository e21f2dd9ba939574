"""Validation with the inference code itself (:class:`~SMARTNetLib.analysis.inference.Analyzer`): volume AUC and Dice.

Validation runs exactly what users get (orientation, resizing, the 3D operator, thresholds, restoring to
the input grid), so the metrics in a model card measure the released behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk
import torch

from SMARTNetLib.analysis.inference import Analyzer
from SMARTNetLib.analysis.metrics import dice, roc_auc
from SMARTNetLib.contracts.classes import classes_for
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.training.dataset import ValidationVolume


def evaluate(model: SmartNet, card: ModelCard, volumes: list[ValidationVolume], device: torch.device,
             volume_scores: bool, progress: Callable[[float, str], None] | None = None) -> dict:
    """Volume-level any-ICH AUC and Dice (mean over volumes that have the class) of ``model`` on ``volumes``.

    ``volume_scores``: score volumes with the volume classifier (after the 3D stage); otherwise with the
    highest slice probability (the upstream stage has not trained the volume classifier yet).
    """
    analyzer = Analyzer(model, card, device)
    classes = classes_for(card.classes)
    truth, scores = [], []
    any_dice, class_dice = [], {c.name: [] for c in classes}
    for n, vol in enumerate(volumes):
        analysis = analyzer.analyze(vol.image, explain="none")
        predicted = sitk.GetArrayViewFromImage(analysis.labels)
        truth.append(int(vol.labels.any()))
        scores.append(analysis.ich_probability if volume_scores else max(analysis.slice_probabilities, default=0.0))
        if vol.labels.any():
            any_dice.append(dice(predicted > 0, vol.labels > 0))
        for c in classes:
            mask = vol.labels == c.label_value
            if mask.any():
                class_dice[c.name].append(dice(predicted == c.label_value, mask))
        if progress:
            progress((n + 1) / len(volumes), f"validation volume {n + 1}/{len(volumes)}")
    return {
        "val_auc": roc_auc(truth, scores),
        "val_dice": float(np.mean(any_dice)) if any_dice else None,
        "val_dice_classes": {k: round(float(np.mean(v)), 4) for k, v in class_dice.items() if v},
        "val_cases": len(volumes),
        "val_positive": int(sum(truth)),
        "val_scored_by": "volume classifier" if volume_scores else "max slice probability",
    }
