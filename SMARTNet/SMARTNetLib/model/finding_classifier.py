"""Naming each finding from anatomy: features of every connected finding and a small network over them.

The segmentation network decides voxel by voxel, from texture; a subtype is a statement about where a bleed
lies and what shape it has: against the inner table as a biconvex lens (EDH) or
a crescent (SDH), in the ventricles (IVH), in sulci and cisterns (SAH), in the parenchyma (IPH). This module
measures each connected finding of the label map on the canonical grid (HU, size, thickness, shape, distance
to bone, what surrounds it, where it lies in the head, and the segmentation's own votes) and a small MLP
(:class:`FindingNet`, trained by ``scripts/train_finding_classifier.py`` on the training generator) names it
one subtype, or background when it is not a bleed. The scan's probabilities then follow from what remains
(:class:`CaseProbability`, fitted by ``scripts/fit_case_probability.py``): a logistic regression per output over
the network's own probability and the named findings' volume and probabilities. Hand-written on numpy/scipy
because no library measures these anatomical features of a CT finding; the classifier is a plain torch module so
that its weights load with ``torch.load(..., weights_only=True)``; the case probability is a few numbers in the
card (fitted with scikit-learn, applied with numpy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from SMARTNetLib.io.volume import distance_to

FINDINGS_FILE = "findings.pt"
BONE_HU = 250.0
MARGIN_MM = 12.0
SHELL_MM = 3.0
NEAR_BONE_MM = 3.0
FEATURE_NAMES: tuple[str, ...] = (
    "log_ml", "hu_mean", "hu_std", "hu_p10", "hu_p90",
    "thickness_max_mm", "thickness_mean_mm", "boundary_fraction",
    "axis_1_mm", "axis_2_mm", "axis_3_mm", "flatness", "elongation", "slices_mm",
    "bone_distance_min_mm", "bone_distance_median_mm", "near_bone_fraction",
    "shell_bone", "shell_csf", "shell_brain", "shell_dense", "shell_air", "shell_soft_hu", "contrast_hu",
    "midline_mm", "midline_min_mm", "lateral_fraction", "below_vertex_mm", "anterior_fraction", "centrality",
    "vote_1", "vote_2", "vote_3", "vote_4", "vote_5", "confidence_mean", "confidence_max",
)
CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


@dataclass
class HeadFrame:
    """Where the head lies on the canonical (k superior, j posterior, i left) grid, in mm from index 0."""

    middle: np.ndarray  # (z, y, x) mm: the head's middle (x = the midline)
    half: np.ndarray  # (z, y, x) half extents in mm
    vertex_mm: float  # z of the top of the head


def head_frame(hu: np.ndarray, spacing_zyx: np.ndarray) -> HeadFrame:
    """Robust extents (2nd to 98th percentile) of the tissue above -300 HU, sampled on a coarse grid."""
    step = (max(1, hu.shape[0] // 40), max(1, hu.shape[1] // 96), max(1, hu.shape[2] // 96))
    coarse = hu[::step[0], ::step[1], ::step[2]] > -300
    if not coarse.any():
        shape = np.array(hu.shape) * spacing_zyx
        return HeadFrame(shape / 2, shape / 2, float(shape[0]))
    labels, count = ndimage.label(coarse)
    if count > 1:  # the head, not the couch
        coarse = labels == 1 + int(np.argmax(ndimage.sum(coarse, labels, range(1, count + 1))))
    points = np.argwhere(coarse) * np.array(step) * spacing_zyx
    lo, hi = np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
    return HeadFrame((lo + hi) / 2, np.maximum((hi - lo) / 2, 1.0), float(hi[0]))


def find_components(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected findings (26-connectivity) of a label map, whatever their labels."""
    return ndimage.label(labels > 0, structure=CONNECTIVITY)


