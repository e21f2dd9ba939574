"""The follow-up comparison figure: baseline and registered follow-up side by side at the same level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from SMARTNetLib.contracts.classes import HemorrhageClass
from SMARTNetLib.contracts.files import atomic_path
from SMARTNetLib.report.figures import DPI, NOTICE, KeySlice, _head_box, draw_slice, reorient_lps


def comparison_level(baseline_labels: np.ndarray, followup_labels: np.ndarray) -> int:
    """The axial slice (LPS array index) with the most blood in either scan."""
    area = (baseline_labels > 0).sum(axis=(1, 2)) + (followup_labels > 0).sum(axis=(1, 2))
    return int(np.argmax(area)) if area.any() else baseline_labels.shape[0] // 2


def write_comparison_figure(path: Path, baseline_ct: sitk.Image, baseline_labels: sitk.Image,
                            followup_ct: sitk.Image, followup_labels: sitk.Image,
                            classes: list[HemorrhageClass], result: dict) -> None:
    """``path`` (PNG): the baseline and the follow-up (already on the baseline grid) at one level, each with its
    contours, the volumes under each panel and the change in the title."""
    before = reorient_lps(baseline_ct, baseline_labels, None)
    after = reorient_lps(followup_ct, followup_labels, None)
    k = comparison_level(before.labels, after.labels)
    box = _head_box(before.ct)
    figure = Figure(figsize=(12, 6.6), dpi=DPI)
    FigureCanvasAgg(figure)
    total = result["total"]
    for n, (volumes, role) in enumerate(((before, "baseline"), (after, "followup"))):
        ax = figure.add_subplot(1, 2, n + 1)
        ml = total[f"{role}_ml"]
        title = "Baseline" if role == "baseline" else "Follow-up (registered to the baseline)"
        draw_slice(ax, volumes, KeySlice(k, title, f"hemorrhage {ml:.1f} mL"), classes, box)
    change = total["change_fraction"]
    relative = f", {change * 100:+.0f}%" if change is not None else ""
    iph = result["classes"].get("intraparenchymal")
    flag = (f"; intraparenchymal {iph['change_ml']:+.1f} mL: "
            f"{'hematoma expansion' if result['hematoma_expansion'] else 'no hematoma expansion'} (> 6 mL or > 33%)"
            if iph else "")
    figure.suptitle(f"Total change {total['change_ml']:+.1f} mL{relative}{flag}", fontsize=13)
    figure.text(0.5, 0.01, NOTICE, ha="center", fontsize=9, color="#a00")
    with atomic_path(path) as tmp:
        figure.savefig(str(tmp), dpi=DPI)
