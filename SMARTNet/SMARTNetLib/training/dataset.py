"""Training volumes preloaded in memory at model size, hemorrhage-aware slice sampling and augmentation.

Every volume is read once, oriented like at inference (canonical LPS, :func:`~SMARTNetLib.io.volume.to_canonical`)
and resized in-plane with the inference code (:class:`~SMARTNetLib.analysis.preprocessing.SliceGrid`); HU are kept
(as int16) so that intensity augmentation happens in HU before windowing. A training step then only indexes
tensors in memory: no file I/O, no resampling of whole volumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import Compose, RandAffined, RandFlipd, RandGaussianNoised, RandShiftIntensityd

from SMARTNetLib.analysis.preprocessing import apply_windows, model_size_hu, pool_label_slabs, pool_slabs, slab_groups
from SMARTNetLib.contracts.model_card import Preprocessing
from SMARTNetLib.io.volume import read_ct, to_canonical
from SMARTNetLib.training.datalist import Case, LabelInfo, read_label, to_classes

HU_OFFSET = 1024.0  # augmentation works on HU + 1024 so that zero padding is air
BODY_HU = -300.0


@dataclass
class TrainingVolume:
    """One training volume at model size: HU (D, S, S) int16 and labels (D, S, S) uint8 (internal values)."""

    name: str
    hu: torch.Tensor
    labels: torch.Tensor
    body_slices: np.ndarray  # slices with some head in them (the paper drops empty slices)

    def positive_slices(self) -> np.ndarray:
        return np.flatnonzero(self.labels.flatten(1).amax(1).numpy() > 0)

    def set_mode(self, mode: str) -> None:
        """Convert internal label values to the model's (see :func:`~.datalist.to_classes`)."""
        self.labels = torch.from_numpy(to_classes(self.labels.numpy(), mode))


@dataclass
class ValidationVolume:
    """A validation volume as users give it (any orientation) and its label map on the same grid."""

    name: str
    image: sitk.Image
    labels: np.ndarray  # (k, j, i) uint8, internal values until :meth:`set_mode`

    def set_mode(self, mode: str) -> None:
        self.labels = to_classes(self.labels, mode)


def read_case(case: Case) -> tuple[sitk.Image, LabelInfo]:
    """The CT (checked) and its label on the CT's grid."""
    image = read_ct(case.image)
    return image, read_label(case.label, image, case.image)


def preload(image: sitk.Image, labels: np.ndarray, size: int, name: str, slab_mm: float = 0.0) -> TrainingVolume:
    """Canonical orientation, thin-slice pooling into slabs and model-size resizing of a CT and its label map
    (label on the CT's grid), exactly as inference prepares a volume."""
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    canonical = to_canonical(image)
    groups = slab_groups(canonical.GetDepth(), canonical.GetSpacing()[2], slab_mm)
    hu = pool_slabs(torch.from_numpy(sitk.GetArrayFromImage(canonical).astype(np.float32)), groups)
    lab = torch.from_numpy(sitk.GetArrayFromImage(to_canonical(label_image)))
    values = [int(v) for v in torch.unique(lab) if v != 0]
    lab = pool_label_slabs(lab, groups, values).float()
    hu_small, grid = model_size_hu(hu, size)
    lab_small = torch.cat([grid.to_model(c[:, None], fill=0.0, mode="nearest")[:, 0] for c in lab.split(16)])
    body = np.flatnonzero((hu_small > BODY_HU).float().mean(dim=(1, 2)).numpy() > 0.02)
    if body.size == 0:
        body = np.arange(hu_small.shape[0])
    return TrainingVolume(name, hu_small.to(torch.int16),
                          lab_small.to(torch.uint8), body)


