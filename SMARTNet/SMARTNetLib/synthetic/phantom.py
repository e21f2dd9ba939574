"""Procedural head anatomy, evaluated analytically at any physical points.

Coordinates are the head's canonical frame in mm, LPS-like: +x patient left, +y posterior, +z superior,
origin near the centre of the cranial cavity. Every structure is an implicit shape (deformed ellipsoids,
radial shells around the inner table, noise-defined sheets for sulci), so the head can be sampled
directly on a scanner grid at its own resolution: there is no canonical voxel volume to resample. Edges
are linear ramps one voxel wide, which gives partial volume in-plane; the scanner module averages
sub-slices for partial volume across thick slices.

HU follow ARCHITECTURE.md, "Facts the generators follow": CSF 0-15, white matter 20-35, grey matter 30-45,
calcification > 100, bone 600-2000 (diploe lower than the tables), air -1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from SMARTNetLib.synthetic.noise import SmoothNoise


def soft(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """Inside fraction of a boundary at ``signed_distance`` (mm, negative inside) with a ramp ``width`` wide."""
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0).astype(np.float32)


def ellipsoid_sd(p: np.ndarray, center, radii, rotation: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid; ``p`` is (3, N)."""
    d = p - np.asarray(center, np.float32)[:, None]
    if rotation is not None:
        d = rotation.T.astype(np.float32) @ d
    r = np.asarray(radii, np.float32)[:, None]
    norm = np.sqrt(((d / r) ** 2).sum(0))
    return (norm - 1.0) * float(np.min(radii))


