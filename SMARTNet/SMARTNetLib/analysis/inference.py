"""Analysis of one CT volume with a SMART-Net model: probabilities, label map, activation map, volumes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from SMARTNetLib.analysis import anatomy_worker
from SMARTNetLib.analysis.preprocessing import (
    SliceGrid,
    pool_slabs,
    prepare_volume,
    slab_groups,
    slab_weights,
    slice_channels,
)
from SMARTNetLib.contracts.classes import classes_for
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.io.volume import from_canonical, head_width_mm, slice_axis_map, to_canonical, voxel_volume_ml
from SMARTNetLib.model.network import SmartNet

if TYPE_CHECKING:
    from SMARTNetLib.model.finding_classifier import NamedFindings

HEAD_WIDTH_LIMIT_MM = 260.0
EXPLAIN_METHODS = ("gradcam", "hirescam", "activation", "none")
ACTIVATION_FLOOR = 1 / 1024  # activation below this (of a map in [0, 1]) is written as 0
Progress = Callable[[float, str], None]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SmartNetError("--device cuda was asked for, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise SmartNetError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return torch.device(name)


@dataclass
class Analysis:
    """What the model found in one volume; images are on the input's exact grid."""

    probabilities: dict[str, float]  # "any" (when there are subtypes) and each class
    slice_probabilities: list[float]
    slice_order: str  # "k" (the input's slice index) or "inferior-to-superior"
    labels: sitk.Image  # uint8 label map with the classes' label values
    activations: dict[str, sitk.Image]  # target name -> heat map in [0, 1]
    findings: dict[str, dict]
    timing: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    familiarity: float | None = None  # reconstruction error of the input (higher = less like the training data)
    anatomy: anatomy_worker.AnatomyJob | None = None  # the head's frame, under way when something was segmented
    network_probabilities: dict[str, float] | None = None  # the network's own, before the case probability
    named_findings: NamedFindings | None = None  # what the finding classifier said of each finding

    @property
    def ich_probability(self) -> float:
        return self.probabilities.get("any", next(iter(self.probabilities.values())))

    @property
    def total_volume_ml(self) -> float:
        return float(sum(f["volume_ml"] for f in self.findings.values()))