def class_targets(labels: torch.Tensor, values: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Label values (N, *spatial) -> per-class masks (N, K, *spatial) and presence (N, outputs).

    ``outputs`` puts "any" first when there are several classes, as :attr:`ModelCard.output_names`.
    """
    masks = torch.stack([labels == v for v in values], dim=1).float()
    present = masks.flatten(2).amax(2)
    if len(values) > 1:
        present = torch.cat([present.amax(1, keepdim=True), present], dim=1)
    return masks, present


def slice_augmentation(size: int) -> Compose:
    """Per-slice augmentation (MONAI): L-R flip, small rotation and zoom, HU shift and noise before windowing."""
    keys = ["image", "label"]
    return Compose([
        RandFlipd(keys, prob=0.5, spatial_axis=1),  # (C, H=posterior, W=left): axis 1 is left-right
        RandAffined(keys, prob=0.5, rotate_range=(np.pi / 18,), scale_range=(0.1, 0.1), mode=("bilinear", "nearest"),
                    padding_mode="zeros", spatial_size=(size, size)),
        RandShiftIntensityd("image", offsets=8.0, prob=0.5),
        RandGaussianNoised("image", prob=0.3, mean=0.0, std=4.0),
    ])


def volume_augmentation() -> Compose:
    """Whole-volume augmentation for the 3D stage: L-R flip, HU shift and noise (consistent across slices)."""
    keys = ["image", "label"]
    return Compose([
        RandFlipd(keys, prob=0.5, spatial_axis=2),  # (C, D, H, W): W is left-right
        RandShiftIntensityd("image", offsets=8.0, prob=0.5),
        RandGaussianNoised("image", prob=0.3, mean=0.0, std=4.0),
    ])


def window(hu: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """(N, 2c+1, S, S) HU -> network input (N, (2c+1) * windows, S, S), ordered as :func:`slice_channels`."""
    n, neighbours = hu.shape[:2]
    return apply_windows(hu.flatten(0, 1), prep.windows).reshape(n, neighbours * len(prep.windows), *hu.shape[2:])


class SliceSampler:
    """Hemorrhage-aware slice sampling, sharded across distributed ranks, reproducible per epoch.

    Each epoch visits the volumes in a shuffled order (the same on every rank; rank ``r`` takes every
    ``world``-th pick, like ``DistributedSampler``) and takes one slice per visit: with probability
    ``positive_fraction`` a slice with hemorrhage when the volume has some, otherwise any slice with head
    in it. Everything is drawn from generators seeded by (seed, epoch, rank), so an epoch is the same
    whether or not the run was resumed before it: the sampler's whole state is (seed, epoch).
    """

    def __init__(self, volumes: list[TrainingVolume], batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 positive_fraction: float = 0.5) -> None:
        self.volumes, self.batch_size, self.seed = volumes, batch_size, seed
        self.rank, self.world, self.positive_fraction = rank, world, positive_fraction
        self.positives = [v.positive_slices() for v in volumes]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "rank": self.rank, "world": self.world, "batch_size": self.batch_size,
                "positive_fraction": self.positive_fraction}

    def batches(self, epoch: int, steps: int) -> Iterator[list[tuple[int, int]]]:
        """``steps`` batches of (volume index, slice index) for this rank."""
        shared = np.random.default_rng([self.seed, epoch, 0])
        own = np.random.default_rng([self.seed, epoch, 1, self.rank])
        needed = steps * self.batch_size * self.world
        rounds = -(-needed // len(self.volumes))
        order = np.concatenate([shared.permutation(len(self.volumes)) for _ in range(rounds)])
        mine = order[self.rank::self.world][: steps * self.batch_size]
        for step in range(steps):
            batch = []
            for v in mine[step * self.batch_size: (step + 1) * self.batch_size]:
                positives = self.positives[v]
                if positives.size and own.random() < self.positive_fraction:
                    s = own.choice(positives)
                else:
                    s = own.choice(self.volumes[v].body_slices)
                batch.append((int(v), int(s)))
            yield batch

    def volume_order(self, epoch: int, steps: int) -> list[int]:
        """Volumes for the 3D stage, one per step: a shuffled, sharded pass over the training volumes."""
        shared = np.random.default_rng([self.seed, epoch, 2])
        rounds = -(-steps * self.world // len(self.volumes))
        order = np.concatenate([shared.permutation(len(self.volumes)) for _ in range(rounds)])
        return [int(v) for v in order[self.rank::self.world][:steps]]


def slice_batch(volumes: list[TrainingVolume], picks: list[tuple[int, int]], context: int,
                augment: Compose | None) -> tuple[torch.Tensor, torch.Tensor]:
    """HU of the picked slices with their neighbours (N, 2c+1, S, S) and their labels (N, S, S)."""
    images, labels = [], []
    offsets = torch.arange(-context, context + 1)
    for v, s in picks:
        vol = volumes[v]
        index = (s + offsets).clamp(0, vol.hu.shape[0] - 1)
        item = {"image": vol.hu[index].float() + HU_OFFSET, "label": vol.labels[s][None].float()}
        if augment is not None:
            item = augment(item)
        images.append(torch.as_tensor(item["image"]) - HU_OFFSET)
        labels.append(torch.as_tensor(item["label"])[0].round().to(torch.uint8))
    return torch.stack(images), torch.stack(labels)


def volume_item(volume: TrainingVolume, augment: Compose | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole volume: HU (D, S, S) and labels (D, S, S), augmented consistently across slices."""
    item = {"image": volume.hu[None].float() + HU_OFFSET, "label": volume.labels[None].float()}
    if augment is not None:
        item = augment(item)
    return torch.as_tensor(item["image"])[0] - HU_OFFSET, torch.as_tensor(item["label"])[0].round().to(torch.uint8)


def neighbours(hu: torch.Tensor, context: int) -> torch.Tensor:
    """(D, S, S) -> (D, 2c+1, S, S): every slice with its neighbours, edges repeated (as slice_channels)."""
    depth = hu.shape[0]
    index = (torch.arange(depth)[:, None] + torch.arange(-context, context + 1)[None]).clamp(0, depth - 1)
    return hu[index]
