"""2D figures of the visual report with matplotlib (Agg): key slices, numbers and the page composition.

Slices are shown in radiological convention (patient's right on the image's left, anterior at the top) with the
aspect ratio of the voxel spacing. The volumes are first reoriented with SimpleITK's DICOMOrient to LPS, where
the array [k, j, i] has i towards the patient's left and j towards posterior, so a plain ``imshow`` of
``array[k]`` is already in that convention, whatever the input's direction matrix.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg canvas directly: no pyplot, no display
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from SMARTNetLib.client.analysis_results import clinical_rows
from SMARTNetLib.contracts.classes import HemorrhageClass

BRAIN_WINDOW = (40.0, 80.0)  # level, width (HU)
ACTIVATION_CMAP = "hot"
ACTIVATION_ALPHA = 0.45
NOTICE = "Trained on synthetic data only — not for clinical use"
BOTTOM_H = 5.0  # inches: the 3D view and the numbers beside it
LINE_IN = 0.235  # inches per text line of the numbers panel
MAX_SUSPICIOUS = 3
DPI = 100
PAGE_WIDTH = 16.0  # inches


@dataclass
class KeySlice:
    """One axial slice to show: index in the LPS-reoriented volume, and why it was chosen."""

    k: int
    title: str
    subtitle: str = ""
    classes: list[HemorrhageClass] = field(default_factory=list)


@dataclass
class SliceVolumes:
    """CT, labels and activation reoriented to LPS, as [k, j, i] arrays, with the spacing (i, j, k) in mm."""

    ct: np.ndarray
    labels: np.ndarray
    activation: np.ndarray | None
    spacing: tuple[float, float, float]
    image: sitk.Image  # the reoriented CT (for index <-> physical point)


def reorient_lps(ct: sitk.Image, labels: sitk.Image, activation: sitk.Image | None) -> SliceVolumes:
    """Reorient the volumes to LPS (identity direction up to obliquity), resampling labels/activation onto the CT
    grid first if their geometry differs."""
    if not _same_grid(labels, ct):
        labels = sitk.Resample(labels, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    if activation is not None and not _same_grid(activation, ct):
        activation = sitk.Resample(activation, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    ct_lps = sitk.DICOMOrient(ct, "LPS")
    return SliceVolumes(
        ct=sitk.GetArrayFromImage(ct_lps).astype(np.float32),
        labels=sitk.GetArrayFromImage(sitk.DICOMOrient(labels, "LPS")),
        activation=None if activation is None else sitk.GetArrayFromImage(sitk.DICOMOrient(activation, "LPS")),
        spacing=tuple(ct_lps.GetSpacing()),
        image=ct_lps,
    )


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)
    )


def _superior_mm(volumes: SliceVolumes, k: int) -> float:
    ni, nj, _ = volumes.image.GetSize()
    return volumes.image.TransformContinuousIndexToPhysicalPoint(((ni - 1) / 2, (nj - 1) / 2, float(k)))[2]


def key_slices(
    volumes: SliceVolumes, classes: Sequence[HemorrhageClass], report: dict, ct: sitk.Image
) -> list[KeySlice]:
    """The slice with the largest area of each subtype found in the labels (largest finding first); when there is
    none, the most suspicious slices by ``report["slice_probabilities"]`` (indices of the input's k axis, mapped
    to the reoriented volume through physical space), else by activation, else the middle slice.

    Computed from the label map rather than ``findings[...]["largest_slice"]`` so that the slice is an axial one
    of the reoriented volume even when the input was acquired in another plane.
    """
    findings = report.get("findings", {})
    areas = {c.name: (volumes.labels == c.label_value).sum(axis=(1, 2)) for c in classes}
    present = sorted((c for c in classes if areas[c.name].any()), key=lambda c: -int(areas[c.name].sum()))
    chosen: dict[int, KeySlice] = {}
    for c in present:
        k = int(np.argmax(areas[c.name]))
        volume = findings.get(c.name, {}).get("volume_ml")
        text = f"{c.abbreviation} {volume:.1f} mL" if isinstance(volume, (int, float)) else c.abbreviation
        if k in chosen:
            chosen[k].title += f" + {text}"
            chosen[k].classes.append(c)
        else:
            where = f"largest {c.display_name.lower()}, S {_superior_mm(volumes, k):+.1f} mm"
            chosen[k] = KeySlice(k, text, where, [c])
    if chosen:
        return list(chosen.values())
    return _suspicious_slices(volumes, report, ct)


def _suspicious_slices(volumes: SliceVolumes, report: dict, ct: sitk.Image) -> list[KeySlice]:
    n = volumes.ct.shape[0]
    probabilities = report.get("slice_probabilities") or []
    out: list[KeySlice] = []
    # Slice probabilities index the input's k axis: they pick axial slices only when that axis is mostly S-I.
    k_axis = np.array(ct.GetDirection()).reshape(3, 3)[:, 2]
    if len(probabilities) == ct.GetSize()[2] and abs(k_axis[2]) > 0.7:
        ni, nj, _ = ct.GetSize()
        for k_input in np.argsort(-np.asarray(probabilities, dtype=float), kind="stable"):
            point = ct.TransformContinuousIndexToPhysicalPoint(((ni - 1) / 2, (nj - 1) / 2, float(k_input)))
            k = int(np.clip(round(volumes.image.TransformPhysicalPointToContinuousIndex(point)[2]), 0, n - 1))
            p = float(probabilities[k_input])
            if out and p < 0.5 * float(max(probabilities)):
                break  # only slices about as suspicious as the most suspicious one
            if all(abs(k - s.k) >= 2 for s in out):
                out.append(KeySlice(k, f"slice {int(k_input)}: p = {p:.2f}", f"S {_superior_mm(volumes, k):+.1f} mm"))
            if len(out) == MAX_SUSPICIOUS:
                break
    elif volumes.activation is not None and volumes.activation.max() > 0:
        for k in np.argsort(-volumes.activation.reshape(n, -1).max(axis=1), kind="stable")[:MAX_SUSPICIOUS]:
            out.append(KeySlice(int(k), "highest activation", f"S {_superior_mm(volumes, int(k)):+.1f} mm"))
    if not out:
        out.append(KeySlice(n // 2, "middle slice", f"S {_superior_mm(volumes, n // 2):+.1f} mm"))
    return out


def _head_box(ct: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns holding the head (above -300 HU on any slice), with a margin; the whole slice if none."""
    body = (ct > -300).any(axis=0)
    if not body.any():
        return slice(None), slice(None)
    rows, cols = np.nonzero(body.any(axis=1))[0], np.nonzero(body.any(axis=0))[0]
    margin_r, margin_c = max(2, body.shape[0] // 30), max(2, body.shape[1] // 30)
    return (
        slice(max(0, rows[0] - margin_r), rows[-1] + margin_r + 1),
        slice(max(0, cols[0] - margin_c), cols[-1] + margin_c + 1),
    )


def draw_slice(ax, volumes: SliceVolumes, key: KeySlice, classes: Sequence[HemorrhageClass], box) -> None:
    """Brain-window CT, activation overlay (heat map, transparent where low) and subtype contours."""
    level, width = BRAIN_WINDOW
    sx, sy, _ = volumes.spacing
    rows, cols = box
    ct = volumes.ct[key.k][rows, cols]
    ax.imshow(ct, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, aspect=sy / sx,
              interpolation="bilinear")
    if volumes.activation is not None:
        heat = np.clip(volumes.activation[key.k][rows, cols], 0.0, 1.0)
        rgba = colormaps[ACTIVATION_CMAP](heat)
        rgba[..., 3] = ACTIVATION_ALPHA * np.clip((heat - 0.1) / 0.4, 0.0, 1.0)
        ax.imshow(rgba, aspect=sy / sx, interpolation="bilinear")
    labels = volumes.labels[key.k][rows, cols]
    for c in classes:
        mask = labels == c.label_value
        if mask.any():
            contours = ax.contour(mask.astype(np.float32), levels=[0.5], colors=[c.color], linewidths=2.0)
            # A dark halo keeps the contour visible on the bright activation overlay.
            contours.set_path_effects([patheffects.withStroke(linewidth=3.6, foreground="black")])
    ax.set_title(key.title + (f"\n{key.subtitle}" if key.subtitle else ""), fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    style = {"color": "white", "fontsize": 10, "fontweight": "bold",
             "path_effects": [patheffects.withStroke(linewidth=2.5, foreground="black")]}
    ax.text(0.02, 0.5, "R", transform=ax.transAxes, ha="left", va="center", **style)
    ax.text(0.98, 0.5, "L", transform=ax.transAxes, ha="right", va="center", **style)
    ax.text(0.5, 0.98, "A", transform=ax.transAxes, ha="center", va="top", **style)
    ax.text(0.5, 0.02, "P", transform=ax.transAxes, ha="center", va="bottom", **style)


def _fmt(value, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def compose_page(
    volumes: SliceVolumes,
    keys: list[KeySlice],
    classes: Sequence[HemorrhageClass],
    report: dict,
    render: np.ndarray | None,
    render_note: str | None,
) -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """Draw the whole page once; return its RGBA pixels and the pixel boxes (top, bottom, left, right) of the
    ``slices`` and ``render`` regions (for the HTML page, which shows them separately)."""
    synthetic = bool(report.get("model", {}).get("synthetic_only"))
    header_h, notice_h, slices_h, legend_h, bottom_h = 0.95, 0.45 if synthetic else 0.0, 4.3, 0.5, BOTTOM_H
    clinical = clinical_rows(report)
    bottom_h += LINE_IN * (len(clinical) + 3.5) if clinical else 0.0  # room for the clinical measures
    height = header_h + notice_h + slices_h + legend_h + bottom_h
    fig = Figure(figsize=(PAGE_WIDTH, height), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)

    def box(left: float, top: float, w: float, h: float):
        """Axes at inches from the top-left corner."""
        return fig.add_axes((left / PAGE_WIDTH, 1 - (top + h) / height, w / PAGE_WIDTH, h / height))

    # Header.
    model = report.get("model", {})
    fig.text(0.25 / PAGE_WIDTH, 1 - 0.45 / height, "SMART-Net intracranial hemorrhage analysis", fontsize=20,
             fontweight="bold", va="center")
    fig.text(0.25 / PAGE_WIDTH, 1 - 0.8 / height, f"{report.get('input', '')}", fontsize=10, va="center",
             color="0.3")
    p = report.get("ich_probability")
    fig.text(1 - 0.25 / PAGE_WIDTH, 1 - 0.45 / height, f"ICH probability {_fmt(p, 2)}", fontsize=20,
             fontweight="bold", va="center", ha="right", color="#b00020" if isinstance(p, float) and p >= 0.5 else "k")
    fig.text(1 - 0.25 / PAGE_WIDTH, 1 - 0.8 / height,
             f"model {model.get('name', '?')} {model.get('version', '')}", fontsize=10, va="center", ha="right",
             color="0.3")
    if synthetic:
        fig.text(0.5, 1 - (header_h + notice_h / 2) / height, NOTICE, fontsize=14, fontweight="bold", color="white",
                 ha="center", va="center",
                 bbox={"boxstyle": "square,pad=0.35", "facecolor": "#b00020", "edgecolor": "none"})

    # Key slices.
    top = header_h + notice_h
    n = max(1, len(keys))
    cell = min(4.0, (PAGE_WIDTH - 0.5) / n)
    start = (PAGE_WIDTH - cell * n) / 2
    box_rc = _head_box(volumes.ct)
    slice_axes = []
    for i, key in enumerate(keys):
        ax = box(start + i * cell + 0.1, top + 0.55, cell - 0.2, slices_h - 0.6)
        draw_slice(ax, volumes, key, classes, box_rc)
        slice_axes.append(ax)
    # Legend: subtype colours and activation colour bar.
    legend_top = top + slices_h
    present = [c for c in classes if np.any(volumes.labels == c.label_value)]
    if present:
        fig.legend(handles=[Patch(facecolor="none", edgecolor=c.color, linewidth=2, label=c.display_name)
                            for c in present],
                   loc="center left", bbox_to_anchor=(0.25 / PAGE_WIDTH, 1 - (legend_top + 0.22) / height),
                   ncol=len(present), frameon=False, fontsize=10, title=None)
    else:
        fig.text(0.25 / PAGE_WIDTH, 1 - (legend_top + 0.22) / height,
                 "No hemorrhage segmented: most suspicious slices shown.", fontsize=10, va="center")
    fig.text(0.25 / PAGE_WIDTH + 0.0, 1 - (legend_top + 0.44) / height,
             f"Brain window W{BRAIN_WINDOW[1]:.0f} L{BRAIN_WINDOW[0]:.0f}; radiological view (patient's right on "
             "the left); contours: segmentation; overlay: activation.", fontsize=8.5, color="0.35", va="center")
    if volumes.activation is not None:
        cax = box(PAGE_WIDTH - 3.25, legend_top + 0.12, 3.0, 0.14)
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[ACTIVATION_CMAP]), cax=cax,
                           orientation="horizontal")
        bar.set_label("activation", fontsize=9, labelpad=1)
        bar.ax.tick_params(labelsize=8)

    # 3D view.
    top = legend_top + legend_h
    side = BOTTOM_H - 0.45
    ax3d = box(0.25, top + 0.1, side, side)
    ax3d.set_xticks([])
    ax3d.set_yticks([])
    if render is not None:
        ax3d.imshow(render, interpolation="antialiased")
        caption = "3D, viewed from anterior-left-superior: skull (≥300 HU), hemorrhage surfaces"
        if volumes.activation is not None:
            caption += "; activation ≥0.5 yellow, ≥0.8 red"
    else:
        ax3d.set_facecolor("0.92")
        ax3d.text(0.5, 0.5, "\n".join(textwrap.wrap(render_note or "3D view unavailable", 40)), ha="center",
                  va="center", fontsize=11, color="0.25", transform=ax3d.transAxes)
        caption = "3D view not rendered"
    fig.text(0.25 / PAGE_WIDTH, 1 - (top + side + 0.25) / height, "\n".join(textwrap.wrap(caption, 80)),
             fontsize=8.5, color="0.35", ha="left", va="center")

    # Numbers.
    axt = box(side + 0.8, top + 0.1, PAGE_WIDTH - side - 1.1, bottom_h - 0.3)
    axt.axis("off")
    _numbers(axt, classes, report, unit=(BOTTOM_H - 0.3) / (bottom_h - 0.3))

    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba()).copy()
    h = rgba.shape[0]
    regions = {}
    if slice_axes:
        x0 = min(a.get_window_extent().x0 for a in slice_axes)
        x1 = max(a.get_window_extent().x1 for a in slice_axes)
        regions["slices"] = (int((header_h + notice_h) * DPI), int(legend_top * DPI),
                             max(0, int(x0) - 10), min(rgba.shape[1], int(x1) + 10))
    extent = ax3d.get_window_extent()
    regions["render"] = (int(h - extent.y1), int(h - extent.y0), int(extent.x0), int(extent.x1))
    return rgba, regions


