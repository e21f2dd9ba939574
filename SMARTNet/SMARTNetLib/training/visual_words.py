"""TransVW's self-discovery of visual words (Haghighi et al., IEEE TMI 2021), for 2D SMART-Net on head CT.

A visual word is an anatomical pattern that recurs across patients: the same place in similar-looking heads.
Discovery, as in TransVW: a reference head (drawn by the seed), the heads most like it (cosine similarity of a
coarse picture of each head), and, for each word, one random place in the reference and the same place in
each of those heads. "The same place" is taken in each head's own frame (centre of the head and its principal
axes, scaled by its extents), so a head moved rigidly (or scaled) gives the same word at the same anatomy; the
patches are resampled in that frame (an axial slab and its neighbours), so they look alike whatever the
head's pose. One class per word: the encoder learns to tell them apart (self-classification) while it restores
their distorted versions (self-restoration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.io.volume import ijk_to_lps

TISSUE_HU = -300.0  # the head (and what else is not air)
FEATURE_GRID = 20  # the coarse picture of a head: 20^3 samples over its frame
FRAME_RANGE = 2.0  # the picture and the words lie within +-2 standard deviations of the head along each axis
PLACE_RANGE = 1.2  # words are placed within +-1.2 standard deviations (inside the skull, not the neck or air)
PATCH_MM = 64.0  # the side of a word's patch
SLAB_MM = 5.0  # the distance between a patch's neighbouring slices


@dataclass(frozen=True)
class HeadFrame:
    """A head's own frame: its centre (LPS mm), principal axes (columns, unit) and their standard deviations."""

    centre: np.ndarray
    axes: np.ndarray
    scale: np.ndarray

    def to_world(self, u: np.ndarray) -> np.ndarray:
        """Frame coordinates (in standard deviations) to LPS mm."""
        return self.centre + self.axes @ (np.asarray(u, dtype=float) * self.scale)


def head_frame(image: sitk.Image, step_mm: float = 4.0) -> HeadFrame:
    """The frame of the largest tissue component, from its moments (sampled every ``step_mm``).

    Axis signs follow the image's LPS axes (each principal axis points the way of the world axis it is closest
    to), so small rotations keep the frame's handedness and order; the axes are ordered by that world axis.
    """
    shrink = [max(1, int(step_mm / s)) for s in image.GetSpacing()]
    small = sitk.BinShrink(image, shrink)
    tissue = sitk.GetArrayFromImage(small) > TISSUE_HU
    labels, count = ndimage.label(tissue)
    if count == 0:
        raise ValueError("no tissue in the image")
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    kji = np.argwhere(labels == largest)
    matrix = ijk_to_lps(small)
    points = kji[:, ::-1].astype(float) @ matrix[:3, :3].T + matrix[:3, 3]
    centre = points.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov((points - centre).T))
    order = np.argmax(np.abs(vectors), axis=0)  # the world axis each principal axis is closest to
    if len(set(order.tolist())) < 3:  # a round blob: keep the world axes
        vectors, order = np.eye(3), np.arange(3)
        values = np.array([np.var((points - centre) @ e) for e in np.eye(3)])
    axes, scale = np.zeros((3, 3)), np.zeros(3)
    for column, world_axis in enumerate(order):
        vector = vectors[:, column]
        axes[:, world_axis] = vector * np.sign(vector[world_axis])
        scale[world_axis] = np.sqrt(max(values[column], 1e-6))
    return HeadFrame(centre, axes, scale)


def sample_in_frame(image: sitk.Image, frame: HeadFrame, centre_u: np.ndarray, size: tuple[int, int, int],
                    extent_u: tuple[float, float, float] | None = None,
                    extent_mm: tuple[float, float, float] | None = None) -> np.ndarray:
    """HU on a (x, y, z)-sized grid aligned with ``frame``'s axes around frame point ``centre_u``, spanning
    ``extent_u`` standard deviations or ``extent_mm`` mm per axis; returned as (z, y, x) float32, -1024 outside."""
    size = tuple(int(s) for s in size)
    if extent_mm is not None:
        extent = np.asarray(extent_mm, dtype=float)
    else:
        extent = np.asarray(extent_u, dtype=float) * frame.scale
    spacing = np.where(np.array(size) > 1, extent / np.maximum(np.array(size) - 1, 1), 1.0)
    centre = frame.to_world(centre_u)
    origin = centre - frame.axes @ (spacing * (np.array(size) - 1) / 2)
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), spacing.tolist(),
                              frame.axes.flatten().tolist(), -1024.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def head_picture(image: sitk.Image, frame: HeadFrame) -> np.ndarray:
    """A coarse, pose-free picture of the head (brain window) as a unit vector, for similarity."""
    grid = sample_in_frame(image, frame, np.zeros(3), (FEATURE_GRID,) * 3, extent_u=(2 * FRAME_RANGE,) * 3)
    picture = np.clip((grid + 20.0) / 120.0, 0, 1).ravel()
    picture = picture - picture.mean()
    return picture / max(float(np.linalg.norm(picture)), 1e-6)


