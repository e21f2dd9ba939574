"""Label-map-first synthetic head CTs with intracranial haemorrhage (a third generator, written apart from the others).

In the spirit of SynthSeg (Billot et al., "SynthSeg: Segmentation of brain MRI scans of any contrast and resolution
without retraining", Medical Image Analysis 2023): each case first builds a random anatomical *label map* of 25
tissue classes (scalp, skull tables and diploe, skull base, orbits, sinuses, grey and white matter with sulci,
ventricles, cisterns, deep nuclei, cerebellum, brainstem...) on an isotropic head-frame canvas (1.3 mm, 1 mm for
``full``) cropped to what the slices will see; then draws a random mean HU per tissue within a realistic range plus
random within-tissue texture; paints thin structures (falx, tentorium, venous sinuses, calcifications) and the bleeds
as partial-volume fractions; and finally images the canvas with its own scanner model (random head pose in an LPS
grid, slab integration over thick slices, reconstruction kernel, correlated noise, cupping, beam-hardening streaks,
occasional ring or motion artefacts, sometimes a headrest and couch). An output voxel is labelled where its blood
fraction is at least 0.5, unless it is bone-contaminated (:data:`BONE_EXCLUSION`). Shapes are analytic (ellipsoids,
tubes, random plane-wave functions of direction for the gyri), not taken from any atlas or from the other generators.

Public entry point: :func:`make_labelmap_case`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from SMARTNetLib.contracts.classes import SUBTYPE_NAMES, SUBTYPES, class_from_segment_name
from SMARTNetLib.synthetic.dataset import label_volumes_ml

__all__ = ["make_labelmap_case", "TISSUES", "MIN_VOLUME_ML"]

_SALT = 0x1AB3_11AD  # this module's own seed constant
MIN_VOLUME_ML = 0.3  # every requested subtype is present with at least this labelled volume
NEGATIVE_FRACTION = 0.4
_VALUE = {c.name: c.label_value for c in SUBTYPES}

# tissue classes of the label map
(AIR, SKIN, FAT, MUSCLE, BONE, DIPLOE, DENSE, SINUS, CSF, VENT, GM, WM, STRIATUM, PALLIDUM, THALAMUS, CB_GM, CB_WM,
 STEM, VITREOUS, LENS, NERVE, CHOROID, MUCOSA, GLAND, SCALP) = range(25)
TISSUES = ("air", "skin", "fat", "muscle", "cortical bone", "diploe", "petrous bone", "sinus air", "csf",
           "ventricular csf", "grey matter", "white matter", "striatum", "globus pallidus", "thalamus",
           "cerebellar cortex", "cerebellar white matter", "brainstem", "vitreous", "lens", "nerve", "choroid plexus",
           "mucosa", "pituitary", "subcutaneous tissue")
_PARENCHYMA = (GM, WM, STRIATUM, PALLIDUM, THALAMUS, CB_GM, CB_WM, STEM)
_F32 = np.float32


# ----------------------------------------------------------------------------------------------------------- helpers
def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, float)
    return v / max(float(np.linalg.norm(v)), 1e-9)


@dataclass
class _Grid:
    """Axis-aligned grid in the head frame (mm; x left, y posterior, z superior); arrays are indexed [z, y, x]."""

    origin: np.ndarray
    h: float
    shape: tuple[int, int, int]

    def axis(self, k: int) -> np.ndarray:
        return (self.origin[k] + self.h * np.arange(self.shape[2 - k])).astype(_F32)

    def xyz(self, sl: tuple[slice, slice, slice] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sl = sl or (slice(None),) * 3
        return (self.axis(0)[sl[2]][None, None, :], self.axis(1)[sl[1]][None, :, None],
                self.axis(2)[sl[0]][:, None, None])

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        n = np.array([self.shape[2], self.shape[1], self.shape[0]])
        a = np.clip(np.floor((np.asarray(lo, float) - self.origin) / self.h).astype(int), 0, n)
        b = np.clip(np.ceil((np.asarray(hi, float) - self.origin) / self.h).astype(int) + 1, 0, n)
        if np.any(b <= a):
            return None
        return slice(a[2], b[2]), slice(a[1], b[1]), slice(a[0], b[0])

    def value(self, arr: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Nearest-voxel values of ``arr`` at head-frame points ``p`` (N, 3)."""
        i = np.rint((np.atleast_2d(p) - self.origin) / self.h).astype(int)
        n = np.array([self.shape[2], self.shape[1], self.shape[0]])
        i = np.clip(i, 0, n - 1)
        return arr[i[:, 2], i[:, 1], i[:, 0]]


def _lin_matrix(n_out: int, n_in: int, f: int) -> np.ndarray:
    u = np.arange(n_out) / f
    i0 = np.minimum(np.floor(u).astype(int), n_in - 2)
    t = (u - i0).astype(_F32)
    m = np.zeros((n_out, n_in), _F32)
    r = np.arange(n_out)
    m[r, i0] = 1 - t
    m[r, i0 + 1] = t
    return m


