"""Hemorrhages of the five subtypes, planned on a host head and painted into it.

Imitates FDA DIDSR InSilicoICH: bleeds are placed relative to the host's own anatomy (inner table,
parenchyma, sulci and cisterns, ventricles), shapes are noise-deformed, densities are sampled around
the BHSD peaks, and parenchymal / extra-axial bleeds push the brain away (mass effect).

A host (procedural or real) offers sites (``surface_site``, ``parenchyma_site``, ``ventricle_site``,
``cistern_site``, ``sulcal_site``, ``midline_x``) and, at any set of points, the fields
``depth`` (mm below the inner table), ``cavity``, ``brain``, ``csf`` (subarachnoid spaces, sulci,
fissures and cisterns) and ``ventricle`` (fractions in [0, 1]). Painting is in plan order; where two bleeds
overlap, the later one wins the label (IPH, then IVH, SAH, SDH, EDH: see ``PAINT_ORDER``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from SMARTNetLib.contracts.classes import get_class
from SMARTNetLib.synthetic.noise import SmoothNoise
from SMARTNetLib.synthetic.phantom import ellipsoid_sd, rotation_matrix, soft

# BHSD peak HU per subtype (ARCHITECTURE.md, "Facts the generators follow"); the spread is the per-bleed
# standard deviation of the mean.
BLOOD_HU = {"epidural": 60.0, "intraparenchymal": 52.0, "intraventricular": 42.0, "subarachnoid": 46.0,
            "subdural": 51.0}
BLOOD_SPREAD = 5.0
PAINT_ORDER = ("intraparenchymal", "intraventricular", "subarachnoid", "subdural", "epidural")


@dataclass
class Bleed:
    """One hemorrhage: subtype, where, how big, how dense."""

    subtype: str
    center: np.ndarray  # mm, host frame
    reach: float  # radius (mm) of the sphere around ``center`` outside which nothing is painted
    hu: float
    params: dict = field(default_factory=dict)
    push: float = 0.0  # equivalent radius (mm) of the mass pushing the brain away; 0 = no mass effect

    @property
    def label(self) -> int:
        return get_class(self.subtype).label_value

    def displacement(self, p: np.ndarray) -> np.ndarray:
        """Mass effect at points ``p``: radial push away from the bleed (mm, (3, N))."""
        if self.push <= 0:
            return np.zeros_like(p)
        d = p - self.center[:, None]
        rho = np.sqrt((d**2).sum(0)) + 1e-3
        r = self.push
        mag = r**3 / (3 * np.maximum(rho, r) ** 2) * np.exp(-((rho / (5 * r)) ** 2))
        return (d / rho * mag).astype(np.float32)

    def fractions(self, p: np.ndarray, f: dict[str, np.ndarray], edge: float, texture: SmoothNoise):
        """(blood fraction, blood HU, oedema fraction) at points ``p`` (already restricted to ``reach``)."""
        kind = self.subtype
        hu = self.hu + 3.0 * texture(p)
        oedema = None
        if kind in ("epidural", "subdural"):
            s, nrm = self.center, self.params["normal"]
            d = p - s[:, None]
            along = nrm @ d
            lat = d - np.outer(nrm, along)
            e1 = self.params["axis1"]
            a1 = e1 @ lat
            a2 = np.sqrt(np.maximum((lat**2).sum(0) - a1**2, 0))
            rho = np.sqrt((a1 / self.params["r1"]) ** 2 + (a2 / self.params["r2"]) ** 2)
            rho = rho * (1 + 0.12 * texture(p * 0.5))
            prof = np.clip(1 - rho**2, 0, None) ** self.params["power"]
            thick = self.params["thickness"] * prof
            depth = f["depth"]
            frac = soft(depth - thick, edge) * soft(-depth, edge) * (rho < 1) * (thick > 0.2)
            if self.params.get("side"):
                frac *= soft(-self.params["side"] * (p[0] - self.params["midline"]) + 0.5, edge)
        elif kind == "intraparenchymal":
            rot = self.params["rotation"]
            sd = ellipsoid_sd(p, self.center, self.params["radii"], rot)
            sd = sd - self.params["lobulation"] * np.mean(self.params["radii"]) * texture(p * 1.6)
            frac = soft(sd, edge) * np.clip(f["cavity"], 0, 1)
            oedema = soft(sd - self.params["oedema"], self.params["oedema"] * 0.6) * (1 - frac) * f["brain"]
            hu = hu + 4.0 * np.clip(-sd / max(self.params["radii"]), 0, 1)  # clot retraction: denser core
        elif kind == "intraventricular":
            region = soft(np.sqrt(((p - self.center[:, None]) ** 2).sum(0)) - self.params["radius"], 4.0)
            if "level" in self.params:
                g = self.params["gravity"]
                region = region * (1 - soft(self.params["level"] - g @ p, edge))  # dependent side: g @ p > level
            frac = np.clip(1.6 * f["ventricle"] * region, 0, 1)  # clot fills the partial-volume rim
        else:  # subarachnoid
            dist = np.sqrt(((p - self.center[:, None]) ** 2).sum(0))
            region = soft(dist * (1 + 0.3 * texture(p * 0.4)) - self.params["radius"], 6.0)
            frac = np.clip(1.6 * f["csf"] * region * self.params["fill"], 0, 1)
        return frac.astype(np.float32), hu.astype(np.float32), oedema

    def paint(self, p: np.ndarray, f: dict[str, np.ndarray], hu: np.ndarray, label: np.ndarray, edge: float,
              texture: SmoothNoise) -> None:
        """Blend blood (and oedema) into ``hu``; set ``label`` where the voxel is at least half blood."""
        near = np.flatnonzero(((p - self.center[:, None]) ** 2).sum(0) < self.reach**2)
        if near.size == 0:
            return
        pn = p[:, near]
        fn = {k: v[near] for k, v in f.items()}
        frac, blood, oedema = self.fractions(pn, fn, edge, texture)
        h = hu[near]
        if oedema is not None:
            h = h * (1 - oedema) + np.minimum(h, self.params["oedema_hu"]) * oedema
        h = h * (1 - frac) + blood * frac
        hu[near] = h
        lab = label[near]
        lab[frac >= 0.5] = self.label
        label[near] = lab

    def describe(self) -> dict:
        out = {"subtype": self.subtype, "center_mm": [round(float(c), 1) for c in self.center],
               "hu": round(float(self.hu), 1)}
        for k in ("site", "kind"):
            if k in self.params:
                out[k] = self.params[k]
        return out


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _tangent(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    v -= normal * (v @ normal)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _blood_hu(rng: np.random.Generator, subtype: str) -> float:
    return float(np.clip(rng.normal(BLOOD_HU[subtype], BLOOD_SPREAD), 38, 85))


def plan_bleed(rng: np.random.Generator, host, subtype: str, gravity: np.ndarray) -> Bleed:
    """One bleed of ``subtype`` at a characteristic place of ``host``, with a random size."""
    hu = _blood_hu(rng, subtype)
    if subtype in ("epidural", "subdural"):
        s, n = host.surface_site(rng)
        if subtype == "epidural":  # small biconvex lens, confined by sutures
            r1 = _log_uniform(rng, 10, 45)
            r2 = r1 * rng.uniform(0.7, 1.0)
            thick, power = min(r1 * rng.uniform(0.3, 0.55), 32.0), 0.5
        else:  # wide thin crescent along the convexity
            r1 = _log_uniform(rng, 22, 85)
            r2 = r1 * rng.uniform(0.55, 0.9)
            thick, power = _log_uniform(rng, 1.5, 18.0) * min(1.0, r1 / 40), 0.35
        side = float(np.sign(s[0] - host.midline_x)) if abs(s[0] - host.midline_x) > 8 else 0.0
        vol = 2 / 3 * np.pi * r1 * r2 * thick / 1000
        params = {"normal": n, "axis1": _tangent(n, rng), "r1": r1, "r2": r2, "thickness": thick, "power": power,
                  "side": side, "midline": host.midline_x}
        push = (3 * vol * 1000 / (4 * np.pi)) ** (1 / 3) * 0.8 if vol > 5 else 0.0
        return Bleed(subtype, s.astype(np.float32), max(r1, r2) * 1.2 + thick, hu, params, push)
    if subtype == "intraparenchymal":
        c, site = host.parenchyma_site(rng)
        vol = _log_uniform(rng, 0.3, 80.0)
        if site != "lobar":
            vol = min(vol, 45.0)
        r = (3 * vol * 1000 / (4 * np.pi)) ** (1 / 3)
        radii = r * rng.uniform(0.75, 1.3, size=3)
        radii *= r / np.prod(radii) ** (1 / 3)
        rot = rotation_matrix(*rng.uniform(-np.pi, np.pi, 3))
        oed = rng.uniform(1.5, 3.0) + 0.15 * r
        params = {"radii": radii, "rotation": rot, "lobulation": rng.uniform(0.1, 0.35), "oedema": oed,
                  "oedema_hu": rng.uniform(12, 19), "site": site}
        return Bleed(subtype, c, float(radii.max()) * 1.6 + oed + 4, hu, params, push=r + oed / 2 if r > 5 else 0)
    if subtype == "intraventricular":
        c = host.ventricle_site(rng)
        if rng.random() < 0.6:  # layering in the dependent (posterior in a supine patient) horns
            g = np.asarray(gravity, np.float32)
            radius = rng.uniform(25, 45)
            level = float(g @ c - rng.uniform(0, 8))
            return Bleed(subtype, c, radius + 8, hu, {"radius": radius, "gravity": g, "level": level,
                                                       "kind": "layering"})
        radius = _log_uniform(rng, 6, 30)
        return Bleed(subtype, c, radius + 8, hu, {"radius": radius, "kind": "cast"})
    if subtype == "subarachnoid":
        kind = rng.choice(["basal", "convexity", "sylvian"], p=[0.4, 0.35, 0.25])
        if kind == "basal":
            c, radius = host.cistern_site(rng), rng.uniform(15, 45)
        elif kind == "sylvian":
            c, radius = host.sylvian_site(rng), rng.uniform(12, 30)
        else:
            c, radius = host.sulcal_site(rng), rng.uniform(8, 28)
        return Bleed(subtype, c, radius * 1.5 + 8, hu, {"radius": radius, "fill": rng.uniform(0.85, 1.2),
                                                       "kind": str(kind)})
    raise ValueError(f"unknown subtype {subtype!r}")


def plan_bleeds(rng: np.random.Generator, host, subtypes: list[str], gravity: np.ndarray) -> list[Bleed]:
    """Bleeds for ``subtypes`` (repeats allowed), in paint order."""
    bleeds = [plan_bleed(rng, host, s, gravity) for s in subtypes]
    return sorted(bleeds, key=lambda b: PAINT_ORDER.index(b.subtype))


def random_subtypes(rng: np.random.Generator) -> list[str]:
    """Subtypes of a positive case: one to four bleeds, mixes as seen clinically."""
    from SMARTNetLib.contracts.classes import SUBTYPE_NAMES

    n = int(rng.choice([1, 2, 3, 4], p=[0.45, 0.3, 0.17, 0.08]))
    weights = np.array([0.12, 0.26, 0.16, 0.22, 0.24])  # EDH rarer
    picks = list(rng.choice(SUBTYPE_NAMES, size=n, p=weights / weights.sum()))
    if "intraparenchymal" in picks and rng.random() < 0.25 and "intraventricular" not in picks:
        picks.append("intraventricular")  # rupture into the ventricles
    return [str(s) for s in picks]


def total_displacement(bleeds: list[Bleed], p: np.ndarray) -> np.ndarray:
    d = np.zeros_like(p)
    for b in bleeds:
        if b.push > 0:
            d += b.displacement(p)
    return d


def septum_shift_mm(bleeds: list[Bleed], midline_x: float = 0.0) -> float:
    """Truth for midline shift: the largest displacement (signed, head frame x, + = the patient's left) of the
    septum pellucidum of a procedural head by the bleeds' mass effect, along its anterior-posterior extent at the
    level of the foramina of Monro (the septum is the plane x = ``midline_x`` of the undisplaced head)."""
    q = np.stack([np.full(21, midline_x), np.linspace(-30.0, 12.0, 21), np.full(21, 12.0)]).astype(np.float32)
    p = q.copy()
    for _ in range(30):  # p = q + D(p): the point whose pull-back (q = p - D(p)) is the septum
        p = q + total_displacement(bleeds, p)
    shifts = p[0] - midline_x
    return float(shifts[int(np.argmax(np.abs(shifts)))])