def component_features(hu: np.ndarray, labels: np.ndarray, confidence: np.ndarray, spacing_zyx,
                       components: np.ndarray, count: int, classes: int = 5) -> np.ndarray:
    """(count, len(FEATURE_NAMES)) features of the findings ``1..count`` of ``components``.

    ``hu``, ``labels``, ``confidence`` (the segmentation's probability of the chosen class, uint8 0-255 or
    float 0-1) and ``components`` are (k, j, i) arrays on the canonical grid with ``spacing_zyx`` (mm).
    """
    spacing = np.asarray(spacing_zyx, dtype=float)
    frame = head_frame(hu, spacing)
    scale = 255.0 if confidence.dtype == np.uint8 else 1.0
    margin = np.ceil(MARGIN_MM / spacing).astype(int)
    out = np.zeros((count, len(FEATURE_NAMES)), dtype=np.float32)
    for index, box in enumerate(ndimage.find_objects(components, max_label=count)):
        if box is None:
            continue
        crop = tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(box, margin, hu.shape))
        mask = components[crop] == index + 1
        values = hu[crop].astype(np.float32)
        out[index] = _features(mask, values, labels[crop][mask], confidence[crop][mask] / scale, spacing,
                               np.array([c.start for c in crop]) * spacing, frame, classes)
    return out


def _features(mask: np.ndarray, hu: np.ndarray, votes: np.ndarray, confidence: np.ndarray, spacing: np.ndarray,
              offset_mm: np.ndarray, frame: HeadFrame, classes: int) -> list[float]:
    inside = hu[mask]
    n = int(mask.sum())
    ml = n * float(np.prod(spacing)) / 1000
    # Distances inside the finding and to its 3 mm shell need only the finding's box plus that much: the same
    # values as on the whole crop, at a fraction of the cost (the crop's 12 mm margin is for the bone distance).
    near = _around(mask, np.ceil(SHELL_MM / spacing).astype(int) + 1)
    near_mask = mask[near]
    depth_inside = distance_to(~near_mask, spacing)[near_mask]
    bone = hu > BONE_HU
    to_bone = distance_to(bone, spacing)[mask] if bone.any() else np.full(n, MARGIN_MM, np.float32)
    to_bone = np.minimum(to_bone, MARGIN_MM)
    shell = (distance_to(near_mask, spacing) <= SHELL_MM) & ~near_mask
    around = hu[near][shell] if shell.any() else inside
    soft = around[(around > -100) & (around < 100)]
    points = np.argwhere(mask) * spacing + offset_mm  # (z, y, x) mm
    centre = points.mean(axis=0)
    axes = np.sqrt(np.clip(np.linalg.eigvalsh(np.cov(points.T) if n > 1 else np.zeros((3, 3))), 0, None))[::-1]
    axes = np.maximum(axes, 0.5 * spacing.min())
    relative = (centre - frame.middle) / frame.half
    vote = np.bincount(votes.astype(int), minlength=classes + 1)[1:classes + 1] / max(n, 1)
    return [
        np.log(max(ml, 1e-4)), float(inside.mean()), float(inside.std()),
        float(np.percentile(inside, 10)), float(np.percentile(inside, 90)),
        float(depth_inside.max()), float(depth_inside.mean()),
        float((depth_inside <= spacing.min() * 1.01).mean()),
        *[float(a) for a in axes], float(axes[2] / axes[0]), float(axes[1] / axes[0]),
        float(np.ptp(points[:, 0]) + spacing[0]),
        float(to_bone.min()), float(np.median(to_bone)), float((to_bone <= NEAR_BONE_MM).mean()),
        float((around > BONE_HU).mean()), float(((around > -5) & (around < 18)).mean()),
        float(((around >= 18) & (around < 50)).mean()), float(((around >= 50) & (around <= BONE_HU)).mean()),
        float((around < -200).mean()), float(soft.mean()) if soft.size else 0.0,
        float(inside.mean() - (soft.mean() if soft.size else 0.0)),
        float(abs(centre[2] - frame.middle[2])), float(np.abs(points[:, 2] - frame.middle[2]).min()),
        float(abs(relative[2])), float(frame.vertex_mm - centre[0]), float(-relative[1]),
        float(np.sqrt((relative ** 2).sum())),
        *[float(v) for v in vote], float(confidence.mean()), float(confidence.max()),
    ]