def total_volume_ml(report: dict) -> float | None:
    """``report["total_volume_ml"]``, or the sum of the findings' volumes when it is missing."""
    total = report.get("total_volume_ml")
    if total is None:
        findings = report.get("findings", {}).values()
        volumes = [f["volume_ml"] for f in findings if isinstance(f.get("volume_ml"), (int, float))]
        total = sum(volumes) if volumes else None
    return total


def _numbers(ax, classes: Sequence[HemorrhageClass], report: dict, unit: float = 1.0) -> None:
    """Table of subtype probabilities and volumes, totals, clinical measures, model and warnings, drawn as text in
    ``ax``; ``unit`` scales the vertical steps (fractions of a 4.7 inch high panel) to this panel's height."""
    findings = report.get("findings", {})
    rows = [[c.display_name + f" ({c.abbreviation})", _fmt(findings.get(c.name, {}).get("probability"), 2),
             _fmt(findings.get(c.name, {}).get("volume_ml"), 1)] for c in classes]
    rows.append(["Total hemorrhage", _fmt(report.get("ich_probability"), 2), _fmt(total_volume_ml(report), 1)])
    table_h = 0.08 * unit * (len(rows) + 1)
    table = ax.table(cellText=rows, colLabels=["Finding", "Probability", "Volume (mL)"], loc="upper left",
                     cellLoc="left", colLoc="left", colWidths=[0.45, 0.2, 0.2], bbox=(0, 1 - table_h, 0.85, table_h))
    table.auto_set_font_size(False)
    table.set_fontsize(11)
    for (r, col), cell in table.get_celld().items():
        cell.set_edgecolor("0.8")
        if r == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("0.93")
        elif r <= len(classes) and col == 0:
            c = classes[r - 1]
            cell.set_facecolor((*c.color, 0.25))
        elif r == len(rows):
            cell.set_text_props(fontweight="bold")
    model = report.get("model", {})
    y = 1 - (0.08 * (len(rows) + 1) + 0.07) * unit
    clinical = clinical_rows(report)
    if clinical:  # one line each, as "name: value (volume mL)"
        ax.text(0, y, "Clinical measures", fontsize=10, fontweight="bold", va="top", transform=ax.transAxes)
        y -= 0.055 * unit
        for name, value, volume in clinical:
            ax.text(0, y, f"{name}: {value}" + (f" = {volume} mL" if volume else ""), fontsize=9.5, va="top",
                    transform=ax.transAxes)
            y -= 0.05 * unit
        y -= 0.02 * unit
    lines = [f"Model: {model.get('name', '?')} {model.get('version', '')}".rstrip()]
    if model.get("description"):
        lines += textwrap.wrap(str(model["description"]), 95)
    if report.get("device"):
        lines.append(f"Device: {report['device']}")
    if model.get("synthetic_only"):
        lines.append(NOTICE + ".")
    for line in lines:
        if y < 0.02:
            ax.text(0, y, "…", fontsize=10, va="top", transform=ax.transAxes)
            return
        ax.text(0, y, line, fontsize=10, va="top", transform=ax.transAxes,
                color="#b00020" if line.startswith(NOTICE) else "k")
        y -= 0.055 * unit
    warnings = report.get("warnings") or []
    if warnings:
        y -= 0.02 * unit
        ax.text(0, y, "Warnings", fontsize=10, fontweight="bold", va="top", transform=ax.transAxes)
        y -= 0.055 * unit
        for w in warnings:
            for i, line in enumerate(textwrap.wrap(str(w), 95)):
                if y < 0.02:
                    ax.text(0, y, "…", fontsize=10, va="top", transform=ax.transAxes)
                    return
                ax.text(0, y, ("• " if i == 0 else "  ") + line, fontsize=9.5, va="top", transform=ax.transAxes,
                        color="#8a4b00")
                y -= 0.05 * unit