class _Coarse:
    """A grid ``f`` times coarser than ``grid`` sharing its origin, with separable linear upsampling."""

    def __init__(self, grid: _Grid, f: int):
        self.grid = _Grid(grid.origin, grid.h * f, tuple((n - 1) // f + 2 for n in grid.shape))
        self.m = [_lin_matrix(n, nc, f) for n, nc in zip(grid.shape, self.grid.shape)]

    def up(self, a: np.ndarray) -> np.ndarray:
        mz, my, mx = self.m
        a = np.broadcast_to(np.asarray(a, _F32), self.grid.shape)
        t = my @ (a @ mx.T)
        return (mz @ t.reshape(t.shape[0], -1)).reshape(mz.shape[0], my.shape[0], mx.shape[0])


def _smooth_rows(n: int, h: float, scale: float) -> np.ndarray:
    nc = int(math.ceil(n * h / scale)) + 5
    u = np.arange(n) * h / scale + 2
    w = np.exp(-0.5 * ((u[:, None] - np.arange(nc)[None, :]) / 0.7) ** 2)
    return (w / np.sqrt((w**2).sum(1, keepdims=True))).astype(_F32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], h: float, scale: float) -> np.ndarray:
    """Band-limited Gaussian noise (unit sd, correlation length about ``scale`` mm) from a separable product."""
    mz, my, mx = (_smooth_rows(n, h, scale) for n in shape)
    w = rng.standard_normal((mz.shape[1], my.shape[1], mx.shape[1]), dtype=_F32)
    t = my @ (w @ mx.T)
    return (mz @ t.reshape(t.shape[0], -1)).reshape(shape)


def _waves(rng: np.random.Generator, n: int, k: float) -> tuple[np.ndarray, np.ndarray]:
    w = rng.standard_normal((n, 3))
    w *= (k * (1 + 0.15 * rng.standard_normal(n)) / np.linalg.norm(w, axis=1))[:, None]
    return w.astype(_F32), rng.uniform(0, 2 * np.pi, n).astype(_F32)


def _wave_sum(waves, ux, uy, uz) -> np.ndarray:
    """Random smooth function of a direction: a sum of plane waves (unit variance)."""
    w, phi = waves
    acc = np.zeros(np.broadcast_shapes(np.shape(ux), np.shape(uy), np.shape(uz)), _F32)
    for (a, b, c), p in zip(w, phi):
        acc += np.cos(a * ux + b * uy + c * uz + p)
    return acc * _F32(math.sqrt(2.0 / len(phi)))


def _ell_depth(px, py, pz, a, b, c) -> np.ndarray:
    """Pseudo signed distance to an ellipsoid surface along the ray from its centre (positive inside)."""
    r = np.sqrt(px * px + py * py + pz * pz) + _F32(1e-3)
    inv = 1.0 / np.sqrt((px / a) ** 2 + (py / b) ** 2 + (pz / c) ** 2 + _F32(1e-9))
    return r * (inv - 1.0)


def _seg_dist(x, y, z, a: np.ndarray, b: np.ndarray):
    ab = b - a
    l2 = max(float(ab @ ab), 1e-9)
    dx, dy, dz = x - _F32(a[0]), y - _F32(a[1]), z - _F32(a[2])
    t = np.clip((dx * _F32(ab[0]) + dy * _F32(ab[1]) + dz * _F32(ab[2])) / _F32(l2), 0, 1)
    ex, ey, ez = dx - t * _F32(ab[0]), dy - t * _F32(ab[1]), dz - t * _F32(ab[2])
    return np.sqrt(ex * ex + ey * ey + ez * ez), t


def _segments(grid: _Grid, pts, radii, margin: float = 2.0):
    """Yield (box, signed distance) for each segment of a tube along ``pts`` with radii ``radii``."""
    pts = [np.asarray(p, float) for p in pts]
    for a, b, ra, rb in zip(pts[:-1], pts[1:], radii[:-1], radii[1:]):
        ext = max(ra, rb) + margin
        sl = grid.box(np.minimum(a, b) - ext, np.maximum(a, b) + ext)
        if sl is None:
            continue
        x, y, z = grid.xyz(sl)
        dist, t = _seg_dist(x, y, z, a, b)
        yield sl, dist - (_F32(ra) + t * _F32(rb - ra))


def _ellipsoid(grid: _Grid, c, axes, margin: float = 1.3):
    """(box, normalised radius) of an axis-aligned ellipsoid, or (None, None) when outside the grid."""
    c, axes = np.asarray(c, float), np.asarray(axes, float)
    sl = grid.box(c - axes * margin - 1, c + axes * margin + 1)
    if sl is None:
        return None, None
    x, y, z = grid.xyz(sl)
    n = np.sqrt(((x - _F32(c[0])) / _F32(axes[0])) ** 2 + ((y - _F32(c[1])) / _F32(axes[1])) ** 2
                + ((z - _F32(c[2])) / _F32(axes[2])) ** 2)
    return sl, n


def _vtube(x, y, z, zs, cys, rxs, rys):
    """Normalised radius of a roughly vertical tube with elliptic sections given at heights ``zs``."""
    zz = np.asarray(z, float).ravel()
    cy = np.interp(zz, zs, cys).astype(_F32).reshape(np.shape(z))
    rx = np.interp(zz, zs, rxs).astype(_F32).reshape(np.shape(z))
    ry = np.interp(zz, zs, rys).astype(_F32).reshape(np.shape(z))
    n = np.sqrt((x / rx) ** 2 + ((y - cy) / ry) ** 2)
    inside = (np.asarray(z) >= zs[0]) & (np.asarray(z) <= zs[-1])
    return np.where(inside, n, _F32(99)), cy, np.minimum(rx, ry)


def _paint(img: np.ndarray, sl, frac: np.ndarray, hu) -> None:
    v = img[sl]
    v += frac * (hu - v)


def _put(lab: np.ndarray, sl, mask: np.ndarray, value: int, only=None) -> None:
    v = lab[sl]
    if only is not None:
        mask = mask & np.isin(v, only)
    np.copyto(v, np.uint8(value), where=mask)


# ---------------------------------------------------------------------------------------------------------- the head
def _tissue_hu(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    u = rng.uniform
    wm = u(26, 33)
    gm = min(wm + u(6, 10), 44.0)
    csf = u(2, 9)
    table = {AIR: (-1000, 0), SKIN: (u(20, 45), 5), FAT: (u(-110, -75), 8), MUSCLE: (u(40, 58), 5),
             BONE: (u(1250, 1900), 110), DIPLOE: (u(450, 850), 110), DENSE: (u(1500, 2050), 110),
             SINUS: (u(-1000, -950), 6), CSF: (csf, 1.5), VENT: (csf + u(-1.5, 1.5), 1.2), GM: (gm, 1.8),
             WM: (wm, 1.4), STRIATUM: (gm - u(0, 3), 1.5), PALLIDUM: (wm + u(0, 4), 1.5),
             THALAMUS: ((gm + wm) / 2 + u(-1, 2), 1.5), CB_GM: (gm + u(-2, 2), 1.8), CB_WM: (wm + u(1, 5), 1.5),
             STEM: (wm + u(0, 5), 1.5), VITREOUS: (u(4, 14), 2), LENS: (u(75, 115), 4), NERVE: (u(25, 38), 2),
             CHOROID: (u(32, 46), 2), MUCOSA: (u(20, 45), 5), GLAND: (u(40, 60), 3),
             SCALP: (u(-35, 20), 10)}
    mean = np.array([table[i][0] for i in range(len(TISSUES))], _F32)
    sd = np.array([table[i][1] for i in range(len(TISSUES))], _F32)
    return mean, sd


class _Head:
    """Random anatomical parameters of one head (sizes in mm, head frame centred near the thalami)."""

    def __init__(self, rng: np.random.Generator):
        u = rng.uniform
        self.age = float(u(18, 92))
        a = self.atrophy = float(np.clip((self.age - 35) / 55 + rng.normal(0, 0.12), 0, 1))
        self.ax, self.ay, self.az, self.azd = float(u(62, 71)), float(u(79, 90)), float(u(56, 65)), float(u(27, 33))
        self.ys = float(u(-3, 3))
        self.sc = np.array([self.ax / 67, self.ay / 85, (self.az + self.azd) / 91])
        self.shape_waves = _waves(rng, 6, 2.2)
        self.shape_amp = float(u(0.01, 0.03))
        self.t_skull, self.t_table = float(u(4.5, 7.5)), float(u(1.3, 2.2))
        self.skin, self.subcut, self.temporalis = float(u(1.8, 3.0)), float(u(2.0, 5.0)), float(u(3, 9))
        self.scalp_fat = float(u(0.0, 1.5))
        self.frontal_sinus = (float(u(8, 22)), float(u(8, 15)), float(u(5, 12))) if rng.random() < 0.85 else None
        self.sphenoid_pneum, self.mastoid_pneum = float(u(0.6, 1.1)), float(u(-0.2, 0.5))
        self.mucosal = bool(rng.random() < 0.2)
        self.vs = float(np.clip(0.75 + 1.15 * a + rng.normal(0, 0.12), 0.6, 2.2))
        self.vent_asym = float(rng.normal(0, 0.06))
        self.w_sulc = float(0.35 + 1.9 * a + abs(rng.normal(0, 0.2)))
        self.w_sas = float(0.5 + 2.4 * a + abs(rng.normal(0, 0.2)))
        self.w_ih = float(0.6 + 1.8 * a + abs(rng.normal(0, 0.15)))
        self.w_syl = float(1.0 + 2.6 * a + abs(rng.normal(0, 0.2)))
        self.w_cist = float(1.5 + 3.0 * a)
        self.t_gm, self.sulc_depth, self.sulc_bend = float(u(2.3, 3.1)), float(u(9, 15)), float(u(0.5, 0.9))
        self.sulci = _waves(rng, 28, 2 * np.pi * 70 / u(24, 30))
        self.depth_waves = _waves(rng, 6, 3.0)
        self.folia = float(u(3.5, 5.0))
        self.hu, self.sd = _tissue_hu(rng)
        # hard-negative mimics: drawn always so that a seed's head does not depend on the bleeds
        self.falx_t, self.falx_hu = float(u(1.0, 3.0)), float(u(40, 70))
        n_plaques = int(rng.integers(1, 4)) if rng.random() < 0.08 + 0.45 * a else 0
        self.falx_plaques = [(float(u(-40, 45)), float(u(15, 50)), float(u(2, 4.5)), float(u(110, 400)))
                             for _ in range(n_plaques)]
        self.tent_t, self.tent_hu = float(u(1.0, 2.5)), float(u(40, 65))
        self.sinus_hu, self.sinus_r = float(u(40, 70)), float(u(0.85, 1.25))
        self.calcs = {name: (bool(rng.random() < p), float(u(100, 380)), float(u(*r)))
                      for name, p, r in (("choroid plexus calcification", 0.2 + 0.55 * a, (2.0, 4.0)),
                                         ("pineal calcification", 0.3 + 0.4 * a, (1.8, 3.5)),
                                         ("globus pallidus calcification", 0.05 + 0.25 * a, (1.5, 3.0)),
                                         ("dentate calcification", 0.04 + 0.15 * a, (1.5, 3.0)))}

    def pt(self, x: float, y: float, z: float) -> np.ndarray:
        """A point of the reference anatomy scaled to this head."""
        return np.array([x * self.sc[0], y * self.sc[1] + self.ys, z * self.sc[2]])

    # tentorium, petrous ridge and sutures (head frame)
    def z_tent(self, x, y):
        return _F32(-12 * self.sc[2]) - _F32(0.35) * np.abs(x) - _F32(0.44) * np.maximum(y - _F32(30 * self.sc[1]), 0)

    def y_petrous(self, x):
        ax = np.abs(x)
        return _F32(-4 * self.sc[1] + self.ys) + np.where(ax > 16, (ax - 16) * _F32(0.83), (ax - 16) * _F32(0.2))

    def tent_zone(self, x, y):
        return y > self.y_petrous(x)

    def stem_table(self):
        s = self.sc
        zs = np.array([-150, -78, -62, -47, -34, -22, -10, 0]) * s[2]
        cys = np.array([27, 27, 23, 15, 11, 12, 13, 14]) * s[1] + self.ys
        rxs = np.array([5.5, 6.5, 9, 13, 16, 13.5, 13, 12]) * s[0]
        rys = np.array([5, 6, 8, 11, 13, 10.5, 10, 9]) * s[1]
        return zs, cys, rxs, rys


# ------------------------------------------------------------------------------------------------ geometry & scanner
def _head_top(head: _Head, rot: np.ndarray) -> float:
    """Highest point of the skin after rotating the head by ``rot`` (mm above the head-frame origin)."""
    th = np.radians(np.arange(0, 80, 8))
    ph = np.radians(np.arange(0, 360, 15))
    th, ph = np.meshgrid(th, ph)
    u = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    r = np.arange(40, 112, 1.0)
    p = (u[:, None, :] * r[None, :, None]).reshape(-1, 3).astype(_F32)
    _, _, dout = _cavity(head, p[:, 0], p[:, 1], p[:, 2])
    inside = p[dout > 0]
    return float((inside @ rot.T)[:, 2].max()) if inside.size else head.az + 15


class _Scan:
    """Output grid, head pose and scanner-model settings (all drawn up front from the scanner stream)."""

    def __init__(self, rng: np.random.Generator, size: str, head: _Head):
        u = rng.uniform
        if size == "small":
            self.n = int(rng.integers(96, 129))
            self.t = float(rng.choice([5.0, 5.0, 5.5, 6.0, 6.0, 6.5, 7.0]))
            lo = min(24, max(16, math.ceil(120 / self.t)))
            self.nz = int(rng.integers(lo, 25))
            self.h = 1.3
        else:
            self.n = int(rng.choice([256, 512]))
            self.t = float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0]))
            self.nz = int(np.clip(round(u(135, 175) / self.t), 20, 150))
            self.h = 1.0
        self.fov = float(u(200, 250))
        self.s = self.fov / self.n
        self.pose = {"yaw": float(u(-6, 6)), "roll": float(u(-5, 5)), "pitch": float(u(-4, 18))}
        self.R = _rot("z", self.pose["yaw"]) @ _rot("y", self.pose["roll"]) @ _rot("x", self.pose["pitch"])
        self.tilt = float(u(8, 20) * rng.choice([-1, 1])) if rng.random() < 0.15 else 0.0
        self.D = _rot("x", self.tilt)
        half = self.s * (self.n - 1) / 2
        dx = u(-1, 1) * min(20.0, max(3.0, self.fov / 2 - 86))
        dy = u(-1, 1) * min(20.0, max(3.0, self.fov / 2 - 100))
        vtop = _head_top(head, self.R)
        self.z_c = self.nz * self.t - self.t / 2 - float(u(-3, 6)) - vtop
        self.q_c = np.array([half + dx, half + dy, self.z_c])
        centre = np.array([u(-10, 10), u(-30, 120), u(-450, 60)])
        self.O = centre - self.D @ np.array([half, half, 0.0])
        self.M = self.D @ self.R  # head frame -> physical directions
        self.gravity = self.M.T @ np.array([0.0, 1.0, 0.0])  # supine: blood settles posteriorly (+y physical)
        # scanner model
        self.offset = float(u(-2.5, 2.5))
        sharp = bool(rng.random() < 0.35)
        sigma_mm = float(u(1.1, 2.2) if sharp else u(0.5, 1.6))
        self.kernel = {"type": "sharp" if sharp else "smooth", "sigma_mm": sigma_mm, "sigma_px": sigma_mm / self.s,
                       "amount": float(u(0.2, 0.8)) if sharp else 0.0}
        self.noise_sd = float(math.exp(u(math.log(2), math.log(12))))
        self.noise_corr_mm = (float(u(0.6, 1.7)), float(u(0.6, 1.7)))  # x, y: in-plane anisotropy
        self.noise_corr = tuple(c / self.s for c in self.noise_corr_mm)
        self.noise_centre = float(u(0, 0.35))
        self.cupping = float(u(0, 4))
        self.streak = float(u(6, 25))
        self.fan = [(float(u(0, np.pi)), float(u(-14, 14))) for _ in range(int(rng.integers(2, 7)))]
        self.ring = [(float(u(8, 100)), float(u(4, 12) * rng.choice([-1, 1])))
                     for _ in range(int(rng.integers(1, 4)))] if rng.random() < 0.08 else []
        self.motion = ((int(rng.integers(0, self.nz)), int(rng.integers(1, 3)), float(u(0.15, 0.35)),
                        int(rng.integers(2, 6)), int(rng.integers(-3, 4)), float(u(0, np.pi)), float(u(5, 14)),
                        float(u(4, 12))) if rng.random() < 0.1 else None)
        self.couch = ((float(u(95, 135)), float(u(2, 4)), float(u(200, 600)), float(u(0, 5)), float(u(15, 45)),
                       float(u(-300, 100)), float(u(8, 16))) if rng.random() < 0.55 else None)
        self.noise_seed = int(rng.integers(0, 2**62))

    def canvas_grid(self) -> _Grid:
        """The head-frame box imaged by the slab stack (cropped to the head), as a grid of spacing ``h``."""
        g = np.mgrid[-95:96:5, -125:113:5, -150:96:5].reshape(3, -1).T.astype(float)
        q = g @ self.R.T + self.q_c
        lim = self.s * (self.n - 1) + self.s / 2 + 4
        keep = ((q[:, 2] >= -self.t / 2 - 4) & (q[:, 2] <= self.nz * self.t - self.t / 2 + 4)
                & (q[:, 0] >= -self.s / 2 - 4) & (q[:, 0] <= lim) & (q[:, 1] >= -self.s / 2 - 4) & (q[:, 1] <= lim))
        pts = g[keep]
        lo = np.maximum(pts.min(0) - 6, [-90, -118, -150])
        hi = np.minimum(pts.max(0) + 6, [90, 108, 95])
        shape = tuple(int(math.ceil((hi[k] - lo[k]) / self.h)) + 1 for k in (2, 1, 0))
        return _Grid(lo, self.h, shape)

    def to_grid(self, p: np.ndarray) -> np.ndarray:
        """Head-frame points (N, 3) -> output-grid coordinates in mm (index * spacing)."""
        return np.atleast_2d(p) @ self.R.T + self.q_c

    def describe(self) -> dict:
        return {"size": [self.n, self.n, self.nz], "spacing": [round(self.s, 4), round(self.s, 4), self.t],
                "fov_mm": round(self.fov, 1), "slice_thickness_mm": self.t,
                "pose_deg": {k: round(v, 1) for k, v in self.pose.items()}, "gantry_tilt_deg": round(self.tilt, 1),
                "kernel": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.kernel.items()},
                "noise_sd_hu": round(self.noise_sd, 1), "noise_corr_mm": [round(c, 2) for c in self.noise_corr_mm],
                "hu_offset": round(self.offset, 2), "cupping_hu": round(self.cupping, 2),
                "ring": bool(self.ring), "motion": self.motion is not None, "couch": self.couch is not None,
                "canvas_mm": self.h}