def _around(mask: np.ndarray, margin: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``margin`` voxels per axis, within the array."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margin, mask.shape))


class FindingNet(nn.Module):
    """MLP over standardised finding features -> logits of background and each class."""

    def __init__(self, features: int = len(FEATURE_NAMES), classes: int = 5, hidden: int = 64,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, classes + 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)


@dataclass
class NamedFindings:
    """What the finding classifier said of each connected finding ``1..N`` of a label map."""

    probabilities: np.ndarray  # (N, 1 + classes) softmax, background first
    ml: np.ndarray  # (N,) volume in mL
    kept: np.ndarray  # (N,) bool: not removed as background

    @classmethod
    def none(cls, classes: int = 5) -> NamedFindings:
        return cls(np.zeros((0, classes + 1), np.float32), np.zeros(0, np.float32), np.zeros(0, bool))


CASE_FEATURES = ("network_logit", "log_named_ml", "max_probability", "log_weighted_ml", "log_removed_ml")


def case_features(network_probability: float, named: NamedFindings, output: int) -> np.ndarray:
    """The :data:`CASE_FEATURES` of one output of a scan: 0 = any hemorrhage, c = class c (1-based).

    The network's probability as a logit; log(1 + mL) of the kept findings (for a class: those named that class);
    the largest probability of the output among kept findings (any: 1 - background); log(1 + the kept
    findings' mL weighted by that probability); and log(1 + mL) of the findings the classifier removed (for a
    class: those whose most likely subtype it is), so that a scan whose only finding was removed is not a clean
    negative."""
    p = float(np.clip(network_probability, 1e-4, 1 - 1e-4))
    probs, ml = named.probabilities[named.kept], named.ml[named.kept]
    if output == 0:
        mine, score = np.ones(len(ml), bool), 1 - probs[:, 0]
    else:
        mine, score = np.argmax(probs[:, 1:], axis=1) == output - 1, probs[:, output]
    removed = ~named.kept
    removed_mine = removed if output == 0 else removed & (np.argmax(named.probabilities[:, 1:], axis=1) == output - 1)
    return np.array([np.log(p / (1 - p)), np.log1p(ml[mine].sum()), score.max() if len(score) else 0.0,
                     np.log1p((ml * score).sum()), np.log1p(named.ml[removed_mine].sum())], dtype=np.float64)


@dataclass
class CaseProbability:
    """Per output (``any`` and each class), a logistic regression over some of :data:`CASE_FEATURES`: the
    scan's probability from the network's own and from the findings that the classifier kept."""

    outputs: dict[str, dict]  # name -> {"features": [names], "weights": [...], "bias": b}
    subtypes_at_most_any: bool = False  # no subtype more probable than any hemorrhage (the card's setting)

    @classmethod
    def from_settings(cls, settings: dict) -> CaseProbability:
        if not set(settings.get("features", CASE_FEATURES)) <= set(CASE_FEATURES):  # earlier cards: fewer
            raise ValueError("the case probability was fitted on other features than this engine measures")
        outputs = settings["outputs"]
        for name, fit in outputs.items():
            if len(fit["features"]) != len(fit["weights"]) or not set(fit["features"]) <= set(CASE_FEATURES):
                raise ValueError(f"the case probability of {name!r} has features and weights that do not match")
        return cls(outputs, bool(settings.get("subtypes_at_most_any", False)))

    def apply(self, probabilities: dict[str, float], named: NamedFindings, classes: list[str]) -> dict[str, float]:
        """``probabilities`` (the network's, by output name) with each fitted output replaced; with
        ``subtypes_at_most_any``, each subtype's at most the any-hemorrhage probability (a bleed of one subtype is
        a bleed: the fits, one per output, do not know it)."""
        out = dict(probabilities)
        for name, fit in self.outputs.items():
            if name not in probabilities:
                continue
            x = case_features(probabilities[name], named, 0 if name == "any" else classes.index(name) + 1)
            z = float(fit["bias"]) + sum(float(w) * x[CASE_FEATURES.index(f)]
                                         for f, w in zip(fit["features"], fit["weights"]))
            out[name] = float(1 / (1 + np.exp(-z)))
        if self.subtypes_at_most_any and "any" in out:
            out.update({name: min(p, out["any"]) for name, p in out.items() if name != "any"})
        return out


@dataclass
class FindingClassifier:
    """A trained :class:`FindingNet` and the rule that applies it to a label map; the scan's probabilities from
    its findings when the card has a ``case_probability``."""

    net: FindingNet
    drop_probability: float = 1.01  # background probability above which a finding is removed (> 1: never)
    case: CaseProbability | None = None

    @classmethod
    def load(cls, folder: str | Path, settings: dict) -> FindingClassifier:
        """From ``folder/findings.pt`` (a state dict, loaded with ``weights_only=True``) and the card's settings."""
        from SMARTNetLib.contracts.errors import SmartNetError

        path = Path(folder) / settings.get("file", FINDINGS_FILE)
        if tuple(settings.get("features", FEATURE_NAMES)) != FEATURE_NAMES:
            raise SmartNetError("the finding classifier was trained on other features than this engine measures",
                                path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = FindingNet(hidden=int(settings.get("hidden", 64)))
            net.load_state_dict(state)
        except Exception as err:  # missing, truncated or foreign files
            raise SmartNetError(f"cannot load the finding classifier: {str(err).splitlines()[0][:150]}",
                                path) from None
        case = None
        if settings.get("case_probability"):
            try:
                case = CaseProbability.from_settings(settings["case_probability"])
            except (KeyError, TypeError, ValueError) as err:
                raise SmartNetError(f"invalid case_probability in the card's findings: {err}",
                                    Path(folder) / "model.json") from None
        return cls(net.eval(), float(settings.get("drop_probability", 1.01)), case)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, 1 + classes) softmax probabilities (background first)."""
        with torch.inference_mode():
            return torch.softmax(self.net(torch.from_numpy(features)).float(), dim=1).numpy()

    def relabel(self, hu: np.ndarray, labels: np.ndarray, confidence: np.ndarray, spacing_zyx,
                values: np.ndarray) -> np.ndarray:
        """The label map with every finding given one class (``values[c]`` is class c's label value), and
        findings that are most likely not bleeds removed (when the card sets ``drop_probability``)."""
        return self.name(hu, labels, confidence, spacing_zyx, values)[0]

    def name(self, hu: np.ndarray, labels: np.ndarray, confidence: np.ndarray, spacing_zyx,
             values: np.ndarray) -> tuple[np.ndarray, NamedFindings]:
        """:meth:`relabel`'s label map and what was said of each finding."""
        components, count = find_components(labels)
        if count == 0:
            return labels, NamedFindings.none(len(values))
        features = component_features(hu, labels, confidence, spacing_zyx, components, count)
        probs = self.probabilities(features)
        ml = np.exp(features[:, FEATURE_NAMES.index("log_ml")])  # each finding's volume, as measured
        named = NamedFindings(probs, ml.astype(np.float32), probs[:, 0] <= self.drop_probability)
        return self.relabel_components(components, features, values, probs).astype(labels.dtype), named

    def relabel_components(self, components: np.ndarray, features: np.ndarray, values: np.ndarray,
                           probs: np.ndarray | None = None) -> np.ndarray:
        """The label map of ``components`` (findings 1..N with ``features`` (N, F)): each finding its most likely
        class's label value, 0 where background is more likely than ``drop_probability``."""
        probs = self.probabilities(features) if probs is None else probs
        names = np.where(probs[:, 0] > self.drop_probability, 0, values[np.argmax(probs[:, 1:], axis=1)])
        return np.concatenate([[0], names]).astype(np.uint8)[components]
