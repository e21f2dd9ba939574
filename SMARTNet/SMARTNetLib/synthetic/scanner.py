"""Scanner geometry (grid, direction, head pose) and rendering of a procedural head onto it.

The head is evaluated directly at the physical centres of the scanner's voxels (and of sub-slices for
thick slices, averaged for partial volume), so no canonical volume is resampled. Then the scanner's
blur, beam-hardening streaks near the skull base and correlated noise are added.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.synthetic.bleeds import Bleed, total_displacement
from SMARTNetLib.synthetic.noise import SmoothNoise
from SMARTNetLib.synthetic.phantom import ProceduralHead, rotation_matrix

AIR_HU = -1000.0


@dataclass
class ScannerGeometry:
    """Output grid (numpy order is (k, j, i)) and where the head sits in it."""

    size: tuple[int, int, int]  # (i, j, k)
    spacing: tuple[float, float, float]
    direction: np.ndarray  # 3x3, columns = physical directions of i, j, k
    origin: np.ndarray
    pose: np.ndarray  # 3x3 rotation of the head (canonical -> physical)
    head_center: np.ndarray  # physical position of the canonical origin
    direction_kind: str

    def points(self, k: np.ndarray) -> np.ndarray:
        """Physical points (3, N) of all (i, j) at fractional slice indices ``k`` (i fastest)."""
        ni, nj = self.size[0], self.size[1]
        ii, jj = np.meshgrid(np.arange(ni, dtype=np.float32), np.arange(nj, dtype=np.float32), indexing="xy")
        kk = np.repeat(np.asarray(k, np.float32), ni * nj)
        idx = np.stack([np.tile(ii.ravel(), len(k)), np.tile(jj.ravel(), len(k)), kk])
        m = (self.direction * np.asarray(self.spacing)[None, :]).astype(np.float32)
        return m @ idx + self.origin.astype(np.float32)[:, None]

    def to_head(self, p: np.ndarray) -> np.ndarray:
        return self.pose.T.astype(np.float32) @ (p - self.head_center.astype(np.float32)[:, None])

    def reference_image(self) -> sitk.Image:
        img = sitk.Image([int(s) for s in self.size], sitk.sitkUInt8)
        img.SetSpacing([float(s) for s in self.spacing])
        img.SetOrigin([float(o) for o in self.origin])
        img.SetDirection([float(d) for d in self.direction.ravel()])
        return img

    def describe(self) -> dict:
        return {"size": list(self.size), "spacing": [round(float(s), 4) for s in self.spacing],
                "direction": self.direction_kind}


def random_direction(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Direction matrices seen in practice: LPS identity, flipped axes, gantry-tilted (oblique)."""
    kind = str(rng.choice(["lps", "flip_xy", "flip_y", "flip_z", "oblique"], p=[0.45, 0.15, 0.1, 0.1, 0.2]))
    if kind == "lps":
        return np.eye(3), kind
    if kind == "flip_xy":
        return np.diag([-1.0, -1.0, 1.0]), kind
    if kind == "flip_y":
        return np.diag([1.0, -1.0, 1.0]), kind
    if kind == "flip_z":
        return np.diag([1.0, 1.0, -1.0]), kind
    tilt = np.deg2rad(rng.choice([-1, 1]) * rng.uniform(5, 22))
    return rotation_matrix(rx=tilt), kind


