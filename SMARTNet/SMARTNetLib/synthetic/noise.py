"""Smooth random fields in physical space (a cheap stand-in for Perlin noise).

A field is white noise on a coarse lattice, low-pass filtered and normalised to unit standard deviation,
then sampled with trilinear interpolation at arbitrary physical points (``scipy.ndimage.map_coordinates``).
Hand-written because neither SimpleITK nor MONAI offers noise that can be evaluated at scattered
points; it is a dozen lines.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


class SmoothNoise:
    """Zero-mean, unit-variance smooth noise with feature size ``scale_mm`` over a cube of side ``extent_mm``.

    >>> n = SmoothNoise(np.random.default_rng(0), scale_mm=10.0)
    >>> n(np.zeros((3, 4), np.float32)).shape
    (4,)
    """

    def __init__(self, rng: np.random.Generator, scale_mm: float, extent_mm: float = 260.0) -> None:
        self.step = scale_mm / 3.0  # lattice step: three lattice cells per feature
        size = int(np.ceil(extent_mm / self.step)) + 4
        grid = rng.standard_normal((size, size, size)).astype(np.float32)
        grid = ndimage.gaussian_filter(grid, sigma=1.5, mode="wrap")
        grid /= max(float(grid.std()), 1e-6)
        self.grid = grid
        self.origin = -0.5 * (size - 1) * self.step

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Sample at ``points`` of shape (3, N) in mm (centred on the head); returns (N,) float32."""
        coords = (np.asarray(points, np.float32) - self.origin) / self.step
        return ndimage.map_coordinates(self.grid, coords, order=1, mode="nearest", prefilter=False)