class Analyzer:
    """Runs a loaded model on CT volumes. Slices go through the 2D network in batches of ``batch_size``."""

    def __init__(self, model: SmartNet, card: ModelCard, device: torch.device, batch_size: int = 8) -> None:
        self.model, self.card, self.device, self.batch_size = model.eval(), card, device, batch_size
        self.classes = classes_for(card.classes)

    def analyze(self, image: sitk.Image, explain: str = "gradcam", explain_classes: bool = False,
                progress: Progress | None = None, find_anatomy: bool = False,
                anatomy: anatomy_worker.AnatomyJob | None = None) -> Analysis:
        """Analyze one CT volume.

        Args:
            image: a checked CT in HU (:func:`SMARTNetLib.io.volume.read_ct`), any orientation.
            explain: the activation map's method, one of :data:`EXPLAIN_METHODS` ("none": no map).
            explain_classes: also a map per subtype (else only for the first output, "any").
            progress: called with (fraction, message) as the stages go.
            find_anatomy: find the head frame in the helper process meanwhile (:attr:`Analysis.anatomy`, for
                :func:`clinical_measures`), kept when something is segmented.
            anatomy: that job for ``image``, already submitted (:func:`anatomy_worker.submit`); implies
                ``find_anatomy``.

        Returns:
            The :class:`Analysis`: probabilities, slice probabilities, the label map and activation maps on the
            input's grid, per-class findings, timing, warnings and the input-familiarity score.
        """
        report = progress or (lambda fraction, message: None)
        timing: dict[str, float] = {}
        warnings: list[str] = []
        clock = time.perf_counter()

        # the head's frame (1 s on benchmarks/analyze.py's head) is found in the helper process (at idle priority but
        # in batches) beside the whole analysis; it is only needed (the midline shift, the locations) when something
        # is segmented, and stopped as soon as nothing is
        if anatomy is None and find_anatomy:
            anatomy = anatomy_worker.submit(image)
        canonical = to_canonical(image)
        width = head_width_mm(canonical)
        if width > HEAD_WIDTH_LIMIT_MM:
            warnings.append(f"the input does not look like a head CT (body {width:.0f} mm wide); "
                            "findings are unreliable")
        depth = canonical.GetDepth()
        groups = slab_groups(depth, canonical.GetSpacing()[2], self.card.preprocessing.slab_mm)
        weights = slab_weights(groups, depth)  # None when every slice is its own slab
        windowed, grid = self._prepare(canonical, groups)
        timing["preprocess"] = _lap(clock)
        report(0.1, "preprocessed")

        slices = self._run_slices(windowed, lambda f: report(0.1 + 0.6 * f, "slices"))
        timing["inference_2d"] = _lap(clock, timing)

        familiarity = familiarity_score(slices["rec_error"], windowed)
        threshold = self.card.familiarity.get("threshold")
        if threshold is not None and familiarity > float(threshold):
            warnings.append(f"the input is unlike the model's training data (reconstruction error {familiarity:.3f} "
                            f"above the card's threshold {float(threshold):.3f}); findings are unreliable")
        refined = self._refine(slices, lambda f: report(0.7 + 0.075 * f, "segmentation"))
        with torch.inference_mode():
            volume_logits = self.model.classify_volume(slices, refined)
        probs = torch.sigmoid(volume_logits.float() / self.card.temperature).cpu().numpy()
        probabilities = {name: float(p) for name, p in zip(self.card.output_names, probs)}
        labels_canonical, confidence = self._labels(refined, grid, weights,
                                                    lambda f: report(0.775 + 0.075 * f, "segmentation"))
        timing["inference_3d"] = _lap(clock, timing)
        if anatomy is not None and not labels_canonical.any():
            anatomy.discard()
            anatomy = None
        network_probabilities, named = probabilities, None
        classifier = self.model.finding_classifier
        if classifier is not None:
            values = np.array([c.label_value for c in self.classes])
            labels_canonical, named = classifier.name(
                sitk.GetArrayViewFromImage(canonical), labels_canonical, confidence, canonical.GetSpacing()[::-1],
                values)
            if classifier.case is not None:  # the scan's probabilities from its named findings too
                probabilities = classifier.case.apply(probabilities, named, list(self.card.classes))
            timing["findings"] = _lap(clock, timing)

        activations = {}
        if explain != "none":
            targets = self.card.output_names if explain_classes else self.card.output_names[:1]
            for target in targets:
                heat = self._explain(slices, refined, grid, weights, explain, self.card.output_names.index(target))
                heat *= probabilities[target]  # a confident negative gives a dim map, not a normalised one
                heat[heat < ACTIVATION_FLOOR] = 0  # invisible on a colour map; zeros compress (26 MB -> 0.2 MB)
                activations[target] = from_canonical(_image_like(heat.numpy(), canonical), image)
            report(0.95, "explained")
        timing["explain"] = _lap(clock, timing)

        labels = from_canonical(_image_like(labels_canonical, canonical), image)
        findings = self._findings(labels, probabilities)
        slice_probs = torch.sigmoid(slices["cls"][:, 0].float())
        slice_probs = (weights @ slice_probs if weights is not None else slice_probs).numpy()
        axis, flipped = slice_axis_map(image)
        order = "k" if axis == 2 else "inferior-to-superior"
        if axis == 2 and flipped:
            slice_probs = slice_probs[::-1]
        timing["postprocess"] = _lap(clock, timing)
        report(1.0, "done")
        return Analysis(probabilities, [round(float(p), 4) for p in slice_probs], order, labels, activations,
                        findings, timing, warnings, round(familiarity, 4), anatomy, network_probabilities, named)

    def encode(self, image: sitk.Image) -> dict[str, torch.Tensor]:
        """Per-slice outputs of the 2D network (canonical inferior-to-superior order) plus ``volume``, the
        volume operator's representation (before its last layer)."""
        canonical = to_canonical(image)
        groups = slab_groups(canonical.GetDepth(), canonical.GetSpacing()[2], self.card.preprocessing.slab_mm)
        windowed, _ = self._prepare(canonical, groups)
        slices = self._run_slices(windowed, lambda f: None)
        refined = self._refine(slices, lambda f: None) if self.model.reads_refined_segmentation else None
        with torch.inference_mode():
            vectors = self.model.volume_vectors(slices, refined)
            slices["volume"] = self.model.volume_classifier.embed(vectors[None].to(self.device))[0].cpu()
        return slices

    def _prepare(self, canonical: sitk.Image, groups: list[tuple[int, int]]) -> tuple[torch.Tensor, SliceGrid]:
        hu = pool_slabs(torch.from_numpy(sitk.GetArrayFromImage(canonical).astype(np.float32)), groups)  # (D, H, W)
        return prepare_volume(hu, self.card.preprocessing, self.card.architecture.image_size)

    def _run_slices(self, windowed: torch.Tensor, progress: Callable[[float], None]) -> dict[str, torch.Tensor]:
        """The 2D network over every slice; outputs stacked along depth, on the CPU."""
        depth, context = windowed.shape[0], self.card.preprocessing.context_slices
        keep = ("cls", "seg", "features", "decoder", "deep", "stage")
        keep += () if self.model.reads_refined_segmentation else ("operator",)
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*keep, "rec_error")}
        skips: list[list[torch.Tensor]] = []
        with torch.inference_mode():
            for start in range(0, depth, self.batch_size):
                index = torch.arange(start, min(start + self.batch_size, depth))
                x = slice_channels(windowed, index, context).to(self.device)
                out = self.model.forward_slices(x, reconstruct=True)
                for k in keep:
                    parts[k].append(out[k].float().cpu())
                parts["rec_error"].append(reconstruction_error(out["rec"].float(), x.float()).cpu())
                if self.model.keeps_skips:  # Grad-CAM reruns the decoder from these
                    skips.append([m.float().cpu() for m in out["skips"]])
                progress(min(start + self.batch_size, depth) / depth)
        result = {k: torch.cat(v) for k, v in parts.items()}
        result["skips"] = [torch.cat(level) for level in zip(*skips)]
        return result

    def _refine(self, slices: dict[str, torch.Tensor], progress: Callable[[float], None],
                slab: int = 16) -> torch.Tensor:
        """The 3D operator's segmentation probabilities (D', K, S, S) at model size, computed in chunks of slabs
        (a one-slab halo makes chunking exact for its 3x3x3 kernel)."""
        decoder, seg = slices["decoder"], slices["seg"]
        slabs = decoder.shape[0]
        probs = torch.empty(slabs, seg.shape[1], *seg.shape[2:])
        with torch.inference_mode():
            for start in range(0, slabs, slab):
                stop = min(start + slab, slabs)
                lo, hi = max(start - 1, 0), min(stop + 1, slabs)
                logits = self.model.segment_volume(decoder[lo:hi].to(self.device), seg[lo:hi].to(self.device))
                chunk = self.model.volume_probabilities(logits[:, start - lo: stop - lo].float(), dim=0)
                probs[start:stop] = chunk.permute(1, 0, 2, 3).cpu()
                progress(stop / slabs)
        return probs

    def _labels(self, probs: torch.Tensor, grid: SliceGrid, weights: torch.Tensor | None,
                progress: Callable[[float], None], slab: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """The 3D operator's probabilities interpolated back to every slice and restored in-plane -> canonical
        labels: the most probable class where the probability of hemorrhage exceeds the threshold; and that
        class's probability (uint8, 0-255), which the finding classifier reads."""
        slabs = probs.shape[0]
        depth = weights.shape[0] if weights is not None else slabs
        values = torch.tensor([c.label_value for c in self.classes], dtype=torch.uint8)
        threshold = self.card.thresholds.get("segmentation", 0.5)
        labels = np.zeros((depth, grid.height, grid.width), dtype=np.uint8)
        confidence = np.zeros_like(labels)
        for start in range(0, depth, slab):
            stop = min(start + slab, depth)
            chunk = probs[start:stop] if weights is None else torch.einsum("ds,skhw->dkhw", weights[start:stop], probs)
            chunk = grid.restore(chunk)  # on the input's in-plane grid
            best, which = chunk.max(dim=1)
            bleed = (self.model.hemorrhage_probability(chunk) if self.model.exclusive else best) > threshold
            labels[start:stop] = torch.where(bleed, values[which], 0).numpy()
            confidence[start:stop] = (best.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            progress(stop / depth)
        return labels, confidence

    def _explain(self, slices: dict[str, torch.Tensor], refined: torch.Tensor, grid: SliceGrid,
                 weights: torch.Tensor | None, method: str, target: int) -> torch.Tensor:
        """Heat map (D, H, W) in [0, 1] on the canonical grid.

        ``activation`` is SMART-Net's map (channel mean of the deepest encoder feature). ``gradcam`` is
        Grad-CAM of the volume-level output ``target``, with one backward pass through the 3D operator for the
        whole volume at once, at the last spatial maps the volume classifier reads: the segmentation
        probabilities (2D, or ``refined`` by the 3D operator) when it reads segmentation evidence, else the
        encoder map at :attr:`SmartNet.explain_stage` (rerunning the encoder's last stages, and the decoder for
        "both"). The gradient is averaged over each map into channel weights, as Grad-CAM does: per slice for
        the 2D maps, over the whole volume for the 3D operator's refined segmentation, a 3D map. MONAI's
        ``GradCAM`` re-runs the whole model per input and cannot follow a volume split into slice batches,
        hence this short implementation of the same formula. ``hirescam`` (Draelos & Carin, 2020) is the same
        backward pass with the gradient multiplied element-wise into the maps instead of averaged: it keeps
        where in the map the gradient is.
        """
        if method == "activation":
            cam = slices["deep"].mean(dim=1).clamp(min=0)
        elif method in ("gradcam", "hirescam"):
            model = self.model
            maps = model.explanation_maps(slices, refined).to(self.device).detach().requires_grad_(True)
            skips = [m.to(self.device) for m in slices["skips"]] if model.keeps_skips else None
            with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):  # cuDNN RNN backward needs train
                logits = model.volume_classifier(model.vectors_from_maps(maps, skips)[None])[0]
                (grads,) = torch.autograd.grad(logits[target], maps)
            if method == "gradcam":  # channel weights of each map: (D', K, 1, 1), or (1, K, 1, 1) for a 3D map
                grads = grads.mean(dim=(0, 2, 3) if model.explains_in_3d else (2, 3), keepdim=True)
            cam = (grads * maps.detach()).sum(dim=1).clamp(min=0).cpu()
        else:
            raise SmartNetError(f"unknown explanation method {method!r} (use {', '.join(EXPLAIN_METHODS)})")
        if weights is not None:  # slabs back to slices
            cam = torch.einsum("ds,shw->dhw", weights, cam.float())
        peak = cam.max()
        cam = cam / peak if peak > 0 else cam
        cam = F.interpolate(cam[:, None].float(), size=(grid.size, grid.size), mode="bilinear", align_corners=False)
        return grid.restore(cam)[:, 0].clamp(0, 1)

    def _findings(self, labels: sitk.Image, probabilities: dict[str, float]) -> dict[str, dict]:
        """Per class: probability, volume in mL, the slice with most of it and its centroid (LPS, mm)."""
        array = sitk.GetArrayViewFromImage(labels)  # (k, j, i)
        ml = voxel_volume_ml(labels)
        findings = {}
        for cls in self.classes:
            mask = array == cls.label_value
            count = int(mask.sum())
            largest, centroid = None, None
            if count:
                largest = int(np.argmax(mask.sum(axis=(1, 2))))
                k, j, i = (float(v.mean()) for v in np.nonzero(mask))
                centroid = [round(c, 2) for c in labels.TransformContinuousIndexToPhysicalPoint((i, j, k))]
            findings[cls.name] = {"probability": round(probabilities[cls.name], 4),
                                  "volume_ml": round(count * ml, 3), "label_value": cls.label_value,
                                  "largest_slice": largest, "centroid_lps": centroid}
        return findings


def reconstruction_error(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per slice: mean absolute difference between the reconstruction head's output and the network input."""
    return (rec - x).abs().flatten(1).mean(1)


def familiarity_score(errors: torch.Tensor, windowed: torch.Tensor) -> float:
    """The input-familiarity score of a volume: mean reconstruction error over the slices with head in them
    (SMART-Net's reconstruction head learned to restore training-like slices only)."""
    body = windowed.flatten(2).amax(1).gt(0).float().mean(1) > 0.05  # (D,) slices with tissue in any window
    chosen = errors[body] if bool(body.any()) else errors
    return float(chosen.mean())


def _image_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(reference)
    return out


def _lap(clock: float, timing: dict[str, float] | None = None) -> float:
    """Seconds since ``clock`` minus the stages already recorded in ``timing``."""
    return round(time.perf_counter() - clock - sum((timing or {}).values()), 3)