def random_geometry(rng: np.random.Generator, size: str = "small", head_top: float = 78.0) -> ScannerGeometry:
    """A random scanner grid and head pose. ``small``: ~96-128 px, <= 24 slices; ``full``: clinical grids."""
    if size == "small":
        n = int(rng.integers(96, 129))
        fov = rng.uniform(205, 250)
        thickness = rng.uniform(5.0, 7.0)
        coverage = rng.uniform(110, 150)
        nz = int(np.clip(round(coverage / thickness), 16, 24))
    elif size == "full":
        n = int(rng.choice([512, 384, 256], p=[0.7, 0.1, 0.2]))
        fov = rng.uniform(205, 256) if n == 512 else rng.uniform(max(205, 0.4 * n), min(256, 1.0 * n))
        thickness = float(rng.choice([1.0, 1.25, 2.0, 2.5, 3.0, 5.0], p=[0.1, 0.1, 0.1, 0.2, 0.1, 0.4]))
        coverage = rng.uniform(110, 160)
        nz = int(np.clip(round(coverage / thickness), 20, 150))
    else:
        raise ValueError(f"size must be 'small' or 'full', not {size!r}")
    sp = fov / n
    direction, kind = random_direction(rng)
    pose = rotation_matrix(rx=np.deg2rad(rng.uniform(-15, 12)), ry=np.deg2rad(rng.uniform(-6, 6)),
                           rz=np.deg2rad(rng.uniform(-10, 10)))
    head_center = np.array([rng.uniform(-200, 200), rng.uniform(-250, -100), rng.uniform(-600, 100)])
    top = head_top + rng.uniform(-5, 8)
    z_mid = top - 0.5 * (nz - 1) * thickness
    center = head_center + np.array([rng.uniform(-10, 10), rng.uniform(-12, 12), z_mid])
    spacing = (sp, sp, thickness)
    extent = np.array([(n - 1) * sp, (n - 1) * sp, (nz - 1) * thickness])
    origin = center - direction @ (extent / 2)
    return ScannerGeometry((n, n, nz), spacing, direction, origin, pose, head_center, kind)