# ---------------------------------------------------------------------------------------------------- anatomy fields
@dataclass
class _Fields:
    grid: _Grid
    d: np.ndarray  # depth inside the inner table (mm, > 0 in the cranial cavity)
    ts: np.ndarray  # local skull thickness
    dout: np.ndarray  # depth inside the skin
    G: np.ndarray  # sulcal pattern (zero set = sulci)
    gn: np.ndarray  # |grad G|
    dv: np.ndarray  # sulcal depth modulation in [0, 1]
    tex: np.ndarray  # fine texture (unit sd, ~2 mm)
    tex2: np.ndarray  # coarse texture (unit sd, ~9 mm)
    tau: np.ndarray = field(default=None)  # brain displaced by extra-axial bleeds (mm)


def _orbit_axis(head: _Head, side: int):
    return head.pt(side * 14, -36, -33), head.pt(side * 33, -84, -33)


def _cavity(head: _Head, x, y, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inner-table depth, skull thickness and skin depth (analytic; evaluated on the coarse grid)."""
    s = head.sc
    px, py, pz = x, y - _F32(head.ys), z
    r = np.sqrt(px * px + py * py + pz * pz) + _F32(1e-3)
    cz = np.where(pz > 0, _F32(head.az), _F32(head.azd) * (1 + _F32(0.3) * np.clip(py / _F32(head.ay), 0, 1)))
    rs = r / np.sqrt((px / _F32(head.ax)) ** 2 + (py / _F32(head.ay)) ** 2 + (pz / cz) ** 2 + _F32(1e-9))
    rs = rs * (1 + _F32(head.shape_amp / 2.5) * _wave_sum(head.shape_waves, px / r, py / r, pz / r))
    d = rs - r
    ax = np.abs(x)
    d = np.maximum(d, _ell_depth(ax - _F32(head.ax - 22 * s[0]), y - _F32(-8 * s[1] + head.ys), z - _F32(-26 * s[2]),
                                 _F32(22 * s[0]), _F32(36 * s[1]), _F32(19 * s[2])))
    d = np.maximum(d, _ell_depth(x, y - _F32(40 * s[1] + head.ys), z - _F32(-43 * s[2]),
                                 _F32(0.78 * head.ax), _F32(37 * s[1]), _F32(26 * s[2])))
    zs, cys, rxs, rys = head.stem_table()
    n, _, rmin = _vtube(x, y, z, zs, cys, rxs, rys)
    d = np.maximum(d, np.where(z <= 2 * s[2], (1 - n) * rmin + _F32(head.w_cist), _F32(-99)))
    zz = np.asarray(z, float).ravel()
    ryc = np.interp(zz, [-150, -75, -60], np.array([26, 29, 32]) * s[1] + head.ys).astype(_F32).reshape(np.shape(z))
    rc = np.interp(zz, [-150, -75, -60], [8.5, 10.5, 15]).astype(_F32).reshape(np.shape(z))
    d = np.maximum(d, np.where(z < -52 * s[2], rc - np.sqrt(x * x + (y - ryc) ** 2), _F32(-99)))
    # carvings: petrous ridges, clivus, sphenoid body, orbits, ethmoid block, mastoids
    a, b = head.pt(16, -4, -34), head.pt(52, 26, -44)
    dist, t = _seg_dist(ax, y, z, a, b)
    d = np.minimum(d, dist - (_F32(7 * s[0]) + t * _F32(4 * s[0])))
    ncl, _, _ = _vtube(x, y, z, np.array([-68, -24]) * s[2], np.array([12, -16]) * s[1] + head.ys,
                       np.array([13, 13]) * s[0], np.array([5.5, 5.5]) * s[1])
    d = np.minimum(d, (ncl - 1) * _F32(5.5 * s[1]))
    c = head.pt(0, -17, -44)
    d = np.minimum(d, -_ell_depth(x - _F32(c[0]), y - _F32(c[1]), z - _F32(c[2]),
                                  _F32(17 * s[0]), _F32(13 * s[1]), _F32(13 * s[2])))
    a, b = _orbit_axis(head, 1)
    dist, t = _seg_dist(ax, y, z, a, b)
    d = np.minimum(d, dist - (_F32(3) + t * _F32(12 * s[0])) - _F32(2.5))
    c = head.pt(0, -62, -38)
    n4 = ((x / _F32(11 * s[0])) ** 4 + ((y - _F32(c[1])) / _F32(22 * s[1])) ** 4
          + ((z - _F32(c[2])) / _F32(12 * s[2])) ** 4) ** 0.25
    d = np.minimum(d, (n4 - 1) * _F32(11 * s[0]) - _F32(1.5))
    c = head.pt(head.ax / s[0] - 10, 28, -50)
    d = np.minimum(d, np.sqrt((ax - _F32(c[0])) ** 2 + (y - _F32(c[1])) ** 2 + (z - _F32(c[2])) ** 2)
                   - _F32(12 + 1))
    c = head.pt(0, -15, -31)
    d = np.maximum(d, _F32(5.5) - np.sqrt(x * x + (y - _F32(c[1])) ** 2 + (z - _F32(c[2])) ** 2))
    # skull thickness: thicker frontally and occipitally, much thicker at the base, frontal sinus bulge
    ts = _F32(head.t_skull) * (1 + _F32(0.2) * np.exp(-(((y + _F32(head.ay)) / _F32(30)) ** 2))
                               + _F32(0.25) * np.exp(-(((y - _F32(head.ay)) / _F32(30)) ** 2)))
    ts = ts + np.clip((_F32(-25) - z) * _F32(0.2), 0, 4) * np.exp(-((x / _F32(45)) ** 2)) / (
        1 + np.exp((y - _F32(22 * s[1] + head.ys)) / _F32(6)))
    if head.frontal_sinus is not None:
        fw, fh, fd = head.frontal_sinus
        ts = ts + _F32(fd) * np.exp(-((x / _F32(fw)) ** 2)) * np.exp(-(((z + _F32(4 * s[2])) / _F32(fh)) ** 2)) * (
            y < -40)
    tm = (_F32(head.temporalis) * np.exp(-(((y + _F32(8)) / _F32(36)) ** 2))
          * np.exp(-(((z + _F32(10)) / _F32(24)) ** 2)) * np.clip((ax - _F32(30)) / _F32(15), 0, 1))
    dout = d + ts + tm + _F32(0.5 + head.subcut + head.skin)
    c = head.pt(0, -45, -62)
    dout = np.maximum(dout, _ell_depth(x, y - _F32(c[1]), z - _F32(c[2]), _F32(58 * s[0]), _F32(52 * s[1]),
                                       _F32(40 * s[2])))
    c = head.pt(0, -92, -50)
    dout = np.maximum(dout, _ell_depth(x, y - _F32(c[1]), z - _F32(c[2]), _F32(10 * s[0]), _F32(16 * s[1]),
                                       _F32(22 * s[2])))
    c = head.pt(31, -73, -33)
    dout = np.maximum(dout, _F32(14.5) - np.sqrt((ax - _F32(c[0])) ** 2 + (y - _F32(c[1])) ** 2
                                                 + (z - _F32(c[2])) ** 2))
    rho = np.sqrt((x / _F32(56 * s[0])) ** 2 + ((y - _F32(15 * s[1] + head.ys)) / _F32(52 * s[1])) ** 2)
    dout = np.maximum(dout, _F32(52) * (1 - rho) - np.maximum(z + _F32(55 * s[2]), 0) * _F32(1.5))
    return d, ts, dout


def _fields(head: _Head, grid: _Grid, rng: np.random.Generator) -> _Fields:
    coarse = _Coarse(grid, 2)
    x, y, z = coarse.grid.xyz()
    d, ts, dout = _cavity(head, x, y, z)
    px, py, pz = x, y - _F32(head.ys), z - _F32(8 * head.sc[2])
    r = np.sqrt(px * px + py * py + pz * pz) + _F32(1e-3)
    ux, uy, uz = px / r, py / r, pz / r
    G = _wave_sum(head.sulci, ux, uy, uz) + _F32(head.sulc_bend) * _smooth_noise(rng, coarse.grid.shape,
                                                                                  coarse.grid.h, 8.0)
    gz, gy, gx = np.gradient(G, coarse.grid.h)
    gn = np.sqrt(gx * gx + gy * gy + gz * gz)
    dv = np.clip(0.5 + 0.35 * _wave_sum(head.depth_waves, ux, uy, uz), 0, 1)
    up = coarse.up
    tex = _smooth_noise(rng, grid.shape, grid.h, 2.2)
    tex2 = _smooth_noise(rng, grid.shape, grid.h, 9.0)
    return _Fields(grid, up(d), up(ts), up(dout), up(G), np.maximum(up(gn), _F32(1e-3)), up(dv), tex, tex2,
                   np.zeros(grid.shape, _F32))


# ------------------------------------------------------------------------------------------------------------ bleeds
_VOLUME_RANGE = {"epidural": (3, 80), "subdural": (2, 120), "subarachnoid": (0.6, 30), "intraventricular": (0.6, 40),
                 "intraparenchymal": (0.6, 90)}
_HU_RANGE = {"epidural": (55, 80), "subdural": (48, 70), "subarachnoid": (48, 64), "intraventricular": (47, 60),
             "intraparenchymal": (54, 67)}  # pure blood; partial volume brings labelled voxels down to BHSD's peaks
BONE_EXCLUSION = 0.15  # output voxels with this bone fraction (after the kernel) are not labelled: they read as bone


@dataclass
class _Bleed:
    subtype: str
    volume: float  # target blood volume, mL
    kind: str
    side: int
    hu: float
    centre: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    shift: float = 0.0  # midline shift it causes (mm, signed: + = towards +x)

    def describe(self) -> str:
        side = {1: "left ", -1: "right ", 0: ""}[self.side]
        extra = f" ({', '.join(self.features)})" if self.features else ""
        vol = self.params.get("drawn_ml", self.volume)
        return f"{self.subtype} {side}{self.kind} {vol:.1f} mL {self.hu:.0f} HU{extra}"


def _random_subtypes(rng: np.random.Generator) -> list[str]:
    if rng.random() < NEGATIVE_FRACTION:
        return []
    names = list(SUBTYPE_NAMES)
    first = str(rng.choice(names, p=[0.14, 0.26, 0.13, 0.22, 0.25]))
    out = [first]
    if rng.random() < 0.45:
        partners = {"subdural": ["subarachnoid", "subdural", "epidural", "intraparenchymal"],
                    "intraparenchymal": ["intraventricular", "intraventricular", "subarachnoid", "intraparenchymal"],
                    "subarachnoid": ["intraventricular", "subdural", "intraparenchymal"],
                    "intraventricular": ["intraparenchymal", "subarachnoid"],
                    "epidural": ["subdural", "subarachnoid", "intraparenchymal"]}
        out.append(str(rng.choice(partners[first])))
        if rng.random() < 0.25:
            out.append(str(rng.choice(names)))
    return out


def _choose_subtypes(rng: np.random.Generator, subtypes: list[str] | None) -> list[str]:
    if subtypes is None:
        return _random_subtypes(rng)
    out = [class_from_segment_name(str(s)) or str(s) for s in subtypes]
    bad = [s for s, o in zip(subtypes, out) if o not in SUBTYPE_NAMES]
    if bad:
        raise ValueError(f"unknown subtypes {bad}; known: {', '.join(SUBTYPE_NAMES)}")
    return out


def _plan(rng: np.random.Generator, name: str, head: _Head, wanted: list[str]) -> _Bleed:
    lo, hi = _VOLUME_RANGE[name]
    vol = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    side = int(rng.choice([-1, 1]))
    b = _Bleed(name, vol, "", side, float(rng.uniform(*_HU_RANGE[name])))
    u = rng.uniform
    if name == "epidural":
        b.kind = str(rng.choice(["temporal", "parietal", "frontal", "occipital", "posterior fossa"],
                                p=[0.4, 0.25, 0.2, 0.1, 0.05]))
        dirs = {"temporal": (0.95, u(-0.3, 0.2), u(-0.35, 0.05)), "parietal": (0.7, u(-0.1, 0.4), u(0.5, 0.8)),
                "frontal": (0.45, -0.85, u(0.05, 0.4)), "occipital": (0.3, 0.9, u(0.0, 0.3)),
                "posterior fossa": (0.55, 0.8, u(-0.3, 0.0))}
        d = np.array(dirs[b.kind])
        b.params = {"u": _unit(d * [side, 1, 1]), "k": u(0.3, 0.55), "q": u(0.75, 1.1)}
        if b.kind == "posterior fossa":
            b.volume = min(b.volume, 25.0)
    elif name == "subdural":
        b.kind = str(rng.choice(["convexity", "falx", "tentorium"], p=[0.8, 0.1, 0.1]))
        b.params = {"u": _unit(np.array([side * u(0.75, 0.95), u(-0.45, 0.35), u(-0.05, 0.5)])),
                    "q": u(0.55, 0.9), "yc": u(-30, 40), "zc": u(18, 40), "ry": u(25, 50), "rz": u(12, 25),
                    "tf": u(2, 5), "xc": u(15, 35), "yt": u(30, 55), "extend": bool(rng.random() < 0.25)}
        if b.kind != "convexity":
            b.volume = min(b.volume, 15.0)
        if rng.random() < 0.18:
            b.features.append("mixed density")
    elif name == "subarachnoid":
        b.kind = str(rng.choice(["basal", "sylvian", "convexity", "interhemispheric", "perimesencephalic"],
                                p=[0.3, 0.2, 0.3, 0.1, 0.1]))
        b.params = {"u": _unit(np.array([side * u(0.5, 0.95), u(-0.6, 0.6), u(0.0, 0.8)]))}
    elif name == "intraventricular":
        b.kind = str(rng.choice(["layering", "cast"], p=[0.6, 0.4]))
        b.params = {"both": bool(rng.random() < 0.6), "seed": str(rng.choice(["lateral", "third", "fourth"],
                                                                              p=[0.6, 0.25, 0.15]))}
        if (b.kind == "layering" and b.params["both"]) or (b.kind == "cast" and b.params["seed"] != "lateral"):
            b.side = 0
    else:
        near_vent = "intraventricular" in wanted
        p = [0.3, 0.3, 0.15, 0.08, 0.12, 0.05] if not near_vent else [0.3, 0.05, 0.35, 0.25, 0.03, 0.02]
        b.kind = str(rng.choice(["basal ganglia", "lobar", "thalamus", "caudate", "cerebellum", "pons"], p=p))
        caps = {"pons": 6.0, "thalamus": 40.0, "cerebellum": 40.0, "caudate": 30.0}
        b.volume = min(b.volume, caps.get(b.kind, 90.0))
        centres = {"basal ganglia": (24, -4, 1), "thalamus": (10, 11, 3), "caudate": (15, -16, 11),
                   "cerebellum": (24, 50, -44), "pons": (0, 11, -33)}
        if b.kind == "pons":
            side = b.side = 0
        if b.kind in centres:
            cx, cy, cz = centres[b.kind]
            b.centre = head.pt(side * cx if side else 0, cy, cz) + rng.normal(0, 2.5, 3) * [1, 1, 0.7]
        b.params = {"u": _unit(np.array([side * u(0.4, 0.9), u(-0.7, 0.8), u(0.1, 0.8)])), "depth": u(10, 22),
                    "axes": rng.uniform(0.75, 1.3, 3), "rot": rng.standard_normal((3, 3)),
                    "waves": _waves(rng, 5, u(1.5, 3.5)), "irreg": u(0.04, 0.22), "oedema": u(0.25, 0.7),
                    "oedema_hu": u(12, 24)}
        if rng.random() < 0.12 and b.volume > 8:
            b.features.append("hyperacute swirl")
    if name in ("epidural", "subdural", "intraparenchymal") and rng.random() < 0.1:
        b.features.append("hematocrit level")
    if name == "epidural" and rng.random() < 0.12:
        b.features.append("hyperacute swirl")
    b.params["het"] = u(1.5, 5.0)
    b.params["seed"] = b.params.get("seed", "lateral")
    return b


def _surface(F: _Fields, c: np.ndarray, u: np.ndarray, inset: float = 0.0) -> np.ndarray:
    """Point where the ray from ``c`` along ``u`` leaves the cranial cavity, moved ``inset`` mm back inside."""
    t = np.arange(0, 160, F.grid.h / 2)
    vals = F.grid.value(F.d, c[None, :] + t[:, None] * u[None, :])
    out = np.nonzero(vals <= 0)[0]
    out = out[out > 0]
    ts = t[out[0]] if out.size else t[-1]
    return c + u * max(ts - inset, 0.0)


def _quantile(f: np.ndarray, valid: np.ndarray, n_vox: float) -> float | None:
    cand = f[valid]
    if cand.size == 0:
        return None
    k = int(np.clip(round(n_vox), 1, cand.size)) - 1
    return float(np.partition(cand, k)[k])


def _arc_coords(grid: _Grid, sl, c: np.ndarray, p: np.ndarray):
    """Depth-independent surface coordinates (mm of arc) around the point ``p`` seen from centre ``c``."""
    n = _unit(p - c)
    e1 = np.cross(n, [0.0, 0.0, 1.0])
    e1 = _unit(e1) if np.linalg.norm(e1) > 0.2 else _unit(np.cross(n, [0.0, 1.0, 0.0]))
    e2 = np.cross(n, e1)
    x, y, z = grid.xyz(sl)
    vx, vy, vz = x - _F32(c[0]), y - _F32(c[1]), z - _F32(c[2])
    an = vx * _F32(n[0]) + vy * _F32(n[1]) + vz * _F32(n[2])
    a1 = vx * _F32(e1[0]) + vy * _F32(e1[1]) + vz * _F32(e1[2])
    a2 = vx * _F32(e2[0]) + vy * _F32(e2[1]) + vz * _F32(e2[2])
    rl = _F32(np.linalg.norm(p - c))
    return rl * np.arctan2(a1, an), rl * np.arctan2(a2, an), an


def _sutures(head: _Head, z):
    s = head.sc
    ycor = _F32(-35 * s[1] + head.ys) + (z + _F32(5)) * _F32(15 / 65)
    ylam = _F32(45 * s[1] + head.ys) + (z + _F32(35)) * _F32(25 / 75)
    return ycor, ylam


@dataclass
class _Part:
    sl: tuple
    frac: np.ndarray
    hu: np.ndarray
    oedema: np.ndarray | None = None
    oedema_hu: float = 0.0


def _extra_axial(head: _Head, F: _Fields, b: _Bleed, rng: np.random.Generator) -> list[_Part]:
    """Epidural lens or subdural crescent (plus optional falx/tentorium extension); updates ``F.tau``."""
    grid, h = F.grid, F.grid.h
    n_vox = b.volume * 1000 / h**3
    parts = []
    comps = []
    if b.subtype == "epidural":
        c = head.pt(0, 42, -38) if b.kind == "posterior fossa" else head.pt(0, 0, 0)
        p = _surface(F, c, b.params["u"])
        k, q = b.params["k"], b.params["q"]
        r1 = (2 * b.volume * 1000 / (math.pi * k * q)) ** (1 / 3)
        comps.append(("lens", c, p, r1, q * r1, k * r1, n_vox))
    elif b.kind == "convexity":
        c = head.pt(0, 0, 5)
        p = _surface(F, c, b.params["u"])
        t = float(np.clip(rng.uniform(0.8, 1.2) * 2.2 * b.volume**0.45, 2, 20))
        area = 3 * b.volume * 1000 / (2 * math.pi * t)
        r1 = min(95.0, math.sqrt(area / b.params["q"]))
        r2 = min(75.0, area / r1)
        share = 0.8 if b.params["extend"] else 1.0
        comps.append(("crescent", c, p, r1, r2, t, n_vox * share))
        if b.params["extend"]:
            comps.append(("falx" if rng.random() < 0.5 else "tentorium", None, None, 0, 0, 0, n_vox * (1 - share)))
            b.features.append(f"extends along the {comps[-1][0]}")
    else:
        comps.append((b.kind, None, None, 0, 0, 0, n_vox))
    for kind, c, p, r1, r2, t, nv in comps:
        if kind in ("lens", "crescent") and b.centre is None:
            b.centre = p
        if kind in ("lens", "crescent"):
            ext = 1.7 * max(r1, r2) + 6
            sl = grid.box(p - ext, p + ext)
            if sl is None:
                continue
            ra, rb, an = _arc_coords(grid, sl, c, p)
            d = F.d[sl]
            x, y, z = grid.xyz(sl)
            if kind == "lens":
                qq = (ra / _F32(r1)) ** 2 + (rb / _F32(r2)) ** 2
                f = qq + d / _F32(t)
                g = np.sqrt((2 * ra / _F32(r1**2)) ** 2 + (2 * rb / _F32(r2**2)) ** 2 + _F32(1 / t**2))
                ycor, ylam = _sutures(head, z)
                ycor_p, ylam_p = (float(v) for v in _sutures(head, _F32(p[2])))
                if p[1] < ycor_p:
                    soft = np.clip((ycor - y) / _F32(h) + 0.5, 0, 1)
                elif p[1] < ylam_p:
                    soft = np.clip((y - ycor) / _F32(h) + 0.5, 0, 1) * np.clip((ylam - y) / _F32(h) + 0.5, 0, 1)
                else:
                    soft = np.clip((y - ylam) / _F32(h) + 0.5, 0, 1)
                if b.kind == "posterior fossa":
                    soft = soft * (z < head.z_tent(x, y))
                elif b.kind == "temporal":
                    soft = soft * np.clip((_F32(8) - z) / _F32(h) + 0.5, 0, 1)
            else:
                qq = (ra / _F32(r1)) ** 2 + (rb / _F32(r2)) ** 2
                f = d / _F32(t) + qq * qq
                g = np.sqrt(_F32(1 / t**2) + (4 * qq * ra / _F32(r1**2)) ** 2 + (4 * qq * rb / _F32(r2**2)) ** 2)
                soft = np.clip((_F32(b.side) * x - _F32(head.falx_t / 2 + 0.5)) / _F32(h) + 0.5, 0, 1)
                soft = soft * ~((z < head.z_tent(x, y)) & head.tent_zone(x, y))
            soft = soft * (an > 0)
            valid = (d > 0) & (soft > 0.5)
            level = _quantile(f, valid, nv)
            if level is None:
                continue
            frac = np.clip((_F32(level) - f) / (g * _F32(h)) + 0.5, 0, 1) * np.clip(d / _F32(h) + 0.5, 0, 1) * soft
            tau = _F32(t) * np.clip(_F32(level) - (qq if kind == "lens" else qq * qq), 0, None) * (soft > 0.5)
        else:
            s = head.sc
            if kind == "falx":
                lo, hi = head.pt(-30, -75, -5), head.pt(30, 80, 70)
            else:
                lo, hi = head.pt(-60, -10, -55), head.pt(60, 90, 0)
            sl = grid.box(lo, hi)
            x, y, z = grid.xyz(sl)
            d = F.d[sl]
            sx = _F32(b.side if b.side else 1) * x
            tf = _F32(b.params["tf"])
            if kind == "falx":
                ax = sx - _F32(head.falx_t / 2)
                f = (ax / tf + ((y - _F32(b.params["yc"] * s[1] + head.ys)) / _F32(b.params["ry"])) ** 2
                     + ((z - _F32(b.params["zc"] * s[2])) / _F32(b.params["rz"])) ** 2)
                soft = np.clip(ax / _F32(h) + 0.5, 0, 1) * (_cc_block(head, y, z) > 1.15)
            else:
                ax = z - head.z_tent(x, y)
                f = (ax / tf + ((sx - _F32(b.params["xc"] * s[0])) / _F32(30)) ** 2
                     + ((y - _F32(b.params["yt"] * s[1] + head.ys)) / _F32(25)) ** 2)
                soft = np.clip(ax / _F32(h) + 0.5, 0, 1) * head.tent_zone(x, y) * (sx > 0)
            valid = (d > 0.5) & (soft > 0.5)
            level = _quantile(f, valid, nv)
            if level is None:
                continue
            frac = np.clip((_F32(level) - f) * tf / _F32(h) + 0.5, 0, 1) * soft * np.clip(d / _F32(h) + 0.5, 0, 1)
            tau = None
        frac = frac.astype(_F32)
        if tau is not None:
            np.maximum(F.tau[sl], tau.astype(_F32), out=F.tau[sl])
        parts.append(_Part(sl, frac, _blood_hu(b, grid, sl, frac, F, rng)))
    return parts


def _cc_block(head: _Head, y, z):
    """> 1 outside the corpus-callosum arch (where the interhemispheric fissure and the falx reach)."""
    s = head.sc
    return ((y - _F32(3 * s[1] + head.ys)) / _F32(36 * s[1])) ** 2 + ((z - _F32(6 * s[2])) / _F32(14 * s[2])) ** 2


def _blood_hu(b: _Bleed, grid: _Grid, sl, frac: np.ndarray, F: _Fields, rng: np.random.Generator) -> np.ndarray:
    hu = _F32(b.hu) + _F32(b.params["het"]) * F.tex2[sl]
    if "hyperacute swirl" in b.features:
        hu = hu - _F32(rng.uniform(12, 22)) * (F.tex[sl] > 0.6)
    if "mixed density" in b.features:
        hu = np.where(F.tex2[sl] > _F32(rng.uniform(0.3, 0.7)), _F32(rng.uniform(24, 36)) + 2 * F.tex[sl], hu)
    if "hematocrit level" in b.features:
        x, y, z = grid.xyz(sl)
        g = b.params.get("gravity", np.array([0.0, 1.0, 0.0]))
        pg = x * _F32(g[0]) + y * _F32(g[1]) + z * _F32(g[2])
        pg = np.broadcast_to(pg, frac.shape)
        inside = frac > 0.5
        if inside.any():
            level = float(np.quantile(pg[inside], rng.uniform(0.4, 0.7)))
            step = _F32(rng.uniform(6, 12))
            hu = hu + step * np.tanh((pg - _F32(level)) / _F32(2.0))
    return np.broadcast_to(hu, frac.shape).astype(_F32)


def _iph(head: _Head, F: _Fields, b: _Bleed, rng: np.random.Generator) -> list[_Part]:
    grid, h = F.grid, F.grid.h
    if b.centre is None:  # lobar: below the cortex
        c0 = head.pt(0, 0, 8)
        p = _surface(F, c0, b.params["u"])
        r = (3 * b.volume * 1000 / (4 * math.pi)) ** (1 / 3)
        b.centre = p - b.params["u"] * (head.w_sas + b.params["depth"] + 0.6 * r)
    c = b.centre
    r = (3 * b.volume * 1000 / (4 * math.pi)) ** (1 / 3)
    w_oed = b.params["oedema"] * r * min(1.0, max(0.2, b.volume / 6)) + 1.5  # little oedema around tiny bleeds
    ext = 2.0 * r + w_oed + 6
    sl = grid.box(c - ext, c + ext)
    x, y, z = grid.xyz(sl)
    q, _ = np.linalg.qr(b.params["rot"])
    axes = b.params["axes"] / np.prod(b.params["axes"]) ** (1 / 3)
    a = (q @ np.diag(1 / axes) @ q.T).astype(_F32)
    vx, vy, vz = x - _F32(c[0]), y - _F32(c[1]), z - _F32(c[2])
    wx = a[0, 0] * vx + a[0, 1] * vy + a[0, 2] * vz
    wy = a[1, 0] * vx + a[1, 1] * vy + a[1, 2] * vz
    wz = a[2, 0] * vx + a[2, 1] * vy + a[2, 2] * vz
    rr = np.sqrt(wx * wx + wy * wy + wz * wz) + _F32(1e-3)
    f = rr / (1 + _F32(b.params["irreg"]) * _wave_sum(b.params["waves"], wx / rr, wy / rr, wz / rr))
    d = F.d[sl]
    soft = np.clip((d - _F32(head.w_sas + 1)) / _F32(h) + 0.5, 0, 1)
    if b.side:
        soft = soft * np.clip((_F32(b.side) * x - _F32(1.0)) / _F32(h) + 0.5, 0, 1)
    level = _quantile(f, soft > 0.5, b.volume * 1000 / h**3)
    if level is None:
        return []
    frac = (np.clip((_F32(level) - f) / _F32(h) + 0.5, 0, 1) * soft).astype(_F32)
    strength = _F32(0.95 * min(1.0, max(0.3, b.volume / 4)))
    w_loc = _F32(w_oed) * np.clip(1 + _F32(0.6) * F.tex2[sl], 0.3, 2.0)  # irregular, finger-like rim
    oed = (np.clip((_F32(level) + w_loc - f) / (_F32(0.5) * w_loc), 0, 1) * strength * soft).astype(_F32)
    b.params["radius"] = level
    return [_Part(sl, frac, _blood_hu(b, grid, sl, frac, F, rng), oed, b.params["oedema_hu"])]


def _sah(head: _Head, F: _Fields, lab: np.ndarray, b: _Bleed, rng: np.random.Generator) -> list[_Part]:
    grid, h = F.grid, F.grid.h
    seeds = {"basal": (head.pt(0, -12, -19), 75), "perimesencephalic": (head.pt(0, 2, -20), 35),
             "sylvian": (head.pt(b.side * 42, -6, -6), 50), "interhemispheric": (head.pt(0, -35, 25), 55)}
    if b.kind in seeds:
        c, rmax = seeds[b.kind]
    else:
        c0 = head.pt(0, 0, 8)
        c, rmax = _surface(F, c0, b.params["u"], inset=head.w_sas + 3), 45
    b.centre = np.asarray(c)
    sl = grid.box(c - rmax, c + rmax)
    v = lab[sl]
    csf = v == CSF
    m = ndi.binary_dilation(csf, iterations=1) & np.isin(v, (CSF, *_PARENCHYMA))
    x, y, z = grid.xyz(sl)
    dist = np.sqrt((x - _F32(c[0])) ** 2 + (y - _F32(c[1])) ** 2 + (z - _F32(c[2])) ** 2) * (
        1 + _F32(0.3) * F.tex2[sl])
    if b.kind in ("sylvian", "convexity"):
        m &= (_F32(b.side) * x > -2)
    level = _quantile(dist, m, b.volume * 1000 / h**3)
    if level is None:
        return []
    frac = (m * np.clip((_F32(level) - dist) / _F32(2 * h) + 0.5, 0, 1)).astype(_F32)
    return [_Part(sl, frac, _blood_hu(b, grid, sl, frac, F, rng))]


def _ivh(head: _Head, F: _Fields, lab: np.ndarray, b: _Bleed, rng: np.random.Generator) -> list[_Part]:
    grid, h = F.grid, F.grid.h
    sl = grid.box(head.pt(-55, -50, -60), head.pt(55, 70, 40))
    v = lab[sl]
    m = v == VENT
    x, y, z = grid.xyz(sl)
    if b.kind == "layering":
        g = b.params.get("gravity", np.array([0.0, 1.0, 0.0]))
        f = -(x * _F32(g[0]) + y * _F32(g[1]) + z * _F32(g[2]))
        f = np.broadcast_to(f, m.shape)
        if not b.params["both"]:
            m = m & (_F32(b.side) * x > 0)
        width = _F32(h)
    else:
        seeds = {"lateral": head.pt(b.side * 10, 2, 18), "third": head.pt(0, 4, -2), "fourth": head.pt(0, 29, -37)}
        c = seeds[b.params["seed"]] if b.side or b.params["seed"] != "lateral" else seeds["third"]
        f = np.sqrt((x - _F32(c[0])) ** 2 + (y - _F32(c[1])) ** 2 + (z - _F32(c[2])) ** 2)
        width = _F32(2 * h)
    level = _quantile(f, m, b.volume * 1000 / h**3)
    if level is None:
        return []
    frac = (m * np.clip((_F32(level) - f) / width + 0.5, 0, 1)).astype(_F32)
    return [_Part(sl, frac, _blood_hu(b, grid, sl, frac, F, rng))]


def _midline_shift(bleeds: list[_Bleed]) -> tuple[float, float, float]:
    """Net septal shift (mm, + = towards +x) and where it is centred (y, z)."""
    total, wy, wz = 0.0, 0.0, 0.0
    for b in bleeds:
        if b.subtype in ("epidural", "subdural") and b.volume > 8:
            b.shift = -b.side * min(14.0, 0.15 * b.volume**0.9)
        elif b.subtype == "intraparenchymal" and b.volume > 12 and b.side:
            b.shift = -b.side * min(10.0, 0.12 * b.volume**0.9)
        total += b.shift
        if b.shift and b.centre is not None:
            wy += abs(b.shift) * b.centre[1]
            wz += abs(b.shift) * b.centre[2]
    weight = sum(abs(b.shift) for b in bleeds)
    if weight == 0:
        return 0.0, 0.0, 10.0
    return float(np.clip(total, -15, 15)), wy / weight, float(np.clip(wz / weight, -5, 30))


# ------------------------------------------------------------------------------------------------------- label map
class _Deform:
    """Moves internal control points: midline shift and expansion around intraparenchymal bleeds."""

    def __init__(self, shift: tuple[float, float, float], pushes: list[tuple[np.ndarray, float]]):
        self.s, self.yc, self.zc = shift
        self.pushes = pushes

    def m(self, y, z):
        return _F32(self.s) * np.exp(-(((y - _F32(self.yc)) / _F32(45)) ** 2) - (((z - _F32(self.zc)) / _F32(40)) ** 2))

    def __call__(self, p) -> np.ndarray:
        p = np.array(p, float)
        p[0] += float(self.m(p[1], p[2]))
        for c, r in self.pushes:
            v = p - c
            d = float(np.linalg.norm(v))
            if d < 1e-6:
                continue
            k = math.exp(-((d / (2.5 * r)) ** 2))
            p = c + v * ((d**3 + k * r**3) / d**3) ** (1 / 3)
        return p


def _label_map(head: _Head, F: _Fields, deform: _Deform) -> np.ndarray:
    grid = F.grid
    s = head.sc
    x, y, z = grid.xyz()
    d, ts, dout = F.d, F.ts, F.dout
    lab = np.zeros(grid.shape, np.uint8)
    full = (slice(None),) * 3
    # soft tissue, scalp layers and skull
    head_in = dout > 0
    _put(lab, full, head_in, MUSCLE)
    _put(lab, full, head_in & (d < -(ts + 4)) & (F.tex2 > 0.55), FAT)
    _put(lab, full, head_in & (dout < head.skin + head.subcut), SCALP)
    _put(lab, full, head_in & (dout < head.skin + head.subcut) & (F.tex > head.scalp_fat), FAT)
    _put(lab, full, head_in & (dout < head.skin), SKIN)
    e = -d
    shell = (e > 0) & (e < ts)
    _put(lab, full, shell, DIPLOE)
    tab = _F32(head.t_table)
    _put(lab, full, shell & ((e < tab) | (e > ts - tab)), BONE)
    if head.frontal_sinus is not None:
        fw, fh, fd = head.frontal_sinus
        sl = grid.box(head.pt(-fw - 5, -110, -35), head.pt(fw + 5, -40, 40))
        if sl is not None:
            xs, ys_, zs = grid.xyz(sl)
            w = np.exp(-((xs / _F32(fw)) ** 2)) * np.exp(-(((zs + _F32(4 * s[2])) / _F32(fh)) ** 2)) * (ys_ < -40)
            es, tss = e[sl], ts[sl]
            _put(lab, sl, (w > 0.35) & (es > tab + 0.4) & (es < tss - tab - 0.4), SINUS)
    _skull_base(head, F, lab)
    # cranial cavity
    cav = d > 0
    _put(lab, full, cav, CSF)
    zt = head.z_tent(x, y)
    tz = head.tent_zone(x, y)
    infra = (z < zt) & tz
    dzt = z - zt
    depth = d - _F32(head.w_sas) - F.tau
    eff = 1 - _F32(0.85) * np.clip(F.tau / _F32(3), 0, 1)
    sd_loc = _F32(head.sulc_depth) * (_F32(0.6) + _F32(0.7) * F.dv)
    wl = _F32(head.w_sulc) * (_F32(0.45) + _F32(0.55) * np.clip(1 - depth / sd_loc, 0, 1)) * eff
    dg = np.abs(F.G) / F.gn
    rc = np.sqrt(x * x + (y - _F32(head.ys)) ** 2 + (z - _F32(8 * s[2])) ** 2)
    sul = np.where((depth < sd_loc + _F32(head.t_gm)) & (rc > _F32(38 * s[0])), np.maximum(dg - wl, depth - sd_loc),
                   _F32(60))
    mid = deform.m(y, z)
    ih = np.where((_cc_block(head, y, z) > 1) & (z > -25 * s[2]), np.abs(x - mid) - _F32(head.w_ih), _F32(60))
    ax = np.abs(x)
    xins = _F32(36 * s[0])
    yr = y - _F32(head.ys)
    zsyl = _F32(-6 * s[2]) + _F32(0.8) * (yr + _F32(10 * s[1])) + _F32(0.12) * (ax - xins) + _F32(3.5) * F.tex2
    wy = np.clip(1 - ((yr + _F32(8 * s[1])) / _F32(30 * s[1])) ** 2, 0, 1)
    syl = np.where(ax > xins - 1, np.abs(z - zsyl) * _F32(0.9) - (_F32(head.w_syl) * np.sqrt(wy) - 4 * (1 - wy)),
                   _F32(60))
    wi = np.clip(1 - ((yr + _F32(6 * s[1])) / _F32(20 * s[1])) ** 2, 0, 1) * np.clip(
        1 - ((z - _F32(0 * s[2])) / _F32(16 * s[2])) ** 2, 0, 1)
    syl = np.minimum(syl, np.abs(ax - xins) - (_F32(0.6 * head.w_syl) * np.sqrt(wi) - 4 * (1 - wi)))
    tent = np.where(tz, dzt - _F32(1.0), _F32(60))
    dist = np.minimum(np.minimum(np.minimum(depth, sul), np.minimum(ih, syl)), tent)
    supra = cav & ~infra
    _put(lab, full, supra & (dist >= 0), GM)
    _put(lab, full, supra & (dist >= head.t_gm), WM)
    # cerebellum with folia
    dcb = np.minimum(d - _F32(0.7 * head.w_sas), np.where(tz, -dzt - _F32(1.0), _F32(60)))
    cbm = cav & infra
    wf = 0.02 + 0.12 * head.atrophy
    folia = np.cos(_F32(2 * np.pi / head.folia) * dcb + _F32(1.5) * F.G + _F32(1.5) * F.tex2) > _F32(1 - 2 * wf)
    _put(lab, full, cbm & (dcb >= 0), CB_GM)
    _put(lab, full, cbm & (dcb > _F32(13) + 3 * F.tex2), CB_WM)
    _put(lab, full, cbm & folia & (dcb > 0) & (dcb < 7), CSF)
    vermis = cbm & (np.abs(x) < 1.5 + 2 * head.atrophy) & (y > 61 * s[1] + head.ys)
    _put(lab, full, vermis, CSF)
    _deep(head, F, lab, deform, cav)
    return lab


def _skull_base(head: _Head, F: _Fields, lab: np.ndarray) -> None:
    grid, s = F.grid, head.sc
    d, tex, tex2 = F.d, F.tex, F.tex2
    for side in (-1, 1):
        for sl, sdf in _segments(grid, [head.pt(side * 16, -4, -34), head.pt(side * 52, 26, -44)],
                                 [7 * s[0], 11 * s[0]]):
            _put(lab, sl, (sdf < 0) & (d[sl] <= 0), DENSE)
        c = head.pt(side * (head.ax / s[0] - 10), 28, -50)
        sl, n = _ellipsoid(grid, c, [13, 13, 13])
        if sl is not None:
            m = (n < 1) & (d[sl] <= 0)
            _put(lab, sl, m, BONE)
            _put(lab, sl, m & (n < 0.9) & (tex[sl] > _F32(head.mastoid_pneum)), SINUS)
        for sl, sdf in _segments(grid, [head.pt(side * (head.ax / s[0] - 14), 14, -40),
                                        head.pt(side * (head.ax / s[0] + 24), 14, -40)], [3.5, 3.5]):
            _put(lab, sl, (sdf < 0) & (d[sl] <= 0), SINUS)
        arch_x = side * (head.ax + head.t_skull + 5) / s[0]
        for sl, sdf in _segments(grid, [head.pt(arch_x, -44, -39), head.pt(arch_x, 4, -41)], [3.3, 3.0]):
            _put(lab, sl, sdf < 0, BONE)
        sl, n = _ellipsoid(grid, head.pt(side * 45, -68, -40), [10, 8, 10])
        if sl is not None:
            _put(lab, sl, (n < 1) & (d[sl] <= 0), BONE)
            _put(lab, sl, (n < 0.75) & (d[sl] <= 0), DIPLOE)
        # maxillary sinus
        sl, n = _ellipsoid(grid, head.pt(side * 28, -62, -64), [15, 17, 15])
        if sl is not None:
            _put(lab, sl, (n < 1.12) & (d[sl] <= 0), BONE)
            _put(lab, sl, n < 1, SINUS)
            if head.mucosal:
                _put(lab, sl, (n < 1) & (n > 0.8), MUCOSA)
        # orbit: walls, fat, globe, lens, optic nerve, recti
        a, b = _orbit_axis(head, side)
        for sl, sdf in _segments(grid, [a, b], [3.0, 3.0 + 12 * s[0]], margin=3):
            inside = F.dout[sl] > 1.0
            _put(lab, sl, (sdf < 2.2) & (d[sl] <= 0) & inside, BONE)
            _put(lab, sl, (sdf < 0) & inside, FAT)
        g = head.pt(side * 31, -71, -33)
        sl, n = _ellipsoid(grid, g, [12, 12, 12])
        if sl is not None:
            _put(lab, sl, n < 1, MUSCLE)
            _put(lab, sl, n < 1 - 1.0 / 12, VITREOUS)
        sl, n = _ellipsoid(grid, g + [0, -10.5, 0], [4.5, 1.8, 4.5])
        if sl is not None:
            _put(lab, sl, n < 1, LENS)
        for p0, p1, r in ((g + [-side * 2, 11.5, 0], a, 2.2), (a, head.pt(side * 5, -16, -20), 1.8),
                          (head.pt(side * 21, -68, -33), a, 2.3), (head.pt(side * 41, -66, -33), a, 2.3)):
            for sl, sdf in _segments(grid, [p0, p1], [r, r]):
                _put(lab, sl, sdf < 0, NERVE if r != 2.3 else MUSCLE, only=(FAT, CSF, GM, WM, MUSCLE, VITREOUS))
    # sphenoid body and sinus, clivus
    sl, n = _ellipsoid(grid, head.pt(0, -17, -44), np.array([17, 13, 13]) * s)
    if sl is not None:
        _put(lab, sl, (n < 1) & (d[sl] <= 0), BONE)
        _put(lab, sl, (n < 0.85) & (d[sl] <= 0), DIPLOE)
    sl, n = _ellipsoid(grid, head.pt(0, -19, -46), np.array([12, 9, 9]) * s * head.sphenoid_pneum)
    if sl is not None:
        x, _, _ = grid.xyz(sl)
        m = (n < 1) & (d[sl] <= 0)
        _put(lab, sl, m, SINUS)
        _put(lab, sl, m & (np.abs(x - _F32(2)) < 0.7), BONE)
        if head.mucosal:
            _put(lab, sl, m & (n > 0.75), MUCOSA)
    sl = grid.box(head.pt(-16, -25, -70), head.pt(16, 20, -22))
    if sl is not None:
        x, y, z = grid.xyz(sl)
        ncl, _, _ = _vtube(x, y, z, np.array([-68, -24]) * s[2], np.array([12, -16]) * s[1] + head.ys,
                           np.array([13, 13]) * s[0], np.array([5.5, 5.5]) * s[1])
        _put(lab, sl, (ncl < 1.05) & (d[sl] <= 0), BONE)
        _put(lab, sl, (ncl < 0.7) & (d[sl] <= 0), DIPLOE)
    # ethmoid cells, nasal cavity, nasopharynx
    sl = grid.box(head.pt(-13, -86, -52), head.pt(13, -38, -23))
    if sl is not None:
        x, y, z = grid.xyz(sl)
        c = head.pt(0, -62, -38)
        n4 = ((x / _F32(11 * s[0])) ** 4 + ((y - _F32(c[1])) / _F32(22 * s[1])) ** 4
              + ((z - _F32(c[2])) / _F32(12 * s[2])) ** 4) ** 0.25
        m = (n4 < 1) & (d[sl] <= 0)
        _put(lab, sl, m, BONE)
        _put(lab, sl, m & (np.abs(tex[sl]) > 0.35) & (np.abs(x) > 1.0), SINUS)
    sl = grid.box(head.pt(-15, -104, -82), head.pt(15, -40, -44))
    if sl is not None:
        x, y, z = grid.xyz(sl)
        c = head.pt(0, -72, -62)
        n4 = ((x / _F32(13 * s[0])) ** 4 + ((y - _F32(c[1])) / _F32(28 * s[1])) ** 4
              + ((z - _F32(c[2])) / _F32(16 * s[2])) ** 4) ** 0.25
        m = n4 < 1
        _put(lab, sl, m, SINUS)
        _put(lab, sl, m & (np.abs(x) > 6) & (tex2[sl] > 0.2), MUCOSA)
        _put(lab, sl, m & (np.abs(x) < 1.2), BONE)
    for sl, sdf in _segments(grid, [head.pt(0, -45, -66), head.pt(0, -12, -78), head.pt(0, -6, -150)], [7, 8, 7]):
        _put(lab, sl, sdf < 0, SINUS)
    # atlas ring and dens below the foramen magnum
    sl = grid.box(head.pt(-30, -10, -100), head.pt(30, 50, -68))
    if sl is not None:
        x, y, z = grid.xyz(sl)
        yc = _F32(28 * s[1] + head.ys)
        rr = np.sqrt(x * x + (y - yc) ** 2)
        ring = (rr > 10.5 + 1.5) & (rr < 10.5 + 7) & (z < -70 * s[2]) & (z > -95 * s[2])
        _put(lab, sl, ring, BONE)
        _put(lab, sl, ring & (rr > 13.5) & (rr < 15.5), DIPLOE)
        dens = np.sqrt(x * x + (y - _F32(9 * s[1] + head.ys)) ** 2) < 5.5
        _put(lab, sl, dens & (z < -72 * s[2]), BONE)
        _put(lab, sl, np.sqrt(x * x + (y - _F32(9 * s[1] + head.ys)) ** 2) < 3.5, DIPLOE, only=(BONE,))


def _deep(head: _Head, F: _Fields, lab: np.ndarray, deform: _Deform, cav: np.ndarray) -> None:
    """Brainstem, cisterns, deep nuclei, ventricles and choroid plexus."""
    grid, s, a, vs = F.grid, head.sc, head.atrophy, head.vs
    # brainstem with the cisterns around it
    sl = grid.box(head.pt(-30, -15, -150), head.pt(30, 48, 3))
    if sl is not None:
        x, y, z = grid.xyz(sl)
        zs, cys, rxs, rys = head.stem_table()
        n, cy, rmin = _vtube(x, y, z, zs, cys, rxs, rys)
        c = cav[sl]
        _put(lab, sl, (n < 1) & c, STEM)
        ring = (n >= 1) & (n < 1 + _F32(head.w_cist) / rmin) & c & ((y < cy + 0.4 * rmin) | ((z > -20) & (z < -4)))
        _put(lab, sl, ring, CSF)
    for c, axes, tissue in ((head.pt(0, 4, -12), np.array([3, 4, 6]) * (1 + a), CSF),
                            (head.pt(0, -12, -19), np.array([11, 8, 5]) * (1 + 0.4 * a), CSF),
                            (head.pt(0, 29, -3), np.array([7, 5, 5]) * (1 + 0.6 * a), CSF),
                            (head.pt(0, 68, -57), np.array([10, 8, 8]) * (0.5 + 0.8 * a), CSF),
                            (head.pt(0, -14, -18), [7, 2.5, 1.8], NERVE),
                            (head.pt(0, -15, -31), [6, 5, 4.5], GLAND)):
        sl, n = _ellipsoid(grid, c, axes)
        if sl is not None:
            _put(lab, sl, (n < 1) & cav[sl], tissue)
    # deep nuclei
    fh_r = 4.2 * vs * s[0]
    for side in (-1, 1):
        spread = 1 + 0.25 * (vs - 1)
        for c, axes, tissue in (((24 + 2 * (vs - 1), -4, 1), (5.5, 15, 10), STRIATUM),
                                ((19 + 1.5 * (vs - 1), -2, -1), (3.2, 8, 5.5), PALLIDUM),
                                ((9.5 * spread, 11, 3), (8, 14, 9), THALAMUS)):
            sl, n = _ellipsoid(grid, deform(head.pt(side * c[0], c[1], c[2])), np.array(axes) * s)
            if sl is not None:
                _put(lab, sl, n < 1, tissue, only=(GM, WM))
        # lateral ventricle: frontal horn ... occipital horn, temporal horn
        asym = 1 + side * head.vent_asym
        comp = 1.0
        if deform.s and np.sign(deform.s) == -side:  # the bleed side is compressed, the other slightly enlarged
            comp = max(0.45, 1 - 0.045 * abs(deform.s))
        elif deform.s:
            comp = 1 + 0.02 * abs(deform.s)
        main = [(6, -30, 12, 2.5), (8, -20, 15, 4.2), (9, -6, 18, 3.6), (11, 12, 18, 3.8), (17, 27, 10, 5.5),
                (17, 42, 6, 3.2), (13, 53, 6, 1.3)]
        temporal = [(17, 27, 10, 4.0), (27, 22, -4, 3.0), (30, 6, -16, 2.4), (29, -10, -21, 1.4)]
        for pts, power in ((main, 1.0), (temporal, 1.4)):
            p = [deform(head.pt(side * px * spread, py, pz)) for px, py, pz, _ in pts]
            r = [rad * vs**power * s[0] * asym * comp for *_, rad in pts]
            for sl, sdf in _segments(grid, p, r):
                x, _, _ = grid.xyz(sl)
                sep = _F32(side) * (x - _F32(p[0][0] - side * 6 * spread * s[0])) > 0.8
                _put(lab, sl, (sdf < 0) & cav[sl] & sep, VENT, only=(GM, WM, STRIATUM, PALLIDUM, THALAMUS, CSF))
        # caudate head indenting the frontal horn, caudate body along the roof
        cx = 8 * spread * s[0] + fh_r * comp + 3.0
        sl, n = _ellipsoid(grid, deform(head.pt(side * cx / s[0], -16, 10)), np.array([5, 9, 8]) * s)
        if sl is not None:
            _put(lab, sl, n < 1, STRIATUM, only=(GM, WM, VENT))
        body = [deform(head.pt(side * (cx / s[0] + 0.5), -6, 17)), deform(head.pt(side * (cx / s[0] + 1.5), 12, 18))]
        for sl, sdf in _segments(grid, body, [2.2, 1.6]):
            _put(lab, sl, sdf < 0, STRIATUM, only=(GM, WM))
        # choroid plexus glomus in the atrium
        sl, n = _ellipsoid(grid, deform(head.pt(side * 17 * spread, 28, 10)), [3.5, 5, 3])
        if sl is not None:
            _put(lab, sl, n < 1, CHOROID, only=(VENT,))
    # third ventricle, aqueduct, fourth ventricle
    w3 = 0.7 + 2.2 * a * vs / 1.5
    sl, n = _ellipsoid(grid, deform(head.pt(0, 4, -2)), np.array([w3, 13, 8]) * np.array([1, s[1], s[2]]))
    if sl is not None:
        _put(lab, sl, (n < 1) & cav[sl], VENT)
    for sl, sdf in _segments(grid, [head.pt(0, 20, -6), head.pt(0, 25, -28)], [1.0 * vs**0.5, 1.0 * vs**0.5]):
        _put(lab, sl, (sdf < 0) & cav[sl], VENT)
    sl, n = _ellipsoid(grid, head.pt(0, 29, -37), np.array([8, 4, 8]) * s * vs**0.5)
    if sl is not None:
        _put(lab, sl, (n < 1) & cav[sl], VENT)


# ------------------------------------------------------------------------------------------------ intensities & mimics
def _mimics(head: _Head, F: _Fields, lab: np.ndarray, img: np.ndarray, deform: _Deform) -> list[str]:
    grid, h, s = F.grid, F.grid.h, head.sc
    names = []
    # falx: a 1-3 mm dense sheet in the interhemispheric fissure, calcified plaques sometimes
    sl = grid.box([-12 + min(deform.s, 0), -130, -40], [12 + max(deform.s, 0), 120, 100])
    if sl is not None:
        x, y, z = grid.xyz(sl)
        d = F.d[sl]
        mf = deform.m(y, z) * np.clip(d / _F32(25), 0, 1)
        ok = (_cc_block(head, y, z) > 1.25) & ~((z < head.z_tent(x, y)) & head.tent_zone(x, y)) & (z > -28 * s[2])
        frac = np.clip((_F32(head.falx_t / 2) - np.abs(x - mf)) / _F32(h) + 0.5, 0, 1) * ok
        frac = frac * np.clip((d - _F32(0.3)) / _F32(h) + 0.5, 0, 1)
        _paint(img, sl, frac, _F32(head.falx_hu))
        names.append("falx")
        for py, pz, r, hu in head.falx_plaques:
            c = head.pt(0, py, pz)
            c[0] = float(deform.m(c[1], c[2]))
            if grid.value(F.d, c[None])[0] > 3 and _cc_block(head, c[1], c[2]) > 1.3:
                _ball(grid, img, c, [1.3, r, r * 0.8], hu)
                names.append("calcified falx") if "calcified falx" not in names else None
    # tentorium
    sl = grid.box(head.pt(-80, -15, -60), head.pt(80, 100, 5))
    if sl is not None:
        x, y, z = grid.xyz(sl)
        zt = head.z_tent(x, y)
        dn = np.abs(z - zt) / _F32(math.sqrt(1 + 0.35**2 + 0.44**2 / 2))
        notch = (x / _F32(14 * s[0])) ** 2 + ((y - _F32(12 * s[1] + head.ys)) / _F32(26 * s[1])) ** 2 < 1
        frac = np.clip((_F32(head.tent_t / 2) - dn) / _F32(h) + 0.5, 0, 1) * (head.tent_zone(x, y) & ~notch)
        frac = frac * np.clip((F.d[sl] - _F32(0.3)) / _F32(h) + 0.5, 0, 1)
        _paint(img, sl, frac, _F32(head.tent_hu))
        names.append("tentorium")
    # dural venous sinuses: superior sagittal, straight, transverse and sigmoid
    k = head.sinus_r
    c0 = head.pt(0, 0, 0)
    sss = []
    for th in np.radians(np.linspace(-62, 112, 10)):
        sss.append(_surface(F, c0, np.array([0.0, math.sin(th), math.cos(th)]), inset=2.5 * k + 0.8))
    sss_r = list(np.linspace(1.6, 4.2, len(sss)) * k)
    torc = sss[-1]
    straight = [deform(head.pt(0, 32, -2)), torc]
    cpf = head.pt(0, 40, -34)
    tr_l, tr_r = [torc], [torc]
    for phi in np.radians([25, 50, 72, 88]):
        for side, arr in ((1, tr_l), (-1, tr_r)):
            arr.append(_surface(F, cpf, _unit(np.array([side * math.sin(phi), math.cos(phi), 0.12])),
                                inset=3.2 * k + 0.8))
    paths = [(sss, sss_r), (straight, [2.2 * k, 2.8 * k])]
    for side, arr in ((1, tr_l), (-1, tr_r)):
        arr += [head.pt(side * 44, 26, -52), head.pt(side * 40, 22, -64)]
        paths.append((arr, [4.0 * k] * 5 + [3.4 * k, 3.0 * k]))
    for pts, radii in paths:
        for sl, sdf in _segments(grid, pts, radii):
            frac = np.clip(-sdf / _F32(h) + 0.5, 0, 1) * np.clip(F.d[sl] / _F32(h) + 0.5, 0, 1)
            _paint(img, sl, frac, _F32(head.sinus_hu))
    names.append("dense venous sinuses" if head.sinus_hu > 55 else "venous sinuses")
    # calcifications
    spread = 1 + 0.25 * (head.vs - 1)
    where = {"choroid plexus calcification": [(side * 17 * spread, 28, 10) for side in (-1, 1)],
             "pineal calcification": [(0, 24, 1)],
             "globus pallidus calcification": [(side * (17 + 1.5 * (head.vs - 1)), -2, -1) for side in (-1, 1)],
             "dentate calcification": [(side * 14, 46, -38) for side in (-1, 1)]}
    for name, (present, hu, r) in head.calcs.items():
        if present:
            for p in where[name]:
                _ball(grid, img, deform(head.pt(*p)), [r, r * 1.2, r], hu)
            names.append(name)
    return names


def _ball(grid: _Grid, img: np.ndarray, c, radii, hu: float) -> None:
    sl, n = _ellipsoid(grid, c, radii, margin=1.5)
    if sl is not None:
        frac = np.clip((1 - n) * _F32(min(radii)) / _F32(grid.h) + 0.5, 0, 1)
        _paint(img, sl, frac, _F32(hu))


# ------------------------------------------------------------------------------------------------------- imaging
def _image(scan: _Scan, grid: _Grid, img: np.ndarray, fracs: dict[str, np.ndarray]):
    """Resample the canvas into the output slabs: HU and per-subtype blood fractions (slab means)."""
    n, nz, t = scan.n, scan.nz, scan.t
    m = max(1, int(math.ceil(t / grid.h)))
    o = scan.O + scan.D @ (scan.q_c + scan.R @ grid.origin)

    def canvas(arr):
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing((grid.h,) * 3)
        im.SetOrigin(tuple(float(v) for v in o))
        im.SetDirection(tuple(float(v) for v in scan.M.ravel()))
        return im

    sources = [(canvas(img), -1000.0)] + [(canvas(f), 0.0) for f in fracs.values()]
    outs = [np.empty((nz, n, n), _F32) for _ in sources]
    rs = sitk.ResampleImageFilter()
    rs.SetInterpolator(sitk.sitkLinear)
    rs.SetOutputDirection(tuple(float(v) for v in scan.D.ravel()))
    rs.SetOutputSpacing((scan.s, scan.s, t / m))
    chunk = max(1, int(6e6 // (n * n * m)))
    for k0 in range(0, nz, chunk):
        kc = min(chunk, nz - k0)
        rs.SetSize((n, n, kc * m))
        rs.SetOutputOrigin(tuple(float(v) for v in scan.O + scan.D @ np.array([0, 0, k0 * t - t / 2 + t / (2 * m)])))
        for (src, default), out in zip(sources, outs):
            rs.SetDefaultPixelValue(default)
            a = sitk.GetArrayFromImage(rs.Execute(src))
            out[k0:k0 + kc] = a.reshape(kc, m, n, n).mean(1)
    return outs[0], dict(zip(fracs, outs[1:]))


def _scanner(scan: _Scan, head: _Head, ct: np.ndarray, mimics: bool) -> list[str]:
    """The scanner model, in place on the output HU array; returns the names of the artefacts drawn."""
    names = []
    nz, n, s, t = scan.nz, scan.n, scan.s, scan.t
    rng = np.random.default_rng(scan.noise_seed)
    jj, ii = np.mgrid[0:n, 0:n].astype(_F32)
    xmm, ymm = ii * _F32(s), jj * _F32(s)
    body = ct > -300
    area = body.sum((1, 2)).astype(_F32)
    ok = area > 30
    safe = np.maximum(area, 1)
    cx = (body * xmm).sum((1, 2)) / safe
    cy = (body * ymm).sum((1, 2)) / safe
    rad = np.sqrt(safe / np.pi)
    r2 = ((xmm[None] - cx[:, None, None]) ** 2 + (ymm[None] - cy[:, None, None]) ** 2) / (rad[:, None, None] ** 2)
    centre = np.clip(1 - r2, 0, 1) * ok[:, None, None]
    if scan.couch is not None:  # headrest (carbon shell) and couch top, in the air only
        rr, th, hu, gap, dc, hu_c, th_c = scan.couch
        ys_post = np.where(body, ymm[None], -1e9).max(axis=(1, 2))
        xs0 = float(np.average(cx[ok], weights=area[ok])) if ok.any() else n * s / 2
        y_in = float(ys_post.max()) + gap
        dist = np.sqrt((xmm - xs0) ** 2 + (ymm - (y_in - rr)) ** 2)
        ang = np.abs(np.arctan2(xmm - xs0, ymm - (y_in - rr)))
        shell = np.clip((th / 2 - np.abs(dist - rr - th / 2)) / s + 0.5, 0, 1) * (ang < np.radians(60))
        couch = np.clip((th_c / 2 - np.abs(ymm - (y_in + th + dc + th_c / 2))) / s + 0.5, 0, 1) * (
            np.abs(xmm - xs0) < 0.45 * n * s)
        for frac, value in ((shell, hu), (couch, hu_c)):
            ct += (frac * (_F32(value) + 1000))[None] * (ct < -950)
    ct += _F32(scan.offset)
    soft = (ct > -200) & (ct < 300)
    ct -= _F32(scan.cupping) * centre * body
    if mimics:  # beam hardening between the petrous bones and in the posterior fossa
        pet = scan.to_grid(np.array([head.pt(-30, 12, -40), head.pt(30, 12, -40)]))
        a, b = pet[0, :2], pet[1, :2]
        ab = b - a
        lab_ = float(np.linalg.norm(ab)) + 1e-6
        tt = ((xmm - a[0]) * ab[0] + (ymm - a[1]) * ab[1]) / lab_**2
        dperp = np.abs((xmm - a[0]) * ab[1] - (ymm - a[1]) * ab[0]) / lab_
        band = np.exp(-((dperp / 5.0) ** 2)) * np.clip(1 - np.abs(tt - 0.5) * 1.6, 0, 1)
        fan = np.zeros_like(xmm)
        for k, (phi, amp) in enumerate(scan.fan):
            p0 = pet[k % 2, :2]
            dp = np.abs((xmm - p0[0]) * math.sin(phi) - (ymm - p0[1]) * math.cos(phi))
            dd = np.sqrt((xmm - p0[0]) ** 2 + (ymm - p0[1]) ** 2)
            fan += _F32(amp) * np.exp(-((dp / (1.2 * s)) ** 2)) * np.exp(-dd / 70) * (dd > 12)
        zc = float(pet[:, 2].mean())
        w = np.exp(-(((np.arange(nz) * t - zc) / 9.0) ** 2)).astype(_F32)
        if w.max() > 0.05:
            ct -= (w[:, None, None] * _F32(scan.streak) * band[None]) * soft
            ct += (w[:, None, None] * fan[None]) * soft
            names += ["petrous streaks", "posterior fossa beam hardening"]
        if scan.ring:
            rc = np.sqrt((xmm - n * s / 2) ** 2 + (ymm - n * s / 2) ** 2)
            ring = sum(_F32(amp) * np.exp(-(((rc - r0) / (0.6 * s)) ** 2)) for r0, amp in scan.ring)
            ct += ring[None] * (ct > -900)
            names.append("ring artefact")
        if scan.motion is not None:
            k0, nk, alpha, dx, dy, phi, lam, amp = scan.motion  # ghosted contour and streaks through the head
            for k in range(k0, min(nz, k0 + nk)):
                ghost = np.roll(ct[k], (dy, dx), axis=(0, 1))
                streaks = np.zeros_like(xmm)
                for j in range(2 + int(lam) // 3):
                    a = phi + j * np.pi / (2 + int(lam) // 3)
                    off = (j - 1.5) * 9.0
                    dp = np.abs((xmm - cx[k]) * math.sin(a) - (ymm - cy[k]) * math.cos(a) - off)
                    streaks += _F32(amp * (-1) ** j) * np.exp(-((dp / (0.8 * s)) ** 2))
                ct[k] = (1 - alpha) * ct[k] + alpha * ghost + streaks * body[k]
            names.append("motion streaks")
    sig = scan.kernel["sigma_px"]
    blurred = ndi.gaussian_filter(ct, (0, sig, sig))
    if scan.kernel["type"] == "smooth":
        ct[...] = blurred
    else:
        ct += _F32(scan.kernel["amount"]) * np.clip(ct - blurred, -40, 40)  # sharpens detail, tames huge edges
    noise = rng.standard_normal(ct.shape, dtype=_F32)
    sx, sy = scan.noise_corr
    noise = ndi.gaussian_filter(noise, (0, sy, sx))
    noise /= max(float(noise.std()), 1e-6)
    ct += noise * _F32(scan.noise_sd) * (1 + _F32(scan.noise_centre) * centre)
    return names


# ---------------------------------------------------------------------------------------------------------- the case
def make_labelmap_case(seed: int, size: str = "small",
                       subtypes: list[str] | None = None) -> tuple[sitk.Image, sitk.Image, dict]:
    """Make one label-map-first synthetic head CT.

    ``subtypes``: None = random (about 40% negatives, else 1-3 bleeds), ``[]`` = a negative, or a list of names of
    :data:`SUBTYPE_NAMES` (repeats = several bleeds of that subtype; each ends up labelled with at least
    :data:`MIN_VOLUME_ML`). ``size``: ``small`` (96-128 px, 16-24 slices of 5-7 mm) or ``full`` (256/512 px,
    1-5 mm slices). Returns the CT (int16 HU), its label map (uint8, label values of
    ``SMARTNetLib.contracts.classes``, same geometry) and a description.
    """
    return _make_case(seed, size, subtypes)


def _make_case(seed: int, size: str = "small", subtypes: list[str] | None = None,
               mimics: bool = True) -> tuple[sitk.Image, sitk.Image, dict]:
    """:func:`make_labelmap_case`; ``mimics=False`` makes the same case without the hard-negative mimics (tests)."""
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', not {size!r}")
    s_head, s_bleed, s_scan, s_tex = np.random.SeedSequence([int(seed), _SALT]).spawn(4)
    rng_b = np.random.default_rng(s_bleed)
    wanted = _choose_subtypes(rng_b, subtypes)
    head = _Head(np.random.default_rng(s_head))
    scan = _Scan(np.random.default_rng(s_scan), size, head)
    grid = scan.canvas_grid()
    F0 = _fields(head, grid, np.random.default_rng(s_tex))
    plans = [_plan(rng_b, name, head, wanted) for name in wanted]
    for b in plans:
        b.params["gravity"] = scan.gravity
    for _attempt in range(6):
        ct, lab_out, info = _render(head, scan, F0, plans, rng_b, mimics)
        volumes = label_volumes_ml(lab_out)
        short = {b.subtype for b in plans if volumes.get(b.subtype, 0.0) < MIN_VOLUME_ML}
        if not short:
            break
        for b in plans:
            if b.subtype in short:
                b.volume = min(b.volume * 1.8 + 0.5, 150.0)
                if b.subtype in ("subarachnoid", "intraventricular"):
                    b.kind = "basal" if b.subtype == "subarachnoid" else "cast"
    volumes = label_volumes_ml(lab_out)
    info = {"subtypes": sorted(volumes, key=SUBTYPE_NAMES.index), "volume_ml": volumes,
            "requested_subtypes": sorted(set(wanted), key=SUBTYPE_NAMES.index), "host": "labelmap", **info}
    return ct, lab_out, info


def _render(head: _Head, scan: _Scan, F0: _Fields, plans: list[_Bleed], rng_b: np.random.Generator,
            mimics: bool) -> tuple[sitk.Image, sitk.Image, dict]:
    F = _Fields(**{**F0.__dict__, "tau": np.zeros(F0.grid.shape, _F32)})
    grid = F.grid
    parts: list[tuple[_Bleed, list[_Part]]] = []
    for b in plans:  # bleeds that displace the brain are shaped before the anatomy
        if b.subtype in ("epidural", "subdural"):
            parts.append((b, _extra_axial(head, F, b, rng_b)))
        elif b.subtype == "intraparenchymal":
            parts.append((b, _iph(head, F, b, rng_b)))
    deform = _Deform(_midline_shift(plans), [(b.centre, b.params["radius"]) for b in plans
                                             if b.subtype == "intraparenchymal" and "radius" in b.params])
    lab = _label_map(head, F, deform)
    for b in plans:
        if b.subtype == "subarachnoid":
            parts.append((b, _sah(head, F, lab, b, rng_b)))
        elif b.subtype == "intraventricular":
            parts.append((b, _ivh(head, F, lab, b, rng_b)))
    img = head.hu[lab] + head.sd[lab] * F.tex
    img += np.isin(lab, _PARENCHYMA) * (_F32(1.2) * F.tex2)
    names = _mimics(head, F, lab, img, deform) if mimics else []
    fracs: dict[str, np.ndarray] = {}
    for _b, plist in parts:
        for p in plist:
            if p.oedema is not None:
                v = lab[p.sl]
                _paint(img, p.sl, p.oedema * (np.isin(v, _PARENCHYMA) * (1 - _F32(0.4) * (v == GM))), _F32(p.oedema_hu))
    for b, plist in parts:
        b.params["drawn_ml"] = sum(float(p.frac.sum()) for p in plist) * grid.h**3 / 1000
        for p in plist:
            for name, ch in fracs.items():
                if name != b.subtype:
                    ch[p.sl] *= 1 - p.frac
            ch = fracs.setdefault(b.subtype, np.zeros(grid.shape, _F32))
            ch[p.sl] = 1 - (1 - ch[p.sl]) * (1 - p.frac)
            _paint(img, p.sl, p.frac, p.hu)
    if fracs:
        fracs["_bone"] = np.isin(lab, (BONE, DIPLOE, DENSE)).astype(_F32)
    hu, out_fracs = _image(scan, grid, img, fracs)
    bone = out_fracs.pop("_bone", None)
    if bone is not None:
        bone = ndi.gaussian_filter(bone, (0, scan.kernel["sigma_px"], scan.kernel["sigma_px"]))
    names += _scanner(scan, head, hu, mimics)
    if mimics:
        names += ["vertex bone partial volume", "orbital roof and skull-base partial volume"]
    label = np.zeros(hu.shape, np.uint8)
    if out_fracs:
        keys = list(out_fracs)
        stack = np.stack([out_fracs[k] for k in keys])
        best = stack.argmax(0)
        values = np.array([_VALUE[k] for k in keys], np.uint8)
        label = np.where((stack.sum(0) >= 0.5) & (bone < BONE_EXCLUSION), values[best], 0).astype(np.uint8)
    ref = sitk.Image(scan.n, scan.n, scan.nz, sitk.sitkInt16)
    ref.SetSpacing((scan.s, scan.s, scan.t))
    ref.SetOrigin(tuple(float(v) for v in scan.O))
    ref.SetDirection(tuple(float(v) for v in scan.D.ravel()))
    ct = sitk.GetImageFromArray(np.clip(np.rint(hu), -1024, 3071).astype(np.int16))
    ct.CopyInformation(ref)
    lab_img = sitk.GetImageFromArray(label)
    lab_img.CopyInformation(ref)
    info = {"bleeds": [b.describe() for b in plans], "mimics": names, "scanner": scan.describe(),
            "age": round(head.age, 1), "atrophy": round(head.atrophy, 2),
            "midline_shift_mm": round(abs(deform.s), 1)}
    return ct, lab_img, info
