"""Models Genesis image distortions (Zhou et al., MedIA 2021) for self-supervised pretraining.

A slice (C, H, W) with values in [0, 1] (windowed CT, see :func:`~.dataset.window`) is distorted by, in order:

1. local pixel shuffling (probability 0.5): the pixels inside many small boxes are permuted
   (MONAI ``RandCoarseShuffle``);
2. a non-linear intensity transform (probability 0.9): a random monotone Bezier curve from [0, 1] onto
   [0, 1], or its inverse (decreasing) with probability 0.5 (:class:`BezierIntensity`);
3. painting (probability 0.9): in-painting (20%: a few boxes filled with uniform noise, MONAI
   ``RandCoarseDropout``) or out-painting (80%: everything but a few inner boxes filled with noise,
   ``RandCoarseDropout(dropout_holes=False)``).

The network learns to restore the undistorted slice. Box sizes follow the Models Genesis release, scaled
from its 3D cubes to 2D slices: shuffling blocks up to 1/10 of the side, in-painting boxes 1/6 to 1/3,
out-painting keeps boxes of 3/7 to 4/7 of the side.

>>> import torch
>>> distort = ModelsGenesis(64)
>>> distort = distort.set_random_state(seed=0)
>>> distorted = distort(torch.rand(3, 64, 64))
>>> tuple(distorted.shape), bool(distorted.min() >= 0 and distorted.max() <= 1)
((3, 64, 64), True)
"""

from __future__ import annotations

from math import comb

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, OneOf, RandCoarseDropout, RandCoarseShuffle, RandomizableTransform

SHUFFLE_PROB = 0.5
INTENSITY_PROB = 0.9
PAINT_PROB = 0.9
INPAINT_SHARE = 0.2  # of the painted slices; the rest are out-painted (Models Genesis: outpaint_rate 0.8)


def bezier_curve(points: np.ndarray, samples: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The Bezier curve of control ``points`` (n, 2) sampled at ``samples`` parameters: x and y values."""
    n = len(points) - 1
    t = np.linspace(0.0, 1.0, samples)
    basis = np.stack([comb(n, i) * t**i * (1 - t) ** (n - i) for i in range(n + 1)])  # (n + 1, samples)
    xy = basis.T @ points
    return xy[:, 0], xy[:, 1]


class BezierIntensity(RandomizableTransform):
    """Random non-linear intensity map of Models Genesis: a cubic Bezier curve from (0, 0) to (1, 1).

    Hand-written: MONAI's nearest transform, ``RandHistogramShift``, draws a piecewise-linear map over the
    image's own min..max range and never inverts intensities; Models Genesis uses a smooth Bezier curve on
    the fixed [0, 1] range and an inverted (decreasing) curve half of the time, which we keep. The curve's x
    and y samples are each sorted, so the map is monotone increasing (0 -> 0, 1 -> 1) whatever the control
    points, and its inverse is ``1 - map`` (0 -> 1, 1 -> 0); values stay in [0, 1].
    """

    def __init__(self, prob: float = INTENSITY_PROB, invert_prob: float = 0.5) -> None:
        RandomizableTransform.__init__(self, prob)
        self.invert_prob = invert_prob
        self.xs = self.ys = np.linspace(0.0, 1.0, 2)
        self.inverted = False

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        inner = self.R.uniform(0.0, 1.0, size=(2, 2))
        xs, ys = bezier_curve(np.vstack([[0.0, 0.0], inner, [1.0, 1.0]]))
        self.xs, self.ys = np.sort(xs), np.sort(ys)
        self.inverted = bool(self.R.random() < self.invert_prob)

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        values = np.interp(img.detach().cpu().numpy().clip(0.0, 1.0), self.xs, self.ys)
        out = torch.from_numpy(values.clip(0.0, 1.0)).to(img.dtype).to(img.device)
        return 1.0 - out if self.inverted else out


def local_shuffle(size: int, prob: float = SHUFFLE_PROB, holes: int = 16, max_holes: int = 64) -> RandCoarseShuffle:
    """Local pixel shuffling: 16-64 boxes of 1/32 to 1/10 of the side, pixels permuted within each box.

    MONAI shuffles every channel separately: the values of each channel's patch are kept (its histogram),
    their positions lost.
    """
    return RandCoarseShuffle(holes=holes, max_holes=max_holes, spatial_size=max(2, size // 32),
                             max_spatial_size=max(3, size // 10), prob=prob)


def inpainting(size: int, prob: float = 1.0) -> RandCoarseDropout:
    """In-painting: 1-5 boxes of 1/6 to 1/3 of the side filled with uniform noise in [0, 1)."""
    return RandCoarseDropout(holes=1, max_holes=5, spatial_size=max(1, size // 6), max_spatial_size=max(1, size // 3),
                             fill_value=(0.0, 1.0), prob=prob)


def outpainting(size: int, prob: float = 1.0) -> RandCoarseDropout:
    """Out-painting: 1-5 inner boxes of 3/7 to 4/7 of the side kept, everything else uniform noise in [0, 1)."""
    return RandCoarseDropout(holes=1, max_holes=5, spatial_size=max(1, 3 * size // 7),
                             max_spatial_size=max(1, 4 * size // 7), dropout_holes=False, fill_value=(0.0, 1.0),
                             prob=prob)


class ModelsGenesis(Compose):
    """The whole Models Genesis distortion of one slice (C, H, W) in [0, 1]; the input is not modified."""

    def __init__(self, size: int, shuffle_prob: float = SHUFFLE_PROB, intensity_prob: float = INTENSITY_PROB,
                 paint_prob: float = PAINT_PROB, inpaint_share: float = INPAINT_SHARE) -> None:
        paint = OneOf([inpainting(size, paint_prob), outpainting(size, paint_prob)],
                      weights=[inpaint_share, 1.0 - inpaint_share])
        super().__init__([local_shuffle(size, shuffle_prob), BezierIntensity(intensity_prob), paint])
        self.settings = {"shuffle_prob": shuffle_prob, "intensity_prob": intensity_prob, "paint_prob": paint_prob,
                         "inpaint_share": inpaint_share, "image_size": size}

    def __call__(self, img: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        # MONAI's coarse transforms work in place on a numpy view of CPU tensors: distort a copy.
        out = super().__call__(img.detach().cpu().float().clone(), *args, **kwargs)
        out = out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)
        return out.float().to(img.device)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """Distort every slice of a batch (N, C, H, W) independently."""
        return torch.stack([self(s) for s in x])
