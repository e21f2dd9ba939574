"""Domain randomisation for training data: hard-negative mimics and scanner variety (``style="randomised"``).

A network trained on one generator learns that generator. Following SynthSeg (Billot et al., MedIA 2023),
everything that the label does not determine is randomised far beyond one generator's habits, while HU stay
meaningful; and the dense structures that look like acute blood on every normal scan (ARCHITECTURE.md, "Facts
the generators follow") are painted into most cases, never labelled:

- :func:`plan_mimics` / :meth:`Mimic.paint`: thick or calcified falx, an oblique dense tentorium band,
  hyperdense dural venous sinuses (superior sagittal, straight, transverse), calcification of the choroid
  plexus, pineal, globus pallidus and dentate nuclei. They are placed relative to the host's centre, midline
  and inner table (the ``depth`` field), so the same code serves the procedural and the real head.
- :func:`randomise_scanner`: HU offset, reconstruction kernel (sharpening or blur), correlated noise of random
  level and grain, beam-hardening cupping, streaks, motion ghosts and ring artefacts.
- :func:`real_head_warp`: random scaling and an elastic B-spline warp, so one real head becomes many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.synthetic.phantom import soft

MIMIC_FRACTION = 0.8  # cases that get extra mimics (negatives and positives alike)


@dataclass
class Mimic:
    """One dense non-hemorrhage structure: where (relative to the host centre ``c``) and how dense."""

    kind: str
    hu: float
    params: dict

    def fraction(self, d: np.ndarray, depth: np.ndarray, mid: float, edge: float) -> np.ndarray:
        """Fraction of the structure at points ``d`` (3, N), offsets from the host centre (mm)."""
        x, y, z = d[0] - mid, d[1], d[2]
        pr = self.params
        if self.kind == "falx":
            band = soft(np.abs(x) - pr["half_width"], edge) * (z > pr["z_low"]) * (depth > 1.0)
            return band * (np.abs(y) < pr["length"])
        if self.kind == "tentorium":
            zt = pr["z0"] - pr["slope_x"] * np.abs(x) - pr["slope_y"] * np.clip(y - pr["y0"], 0, None)
            return soft(np.abs(z - zt) - pr["half_width"], edge) * (y > pr["y0"]) * (depth > 1.0)
        if self.kind == "superior_sagittal_sinus":
            width = pr["width"] * np.clip(1 - depth / pr["height"], 0, 1)
            return soft(np.abs(x) - width, edge) * (depth < pr["height"]) * (z > pr["z_low"]) * (depth > -0.5)
        if self.kind == "transverse_sinus":
            return (soft(np.abs(z - pr["z"]) - pr["half_height"], edge) * soft(depth - pr["thickness"], edge)
                    * (y > pr["y_front"]) * (depth > -0.5) * (np.abs(x) > 3.0))
        if self.kind == "straight_sinus":
            a, b = np.asarray(pr["start"], np.float32), np.asarray(pr["end"], np.float32)
            p = np.stack([x, y, z])
            ab = b - a
            t = np.clip(((p - a[:, None]) * ab[:, None]).sum(0) / float(ab @ ab), 0, 1)
            dist = np.sqrt(((p - (a[:, None] + ab[:, None] * t)) ** 2).sum(0))
            return soft(dist - pr["radius"], edge)
        # calcification: a small blob at ``center`` (bilateral when ``pair``)
        frac = np.zeros(d.shape[1], np.float32)
        cx, cy, cz = pr["center"]
        for sx in ((-1, 1) if pr["pair"] else (1,)):
            r = np.sqrt((x - sx * cx) ** 2 + (y - cy) ** 2 + ((z - cz) / 1.2) ** 2)
            frac = np.maximum(frac, soft(r - pr["radius"], edge))
        return frac

    def paint(self, p: np.ndarray, fields: dict[str, np.ndarray], hu: np.ndarray, center: np.ndarray,
              mid: float, edge: float) -> None:
        """Blend the mimic into ``hu`` inside the cranial cavity (the label is left alone: it is not blood)."""
        d = p - np.asarray(center, np.float32)[:, None]
        frac = self.fraction(d, fields["depth"], mid - float(center[0]), edge) * np.clip(fields["cavity"], 0, 1)
        hit = frac > 0.01
        if hit.any():
            hu[hit] = hu[hit] * (1 - frac[hit]) + self.hu * frac[hit]


def plan_mimics(rng: np.random.Generator) -> list[Mimic]:
    """Random mimics of one case (none for about 1 - MIMIC_FRACTION of cases)."""
    if rng.random() > MIMIC_FRACTION:
        return []
    out: list[Mimic] = []
    u = rng.uniform
    if rng.random() < 0.6:
        out.append(Mimic("falx", u(50, 85) if rng.random() < 0.7 else u(100, 300),
                         {"half_width": u(0.6, 2.0), "z_low": u(-5, 20), "length": u(35, 70)}))
    if rng.random() < 0.5:
        out.append(Mimic("tentorium", u(50, 80), {"z0": u(-12, 0), "slope_x": u(0.15, 0.45),
                                                  "slope_y": u(0.1, 0.4), "y0": u(0, 15), "half_width": u(0.6, 1.8)}))
    if rng.random() < 0.55:
        out.append(Mimic("superior_sagittal_sinus", u(50, 78), {"width": u(2.5, 6.0), "height": u(4.0, 9.0),
                                                                "z_low": u(-20, 15)}))
    if rng.random() < 0.45:
        out.append(Mimic("transverse_sinus", u(50, 75), {"z": u(-40, -20), "half_height": u(2.0, 4.5),
                                                         "thickness": u(3.0, 6.0), "y_front": u(25, 45)}))
    if rng.random() < 0.35:
        start = (0.0, u(15, 25), u(-12, -4))
        out.append(Mimic("straight_sinus", u(50, 75), {"start": start, "end": (0.0, u(50, 65), u(-30, -18)),
                                                       "radius": u(1.8, 3.5)}))
    calcifications = (("choroid_plexus", (u(15, 24), u(18, 30), u(2, 12)), True, 0.35),
                      ("pineal", (0.0, u(14, 22), u(-8, 0)), False, 0.35),
                      ("globus_pallidus", (u(14, 20), u(-6, 2), u(-6, 2)), True, 0.2),
                      ("dentate", (u(10, 16), u(38, 48), u(-38, -28)), True, 0.15))
    for name, c, pair, prob in calcifications:
        if rng.random() < prob:
            out.append(Mimic(name, u(90, 450), {"center": c, "pair": pair, "radius": u(1.0, 3.5)}))
    return out


def randomise_scanner(hu: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator) -> dict:
    """Randomise the scanner's look of ``hu`` ((k, j, i) float32, modified in place); returns what was done."""
    done: dict = {}
    body = hu > -300
    sp = float(spacing[0])
    if rng.random() < 0.5:  # sharp (bone-like) or soft reconstruction kernel
        s = rng.uniform(0.6, 1.6) / sp
        blurred = ndimage.gaussian_filter(hu, sigma=(0, s, s))
        amount = rng.uniform(0.3, 1.2)
        hu += amount * (hu - blurred)
        done["sharpen"] = round(amount, 2)
    elif rng.random() < 0.5:
        s = rng.uniform(0.3, 1.0) / sp
        hu[:] = ndimage.gaussian_filter(hu, sigma=(0, s, s))
        done["blur_mm"] = round(s * sp, 2)
    nk, nj, ni = hu.shape
    jj, ii = np.mgrid[0:nj, 0:ni].astype(np.float32)
    if rng.random() < 0.5:  # cupping (beam hardening): a radial profile in-plane
        r2 = ((ii - ni / 2) ** 2 + (jj - nj / 2) ** 2) / (0.25 * ni * nj)
        amount = rng.uniform(-10, 10)
        hu += (amount * r2)[None] * body
        done["cupping"] = round(amount, 1)
    if rng.random() < 0.3:  # streaks through the head on a few slices
        for k in rng.choice(nk, size=max(1, nk // 6), replace=False):
            for _ in range(int(rng.integers(1, 4))):
                ang, j0, i0 = rng.uniform(0, np.pi), rng.uniform(0, nj), rng.uniform(0, ni)
                dist = np.abs(np.cos(ang) * (jj - j0) - np.sin(ang) * (ii - i0))
                hu[k] += rng.uniform(-30, 30) * np.exp(-0.5 * (dist / rng.uniform(0.7, 2.0)) ** 2) * body[k]
        done["streaks"] = True
    if rng.random() < 0.15:  # motion: a shifted ghost of a few slices
        for k in rng.choice(nk, size=max(1, nk // 5), replace=False):
            shift = rng.uniform(-4, 4, size=2)
            w = rng.uniform(0.1, 0.35)
            hu[k] = (1 - w) * hu[k] + w * ndimage.shift(hu[k], shift, order=1, mode="nearest")
        done["motion"] = True
    if rng.random() < 0.1:  # ring artefacts around the isocentre
        r = np.sqrt((ii - ni / 2) ** 2 + (jj - nj / 2) ** 2)
        rings = sum(rng.uniform(-15, 15) * np.exp(-0.5 * ((r - rng.uniform(5, ni / 2)) / 0.8) ** 2) for _ in range(3))
        hu += rings[None] * body
        done["rings"] = True
    grain = rng.uniform(0.0, 1.5)
    level = rng.uniform(0.0, 8.0)
    noise = rng.standard_normal(hu.shape).astype(np.float32)
    if grain > 0.1:
        noise = ndimage.gaussian_filter(noise, sigma=(0, grain, grain))
    noise *= level / max(float(noise.std()), 1e-6)
    hu += noise
    offset = rng.uniform(-6, 6)
    hu += offset
    done.update({"extra_noise_sd": round(level, 1), "noise_grain_px": round(grain, 2), "hu_offset": round(offset, 1)})
    return done


def real_head_warp(reference: sitk.Image, affine: sitk.AffineTransform,
                   rng: np.random.Generator) -> tuple[sitk.Transform, dict]:
    """``affine`` (output -> host) with a random anisotropic scaling about the head and an elastic warp."""
    scale = rng.uniform(0.88, 1.12, size=3)
    matrix = np.array(affine.GetMatrix()).reshape(3, 3) @ np.diag(1 / scale)
    warped = sitk.AffineTransform(affine)
    warped.SetMatrix([float(v) for v in matrix.ravel()])
    composite = sitk.CompositeTransform([warped])
    amplitude = rng.uniform(1.0, 5.0)
    bspline = sitk.BSplineTransformInitializer(reference, [4, 4, 4])
    params = rng.normal(0, amplitude, size=len(bspline.GetParameters()))
    bspline.SetParameters([float(v) for v in params])
    composite.AddTransform(bspline)  # applied first, in output space
    return composite, {"scale": [round(float(s), 3) for s in scale], "elastic_mm": round(float(amplitude), 2)}


def tissue_contrast(hu: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> float:
    """Scale grey-white contrast around 30 HU inside ``brain`` (in place); returns the factor."""
    factor = rng.uniform(0.75, 1.3)
    soft_tissue = brain & (hu > -20) & (hu < 100)
    hu[soft_tissue] = 30 + (hu[soft_tissue] - 30) * factor
    return float(factor)