def render_procedural(head: ProceduralHead, geom: ScannerGeometry, bleeds: list[Bleed], rng: np.random.Generator,
                      texture: SmoothNoise, max_points: int = 600_000,
                      mimics: list | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """HU (float32) and label (uint8) arrays in numpy order (k, j, i), plus render facts.

    ``mimics`` (:class:`~.randomisation.Mimic`) are painted under the bleeds, never labelled."""
    out_size, out_sp = geom.size, geom.spacing[0]
    # Fine grids are evaluated at about 0.8-1 mm and interpolated up: anatomy has no finer detail here
    # and the scanner's point spread (added below) is about as wide.
    f = int(np.ceil(0.75 / out_sp)) if out_sp < 0.75 else 1
    if f > 1:
        geom = replace(geom, size=((out_size[0] - 1) // f + 2, (out_size[1] - 1) // f + 2, out_size[2]),
                       spacing=(out_sp * f, out_sp * f, geom.spacing[2]))
    ni, nj, nk = geom.size
    sp, thickness = geom.spacing[0], geom.spacing[2]
    ns = max(1, int(round(thickness / 2.0)))
    offsets = ((np.arange(ns) + 0.5) / ns - 0.5) if ns > 1 else np.zeros(1)
    edge = max(sp, 0.6)
    hu = np.empty((nk, nj, ni), np.float32)
    label = np.zeros((nk, nj, ni), np.uint8)
    base = np.zeros(nk, np.float32)
    per_chunk = max(1, max_points // (ni * nj * ns))
    for k0 in range(0, nk, per_chunk):
        ks = np.arange(k0, min(nk, k0 + per_chunk))
        kf = (ks[:, None] + offsets[None, :]).ravel()
        p = geom.to_head(geom.points(kf))
        q = p - total_displacement(bleeds, p)
        h, fields = head.evaluate(p, q, edge)
        lab = np.zeros(p.shape[1], np.uint8)
        for m in mimics or ():
            m.paint(p, fields, h, np.zeros(3, np.float32), head.midline_x, edge)
        for b in bleeds:
            b.paint(p, fields, h, lab, edge, texture)
        shape = (len(ks), ns, nj, ni)
        hu[ks] = h.reshape(shape).mean(1)
        base[ks] = fields["base_bone"].reshape(shape).mean(1).sum((1, 2)) * sp * sp
        lab = lab.reshape(shape)
        if ns == 1:
            label[ks] = lab[:, 0]
        else:  # a voxel is labelled when at least half of its sub-slices are; the commonest label wins
            counts = np.stack([(lab == v).sum(1) for v in range(6)])
            best = counts[1:].argmax(0) + 1
            label[ks] = np.where(counts[1:].max(0) * 2 >= ns, best, 0).astype(np.uint8)
    if f > 1:
        hu, label = _upsample(hu, out_size, f, 1), _upsample(label, out_size, f, 0)
        sp = out_sp
    # scanner blur (in-plane point spread), streaks, noise
    psf = rng.uniform(0.35, 0.7) / sp
    hu = ndimage.gaussian_filter(hu, sigma=(0.0, psf, psf), truncate=3.0)
    streak_strength = rng.uniform(0.5, 1.5)
    add_streaks(hu, base, rng, streak_strength)
    # quantum noise falls with the square root of the voxel volume (reference 0.5 x 0.5 x 5 mm)
    sigma = float(np.clip(rng.uniform(3.0, 6.5) * np.sqrt(1.25 / (sp * sp * thickness)), 1.5, 9.0))
    noise = rng.standard_normal(hu.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.0, 0.7, 0.7))
    noise *= sigma / max(float(noise.std()), 1e-6)
    hu += noise
    return hu, label, {"noise_sd": round(float(sigma), 2), "streaks": round(float(streak_strength), 2)}


def _upsample(arr: np.ndarray, size: tuple[int, int, int], f: int, order: int) -> np.ndarray:
    """Interpolate (k, j, i) arrays rendered every ``f``-th in-plane voxel back onto the full grid."""
    jj, ii = np.mgrid[0:size[1], 0:size[0]].astype(np.float32) / f
    out = np.empty((arr.shape[0], size[1], size[0]), arr.dtype)
    for k in range(arr.shape[0]):
        out[k] = ndimage.map_coordinates(arr[k], [jj, ii], order=order, mode="nearest", prefilter=False)
    return out


def add_streaks(hu: np.ndarray, base_area: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """Beam-hardening streaks on slices with dense skull-base bone: dark bands between the dense bone
    (the interpetrous 'Hounsfield bar') and fainter bright/dark rays, only inside the head."""
    nk, nj, ni = hu.shape
    jj, ii = np.mgrid[0:nj, 0:ni].astype(np.float32)
    for k in range(nk):
        if base_area[k] < 150.0:  # mm^2 of dense base bone in this slice
            continue
        amount = min(1.0, base_area[k] / 1500.0) * strength
        sl = hu[k]
        dense = np.argwhere(sl > 1200)
        if len(dense) < 4:
            continue
        inside = sl > -300
        art = np.zeros_like(sl)
        pts = dense[rng.choice(len(dense), size=min(8, len(dense)), replace=False)].astype(np.float32)
        width = max(1.0, 2.5 * ni / 256)
        for a in range(len(pts)):
            for b in range(a + 1, len(pts)):
                (j0, i0), (j1, i1) = pts[a], pts[b]
                length = np.hypot(j1 - j0, i1 - i0)
                if length < 10:
                    continue
                # distance of every pixel to the line through the two points
                dist = np.abs((i1 - i0) * (j0 - jj) - (i0 - ii) * (j1 - j0)) / length
                art -= rng.uniform(6, 18) * np.exp(-0.5 * (dist / width) ** 2)
        for _ in range(4):
            j0, i0 = pts[rng.integers(len(pts))]
            ang = rng.uniform(0, np.pi)
            dist = np.abs(np.cos(ang) * (jj - j0) - np.sin(ang) * (ii - i0))
            art += rng.uniform(-12, 12) * np.exp(-0.5 * (dist / (0.6 * width)) ** 2)
        sl += art * amount * inside * (sl < 300)