@dataclass(frozen=True)
class Word:
    """One visual word: its place in frame coordinates and the heads (indices into the pool) it is taken from."""

    index: int
    place: tuple[float, float, float]
    heads: tuple[int, ...]


@dataclass
class Vocabulary:
    """Discovered words and their patches: (words * instances, 2c+1, S, S) HU and the word of each patch."""

    words: list[Word]
    reference: int
    patches: np.ndarray
    labels: np.ndarray

    def settings(self) -> dict:
        return {"words": len(self.words), "instances": int(len(self.labels) // max(len(self.words), 1)),
                "reference": self.reference, "patch_mm": PATCH_MM, "slab_mm": SLAB_MM,
                "place_range_sd": PLACE_RANGE}


def discover(images: list[sitk.Image], n_words: int, instances: int, size: int, context: int,
             seed: int) -> Vocabulary:
    """TransVW's self-discovery over ``images`` (unlabelled CTs): ``n_words`` words of ``instances`` patches each
    (the reference head and its ``instances - 1`` most similar heads), ``size`` px, ``context`` slices each side.
    Deterministic for a seed."""
    if not images:
        raise ValueError("no images to discover visual words in")
    rng = np.random.default_rng([seed, 7])
    frames = [head_frame(image) for image in images]
    pictures = np.stack([head_picture(image, frame) for image, frame in zip(images, frames)])
    reference = int(rng.integers(len(images)))
    similarity = pictures @ pictures[reference]
    similar = [reference] + [int(i) for i in np.argsort(-similarity) if i != reference]
    heads = tuple(similar[:max(1, min(instances, len(images)))])
    places = _places(images[reference], frames[reference], n_words, rng)
    patches, labels, words = [], [], []
    for index, place in enumerate(places):
        words.append(Word(index, tuple(round(float(v), 4) for v in place), heads))
        for head in heads:
            patches.append(word_patch(images[head], frames[head], place, size, context))
            labels.append(index)
    return Vocabulary(words, reference, np.stack(patches).astype(np.int16), np.array(labels, dtype=np.int64))


def _places(image: sitk.Image, frame: HeadFrame, n_words: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_words`` random frame points inside the reference head (tissue, not air), away from each other."""
    places: list[np.ndarray] = []
    tries = 0
    while len(places) < n_words and tries < 200 * n_words:
        tries += 1
        u = rng.uniform(-PLACE_RANGE, PLACE_RANGE, 3)
        if np.linalg.norm(u) > PLACE_RANGE:
            continue
        if sample_in_frame(image, frame, u, (1, 1, 1), extent_mm=(0.0, 0.0, 0.0)).item() <= TISSUE_HU:
            continue
        if places and min(np.linalg.norm(u - p) for p in places) < 0.25 and tries < 100 * n_words:
            continue
        places.append(u)
    if len(places) < n_words:
        raise ValueError(f"found room for {len(places)} of {n_words} visual words in the reference head")
    return places


def word_patch(image: sitk.Image, frame: HeadFrame, place: np.ndarray, size: int, context: int) -> np.ndarray:
    """The patch of a word in one head: (2c+1, size, size) HU, axial in the head's frame, neighbours SLAB_MM apart."""
    depth = 2 * context + 1
    return sample_in_frame(image, frame, np.asarray(place), (size, size, depth),
                           extent_mm=(PATCH_MM, PATCH_MM, SLAB_MM * (depth - 1)))


def word_positions(vocabulary: Vocabulary, frames: list[HeadFrame]) -> dict[int, dict[int, np.ndarray]]:
    """Where each word lies in each of its heads (LPS mm): {word: {head: point}}."""
    return {w.index: {h: frames[h].to_world(np.array(w.place)) for h in w.heads} for w in vocabulary.words}
