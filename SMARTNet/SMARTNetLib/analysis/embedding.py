"""Representations: per-slice or per-volume features of a model, mapped to 2D with t-SNE and plotted.

SMART-Net's README promises this plot; this makes it real. Points are coloured by their label: negative,
or the subtype with the largest volume in that slice or volume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.analysis.inference import Analyzer
from SMARTNetLib.contracts.classes import SUBTYPES, get_class
from SMARTNetLib.contracts.files import atomic_path
from SMARTNetLib.io.volume import read_ct, to_canonical

NEGATIVE = "negative"


@dataclass
class Embedding:
    """Feature vectors of one model with a label per point."""

    model: str
    features: np.ndarray  # (N, F)
    labels: list[str]
    cases: list[str]


def dominant_label(label_counts: np.ndarray) -> str:
    """The class with most voxels (counts indexed by label value 1..5), or ``negative``."""
    if label_counts[1:].sum() == 0:
        return NEGATIVE
    value = int(np.argmax(label_counts[1:])) + 1
    return next(c.name for c in SUBTYPES if c.label_value == value)


def collect(analyzer: Analyzer, cases: list[tuple[Path, np.ndarray | None]], level: str,
            progress: Callable[[float], None] | None = None, max_slices: int = 40) -> Embedding:
    """Features of every case (``level`` "volume") or of up to ``max_slices`` slices per case ("slice").

    ``cases`` pairs an image path with its label array (k, j, i) on the image grid, or None (unlabelled).
    """
    features, labels, names = [], [], []
    for n, (path, label) in enumerate(cases):
        image = read_ct(path)
        out = analyzer.encode(image)
        lab = None
        if label is not None:
            lab_img = sitk.GetImageFromArray(label)
            lab_img.CopyInformation(image)
            lab = sitk.GetArrayFromImage(to_canonical(lab_img))  # same slice order as the features
        if level == "volume":
            features.append(out["volume"].numpy()[None])
            labels.append(dominant_label(np.bincount(lab.ravel(), minlength=6)) if lab is not None else "unlabelled")
            names.append(path.name)
        else:
            depth = out["features"].shape[0]
            keep = np.linspace(0, depth - 1, min(depth, max_slices)).round().astype(int)
            features.append(out["features"].numpy()[keep])
            for k in keep:
                labels.append(dominant_label(np.bincount(lab[k].ravel(), minlength=6)) if lab is not None
                              else "unlabelled")
                names.append(f"{path.name}:{k}")
        if progress:
            progress((n + 1) / len(cases))
    return Embedding(analyzer.card.name, np.concatenate(features), labels, names)


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2D t-SNE (scikit-learn) after PCA to at most 50 dimensions."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features)
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = float(min(30, max(2, (x.shape[0] - 1) // 3)))
    method = "exact" if x.shape[0] < 1000 else "barnes_hut"  # Barnes-Hut is slower for small point sets
    return TSNE(n_components=2, perplexity=perplexity, init="pca", method=method,
                random_state=seed).fit_transform(x)


def plot(embeddings: list[Embedding], points: list[np.ndarray], path: Path, level: str) -> None:
    """One panel per model, points coloured by label, written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5 * len(embeddings), 6), dpi=110)
    FigureCanvasAgg(fig)
    colours = {NEGATIVE: (0.6, 0.6, 0.6), "unlabelled": (0.3, 0.3, 0.3),
               **{c.name: c.color for c in SUBTYPES}}
    for n, (emb, xy) in enumerate(zip(embeddings, points)):
        ax = fig.add_subplot(1, len(embeddings), n + 1)
        for name in colours:
            mask = np.array([label == name for label in emb.labels])
            if mask.any():
                shown = name if name in (NEGATIVE, "unlabelled") else get_class(name).display_name
                ax.scatter(xy[mask, 0], xy[mask, 1], s=14 if level == "slice" else 40, color=colours[name],
                           label=f"{shown} ({int(mask.sum())})", alpha=0.8, edgecolors="none")
        ax.set_title(f"{emb.model}: {level} features (t-SNE)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