def rotation_matrix(rx: float = 0.0, ry: float = 0.0, rz: float = 0.0) -> np.ndarray:
    """Rotation about x, then y, then z (radians)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class TissueHU:
    """HU of the tissues of one head (sampled per head for variety)."""

    csf: float
    grey: float
    white: float
    skin: float
    fat: float
    muscle: float
    table: float
    diploe: float
    dura: float
    falx_calcified: bool

    @classmethod
    def sample(cls, rng: np.random.Generator) -> TissueHU:
        white = rng.uniform(24, 31)
        return cls(csf=rng.uniform(3, 11), grey=white + rng.uniform(7, 12), white=white, skin=rng.uniform(30, 50),
                   fat=rng.uniform(-110, -70), muscle=rng.uniform(45, 60), table=rng.uniform(1400, 1900),
                   diploe=rng.uniform(600, 900), dura=rng.uniform(55, 80), falx_calcified=bool(rng.random() < 0.25))


class ProceduralHead:
    """One random adult head. ``evaluate`` returns HU and the fields that bleeds are painted into."""

    midline_x = 0.0

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        s = rng.uniform(0.9, 1.06)
        self.axes = np.array([66 * s * rng.uniform(0.95, 1.05), 84 * s * rng.uniform(0.96, 1.04), 64 * s])
        self.bumps = rng.normal(0, 0.025, size=(4, 4)).astype(np.float32)  # low-order shape noise
        self.bump_dirs = rng.normal(size=(4, 3))
        self.bump_dirs /= np.linalg.norm(self.bump_dirs, axis=1, keepdims=True)
        self.skull = rng.uniform(5.5, 8.0)
        self.scalp = rng.uniform(4.0, 7.0)
        self.atrophy = float(rng.choice([rng.uniform(0.0, 0.4), rng.uniform(0.4, 1.0)], p=[0.65, 0.35]))
        self.csf_gap = 1.0 + 2.5 * self.atrophy
        self.vent_scale = 1.0 + 0.7 * self.atrophy + rng.uniform(-0.1, 0.1)
        self.hu = TissueHU.sample(rng)
        self.sulci = SmoothNoise(rng, scale_mm=rng.uniform(16, 22))
        self.sulci2 = SmoothNoise(rng, scale_mm=9.0)
        self.folia = SmoothNoise(rng, scale_mm=6.0)
        self.wobble = SmoothNoise(rng, scale_mm=14.0)
        self.texture = SmoothNoise(rng, scale_mm=5.0)
        # confounders: choroid plexus and pineal calcification, dense falx, inner-table cupping
        self.calcs = []
        if rng.random() < 0.75:
            r = rng.uniform(1.5, 4.0)
            for side in (-1, 1):
                if rng.random() < 0.9:
                    self.calcs.append(((side * 19 * self.vent_scale ** 0.3, 24, 8), r * rng.uniform(0.7, 1.1),
                                       rng.uniform(150, 500)))
        if rng.random() < 0.6:
            self.calcs.append(((0.0, 19.0, -4.0), rng.uniform(1.5, 3.5), rng.uniform(150, 400)))
        self.cupping = rng.uniform(0, 6)

    # --- skull and cavity ---------------------------------------------------------------------
    def inner_radius(self, u: np.ndarray) -> np.ndarray:
        """Distance (mm) from the origin to the inner table along unit directions ``u`` (3, N)."""
        a, b, c = (float(x) for x in self.axes)
        ux, uy, uz = np.asarray(u, np.float32)
        a_eff = a * (1 + 0.06 * uy)  # wider at the back
        b_eff = np.where(uy < 0, np.float32(b * 0.96), np.float32(b))
        r = 1.0 / np.sqrt((ux / a_eff) ** 2 + (uy / b_eff) ** 2 + (uz / c) ** 2)
        proj = self.bump_dirs.astype(np.float32) @ np.stack([ux, uy, uz])
        w = self.bumps
        bump = (w[:, 0:1] * proj + w[:, 1:2] * (proj * proj - 0.33) + w[:, 2:3] * proj * proj * proj).sum(0)
        return (r * (1 + bump)).astype(np.float32)

    def floor_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height (mm) of the cranial floor: anterior, middle and posterior fossae."""
        # orbital roofs bulge upwards on either side of the cribriform plate and rise anteriorly
        ant = -26.0 + 0.12 * np.clip(-(y + 32), 0, None) + 6 * np.exp(-(((np.abs(x) - 28) / 13) ** 2))
        mid = -40.0 - 0.05 * np.abs(x)
        sella = -28.0
        post = -58.0 + 0.004 * x**2
        lateral = _smoothstep((np.abs(x) - 12) / 10)
        middle = sella + (mid - sella) * lateral
        t1 = _smoothstep((y + 32) / 10)  # anterior -> middle fossa
        t2 = _smoothstep((y - 2) / 14)  # middle -> posterior fossa
        z = ant + (middle - ant) * t1
        return (z + (post - z) * t2).astype(np.float32)

    def tentorium_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height (mm) of the tentorium (tent over the cerebellum)."""
        return (-6.0 - 0.28 * np.abs(x) - 0.22 * np.clip(y - 25, 0, None)).astype(np.float32)

    def cavity_depth(self, p: np.ndarray) -> np.ndarray:
        """Approximate depth (mm) below the inner table / cranial floor; negative outside the cavity."""
        r = np.sqrt((p**2).sum(0)) + 1e-6
        radial = self.inner_radius(p / r) - r
        return np.minimum(radial, p[2] - self.floor_z(p[0], p[1]))

    # --- sites for bleeds ---------------------------------------------------------------------
    def surface_site(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A point on the inner table of the convexity and the inward normal there."""
        while True:
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            if u[2] > -0.05 and abs(u[0]) > 0.25:
                break
        r = float(self.inner_radius(u[:, None].astype(np.float32))[0])
        return (u * r).astype(np.float32), (-u).astype(np.float32)

    def parenchyma_site(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A typical IPH location: basal ganglia, thalamus, lobar or cerebellar."""
        side = float(rng.choice([-1, 1]))
        kind = rng.choice(["basal_ganglia", "thalamus", "lobar", "cerebellum"], p=[0.35, 0.2, 0.35, 0.1])
        if kind == "basal_ganglia":
            c = (side * rng.uniform(20, 26), rng.uniform(-14, 2), rng.uniform(-6, 6))
        elif kind == "thalamus":
            c = (side * rng.uniform(9, 13), rng.uniform(2, 9), rng.uniform(-4, 3))
        elif kind == "cerebellum":
            c = (side * rng.uniform(15, 30), rng.uniform(35, 50), rng.uniform(-45, -32))
        else:
            u = np.array([side * rng.uniform(0.5, 1), rng.uniform(-1, 1), rng.uniform(0.0, 0.8)])
            u /= np.linalg.norm(u)
            r = float(self.inner_radius(u[:, None].astype(np.float32))[0])
            c = tuple(u * (r - rng.uniform(18, 28)))
        return np.asarray(c, np.float32), str(kind)

    def ventricle_site(self, rng: np.random.Generator) -> np.ndarray:
        side = float(rng.choice([-1, 1]))
        v = self.vent_scale
        return np.array([side * 16 * v**0.3, rng.uniform(5, 25), rng.uniform(2, 10)], np.float32)

    def cistern_site(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(-5, 5), rng.uniform(-16, -6), rng.uniform(-24, -16)], np.float32)

    def sylvian_site(self, rng: np.random.Generator) -> np.ndarray:
        side = float(rng.choice([-1, 1]))
        return np.array([side * rng.uniform(34, 42), rng.uniform(-12, 4), rng.uniform(-16, -4)], np.float32)

    def sulcal_site(self, rng: np.random.Generator) -> np.ndarray:
        s, n = self.surface_site(rng)
        return s + n * rng.uniform(4, 10)

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, p: np.ndarray, q: np.ndarray, edge: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """HU at points ``p`` (3, N) and bleed fields; ``q`` = brain points after mass effect (pull-back)."""
        n = p.shape[1]
        hu = np.full(n, -1000.0, np.float32)
        fields = {k: np.zeros(n, np.float32) for k in ("cavity", "brain", "csf", "ventricle", "base_bone")}
        fields["depth"] = np.full(n, -100.0, np.float32)
        # Head envelope: above z=-20 a shell around the cavity; below, its z=-20 section extruded downwards.
        r = np.sqrt((p**2).sum(0)) + 1e-6
        pe = p.copy()
        pe[2] = np.maximum(pe[2], -20.0)
        re = np.sqrt((pe**2).sum(0)) + 1e-6
        out_d = re - self.inner_radius(pe / re)
        idx = np.flatnonzero(out_d < self.skull + self.scalp + 8 + 2 * edge)  # everything else is air
        if idx.size:
            h_sub, f_sub = self._head(p[:, idx], q[:, idx], edge, r[idx], out_d[idx], pe[:, idx], re[idx])
            hu[idx] = h_sub
            for k, v in f_sub.items():
                fields[k][idx] = v
        return hu, fields

    def _head(self, p, q, edge, r, out_d, pe, re):
        h = self.hu
        n = p.shape[1]
        hu = np.full(n, -1000.0, np.float32)
        fields = {k: np.zeros(n, np.float32) for k in ("cavity", "brain", "csf", "ventricle", "base_bone")}
        rin = self.inner_radius(p / r)
        fz = self.floor_z(p[0], p[1])
        depth = np.minimum(rin - r, p[2] - fz)
        fields["depth"] = depth
        head = soft(out_d - (self.skull + self.scalp), edge)
        lateral = np.clip((np.abs(pe[0]) / re - 0.55) * 3, 0, 1) * np.clip(1 - (pe[2] / re + 0.1) * 2.5, 0, 1)
        muscle_t = 7.0 * lateral  # temporalis
        head = np.maximum(head, soft(out_d - (self.skull + self.scalp + muscle_t), edge))
        scalp_depth = out_d - self.skull
        scalp_val = np.where(scalp_depth > self.scalp * 0.55 + muscle_t, h.skin, h.fat).astype(np.float32)
        scalp_val = np.where((scalp_depth < muscle_t + 0.5) & (muscle_t > 1), h.muscle, scalp_val)
        hu = hu * (1 - head) + scalp_val * head

        # Face / neck below the cranial floor: soft tissue with sinuses and orbits.
        below = (p[2] < -14) & (out_d < self.skull)
        if below.any():
            pb = p[:, below]
            val = np.full(pb.shape[1], h.muscle - 10, np.float32)
            for sx in (-1, 1):
                orbit = ellipsoid_sd(pb, (sx * 31, -self.axes[1] * 0.78, -36), (17, 20, 16))
                val = np.where(orbit < 0, h.fat, val)
                globe = ellipsoid_sd(pb, (sx * 31, -self.axes[1] * 0.86, -36), (12, 12, 12))
                val = val * (1 - soft(globe, edge)) + 12 * soft(globe, edge)
                mastoid = ellipsoid_sd(pb, (sx * 48, 18, -52), (9, 12, 10))
                cells = (self.folia(pb) > 0.3) & (mastoid < 0)
                val = np.where(cells, -900, val)
            sinus = np.minimum(ellipsoid_sd(pb, (0, -8, -52), (14, 12, 11)),  # sphenoid
                               ellipsoid_sd(pb, (0, -58, -48), (22, 14, 14)))  # ethmoid / maxillary
            val = val * (1 - soft(sinus, edge)) - 950 * soft(sinus, edge)
            hu[below] = hu[below] * (1 - head[below]) + val * head[below]

        # Skull: inner table, diploe, outer table; skull base below the cranial floor.
        thick = self.skull * (1 + 0.25 * np.clip(p[1] / 80, 0, 1))
        bone_d = -depth  # mm outside the cavity
        radial_out = r - rin
        in_bone = soft(bone_d - thick, edge) * (1 - soft(bone_d, edge))
        base = (p[2] - fz < 0) & (radial_out < thick + 2)
        base_depth = fz - p[2]
        in_base = base * soft(base_depth - 4.0 - 3 * np.abs(np.sin(p[0] / 9)), edge) * soft(-base_depth, edge)
        in_bone = np.maximum(in_bone, in_base.astype(np.float32))
        table_w = 1.6
        tab = np.clip(np.minimum(bone_d, thick - bone_d) / table_w, 0, 1)
        bone_val = h.table + (h.diploe - h.table) * _smoothstep(tab) + 120 * self.texture(p)
        # petrous ridges: very dense bone running antero-medially at the middle/posterior fossa border
        for sx in (-1, 1):
            rot = rotation_matrix(rz=sx * np.deg2rad(-50))
            pet = ellipsoid_sd(p, (sx * 32, 6, -44), (9, 24, 7), rot)
            pet_f = soft(pet, edge)
            in_bone = np.maximum(in_bone, pet_f)
            bone_val = bone_val * (1 - pet_f) + 1900 * pet_f
            fields["base_bone"] += pet_f
        bone_val = np.where(in_base > 0, np.maximum(bone_val, h.diploe + 300), bone_val)
        fields["base_bone"] = np.maximum(fields["base_bone"], (in_base > 0) * np.float32(1.0))
        bone_val = np.clip(bone_val, 600, 2000)
        hu = hu * (1 - in_bone) + bone_val.astype(np.float32) * in_bone

        # Cranial cavity.
        cav = soft(-depth, edge) * (1 - in_bone)
        idx = np.flatnonzero(cav > 0)
        fields["cavity"] = cav
        if idx.size:
            val, f = self._brain(p[:, idx], q[:, idx], depth[idx], edge)
            c = cav[idx]
            hu[idx] = hu[idx] * (1 - c) + val * c
            for k, v in f.items():
                fields[k][idx] = v * c
        # cupping / beam hardening next to the inner table (a pseudo-subdural confounder)
        rim = np.exp(-np.clip(depth, 0, None) / 2.5) * (depth > 0)
        hu += (self.cupping * rim).astype(np.float32)
        return hu, fields

    def _brain(self, p: np.ndarray, q: np.ndarray, depth_p: np.ndarray, edge: float):
        """Intracranial content at points ``p`` whose tissue comes from (mass-effect warped) points ``q``."""
        h = self.hu
        n = p.shape[1]
        rq = np.sqrt((q**2).sum(0)) + 1e-6
        uq = q / rq
        depth = np.minimum(self.inner_radius(uq) - rq, q[2] - self.floor_z(q[0], q[1]))
        depth = np.minimum(depth, depth_p + 3.0)  # warped tissue never rises above the real surface
        wob = self.wobble(q)
        val = np.full(n, h.white, np.float32) + 1.5 * self.texture(q)
        csf = np.zeros(n, np.float32)
        vent = np.zeros(n, np.float32)

        infra = soft(q[2] - self.tentorium_z(q[0], q[1]), edge) * soft(-(q[1] - 5), 6.0)
        supra = 1 - infra

        # Supratentorial cortex: ribbon under the surface, sulci as radial sheets of a noise field.
        gap = self.csf_gap * (1 + 0.3 * wob)
        ns = self.sulci(uq * 70 + 0.25 * q) + 0.35 * self.sulci2(q)
        sulcal_depth = 17 + 5 * wob
        rel = np.clip((depth - gap) / sulcal_depth, 0, 1)
        width = (0.16 + 0.12 * self.atrophy) * (1 - rel) ** 0.7
        sulcus = soft(np.abs(ns) - width, 0.08) * (depth < gap + sulcal_depth)
        grey_band = soft(np.abs(ns) - width - 0.22, 0.1) * (depth < gap + sulcal_depth + 2)
        ribbon = np.maximum(soft(depth - gap - 3.2, edge), grey_band)
        val = val * (1 - ribbon * supra) + h.grey * ribbon * supra
        csf = np.maximum(csf, sulcus * supra)

        # Deep grey nuclei.
        deep = np.zeros(n, np.float32)
        for sx in (-1, 1):
            for c, r in (((sx * 13, -19, 7), (6, 10, 8)), ((sx * 11, 6, -2), (9, 13, 9)),
                         ((sx * 23, -7, -2), (5.5, 14, 10))):
                deep = np.maximum(deep, soft(ellipsoid_sd(q, c, r) + 1.5 * wob, edge * 1.5))
            # insula cortex and Sylvian fissure
            syl = np.abs(np.abs(q[0]) - 36 - 0.25 * q[1] + 3 * wob) - (1.2 + 2.5 * self.atrophy)
            syl_mask = (q[2] > -30) & (q[2] < 4 - 0.2 * q[1]) & (q[1] > -30) & (q[1] < 25) & (q[0] * sx > 0)
            csf = np.maximum(csf, soft(syl, edge) * syl_mask * supra)
        val = val * (1 - deep) + (h.grey - 2) * deep

        # Interhemispheric fissure with the falx: from the vertex down to above the corpus callosum.
        cc_top = 18 + 0.004 * q[1] ** 2
        fis_reach = soft(-(q[2] - cc_top), 4.0) * (1 - soft(np.abs(q[1]) - 38, 10.0))
        fis_w = 1.0 + 2.2 * self.atrophy + 0.6 * wob
        fis = soft(np.abs(q[0] - self.midline_x) - fis_w, edge) * (1 - fis_reach) * supra
        csf = np.maximum(csf, fis)

        # Posterior fossa: cerebellum with folia, brainstem, fourth ventricle.
        fol = np.abs(self.folia(q)) < 0.18 + 0.15 * self.atrophy
        cereb_val = np.where(fol & (depth < 10), h.csf, h.grey - 3 - 3 * (self.folia(q * 1.7) > 0.6))
        stem = soft(ellipsoid_sd(q, (0, 4, -42), (13, 11, 28)), edge)
        cereb_val = cereb_val * (1 - stem) + (h.white + 3) * stem
        val = val * supra + cereb_val.astype(np.float32) * infra
        csf = np.maximum(csf, (fol & (depth < 10)) * infra * (1 - stem))

        # Basal cisterns around the midbrain: suprasellar, ambient, quadrigeminal, prepontine.
        midbrain = ellipsoid_sd(q, (0, 2, -17), (12, 10, 9))
        cis = np.minimum.reduce([
            ellipsoid_sd(q, (0, -14, -21), (15 + 3 * self.atrophy, 9, 5)),
            midbrain - (2.5 + 2 * self.atrophy),
            ellipsoid_sd(q, (0, 15, -13), (8, 5, 5)),
            ellipsoid_sd(q, (0, -9, -42), (10, 3.5, 16)),
        ])
        cist = soft(cis, edge) * (1 - soft(midbrain, edge)) * (q[2] < -8)
        csf = np.maximum(csf, cist)
        val = np.where(soft(midbrain, edge) > 0.5, h.white + 3, val)

        # Ventricles: lateral (frontal horn, body, atrium/occipital horn, temporal horn), third, fourth.
        v = self.vent_scale
        vsd = np.full(n, 1e3, np.float32)
        for sx in (-1, 1):
            w = 1.5 + 4.0 * v
            for c, r, rot in (((sx * (w / 2 + 2.0), -22, 9), (w * 0.9, 11, 6 * v**0.5), rotation_matrix(rz=sx * 0.35)),
                              ((sx * (w / 2 + 3.5), 2, 13), (w, 20, 4.5 * v**0.5), rotation_matrix(rz=sx * 0.12)),
                              ((sx * 17, 24, 6), (4.5 * v**0.7, 12, 6 * v**0.5), rotation_matrix(rz=sx * -0.35)),
                              ((sx * 27, -5, -18), (2 * v**0.7, 12, 2.5 * v**0.5), rotation_matrix(rz=sx * 0.3))):
                vsd = np.minimum(vsd, ellipsoid_sd(q, c, r, rot))
        vsd = np.minimum(vsd, ellipsoid_sd(q, (0, -2, -6), (1.2 + 1.5 * self.atrophy, 12, 8)))
        vsd = np.minimum(vsd, ellipsoid_sd(q, (0, 20, -38), (6, 3.5, 7)))
        vent = soft(vsd + 0.8 * wob, edge)
        septum = soft(np.abs(q[0]) - 1.0, edge) * (q[1] < 16) * (q[2] > 2)
        vent *= 1 - septum
        csf = np.maximum(csf, 0)

        # Surface CSF layer.
        surface = soft(depth - gap, edge)
        csf = np.maximum(csf, surface)
        csf = csf * (1 - vent)
        val = val * (1 - csf - vent) + h.csf * (csf + vent)
        brain = np.clip(1 - csf - vent, 0, 1)

        # Dura: falx and tentorium (dense sheets), optional falx calcification.
        falx = soft(np.abs(q[0] - self.midline_x) - 0.55, edge) * (1 - fis_reach) * supra * (q[2] > -20)
        if h.falx_calcified:
            calc = (self.folia(q * 0.5) > 1.0) & (falx > 0.3)
            val = np.where(calc, 180 + 80 * self.texture(q), val)
        tent = soft(np.abs(q[2] - self.tentorium_z(q[0], q[1])) - 0.6, edge) * (q[1] > 5) * (
            1 - soft(np.maximum(np.abs(q[0]) - 13, q[1] - 22), 2.0))
        dura = np.maximum(falx, tent)
        val = val * (1 - dura) + h.dura * dura

        # Calcifications (choroid plexus glomus, pineal).
        for c, r, hu_c in self.calcs:
            cf = soft(ellipsoid_sd(q, c, (r, r * 1.2, r)), edge)
            val = val * (1 - cf) + hu_c * cf
        return val.astype(np.float32), {"brain": brain, "csf": csf, "ventricle": vent}
