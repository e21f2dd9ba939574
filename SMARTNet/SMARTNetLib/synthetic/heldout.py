"""A second synthetic head-CT generator, for evaluation only: never for training, model selection or thresholds.

A model that learned its training generator rather than hemorrhage fails on heads drawn by other code. This
module shares no code with the training generator (:mod:`.phantom`, :mod:`.bleeds`, :mod:`.scanner`,
:mod:`.noise`, :mod:`.randomisation`) and differs from it at every step:

- anatomy on a 1 mm voxel grid (not implicit fields): a superquadric cranial cavity with harmonic bumps,
  sulci as the zero set of a sum of random plane waves, C-shaped lateral ventricles swept along a curve,
  a planar cranial floor with box-shaped petrous ridges, its own falx, tentorium and sagittal sinus;
- tissue HU and texture of its own (plane-wave texture, its own HU ranges);
- bleeds of its own shapes and densities: an epidural lens cut from a ball, a subdural crescent bounded by
  an angle on the inner table, a parenchymal clot made of several balls, ventricular blood below a fluid
  level, subarachnoid blood filling the CSF of sulci or cisterns near a point;
- a scanner of its own: slice-sensitivity and point-spread blur on the 1 mm grid, then SimpleITK resampling
  into a clinical grid, and noise shaped by a CT-like noise power spectrum (ramp times Gaussian) in-plane.

:func:`make_heldout_case` draws one case; :func:`insert_into_real_head` paints the same bleed shapes into the
real InVesalius head (a second insertion method: threshold masks, no mass effect); :func:`real_head_variants`
gives the real normal head at several rotations, fields of view and resolutions; :func:`probe_volumes` gives
inputs that are not head CT of the kind the model knows (for the input-familiarity check).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.contracts.classes import get_class

SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
EXTENT = (172, 210, 176)  # (z, y, x) mm of the canonical 1 mm grid
ORIGIN = (-88.0, -105.0, -80.0)  # (x, y, z) mm of voxel 0 (LPS: +x left, +y posterior, +z superior)


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.arange(EXTENT[0], dtype=np.float32) + ORIGIN[2]
    y = np.arange(EXTENT[1], dtype=np.float32) + ORIGIN[1]
    x = np.arange(EXTENT[2], dtype=np.float32) + ORIGIN[0]
    return np.meshgrid(z, y, x, indexing="ij")


def _waves(rng: np.random.Generator, z, y, x, n: int, wavelength: tuple[float, float]) -> np.ndarray:
    """Sum of ``n`` random plane waves of the given wavelength range (mm), unit variance."""
    out = np.zeros(z.shape, np.float32)
    for _ in range(n):
        k = rng.normal(size=3)
        k *= 2 * np.pi / rng.uniform(*wavelength) / np.linalg.norm(k)
        out += np.cos(k[0] * z + k[1] * y + k[2] * x + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return out / np.sqrt(n / 2)


class HeldoutHead:
    """One head on the 1 mm grid: HU, label and the masks that bleeds are placed on."""

    def __init__(self, rng: np.random.Generator) -> None:
        z, y, x = _grid()
        s = rng.uniform(0.88, 1.08)
        a, b, c = 67 * s * rng.uniform(0.94, 1.06), 85 * s * rng.uniform(0.95, 1.05), 66 * s
        e = rng.uniform(2.1, 2.7)
        zc = np.where(z > 0, z / c, z / (c * 0.8))
        rho = (np.abs(x / a) ** e + np.abs(y / b) ** e + np.abs(zc) ** e) ** (1 / e)
        r = np.sqrt(x * x + y * y + z * z) + 1e-3
        az, el = np.arctan2(y, x), np.arcsin(np.clip(z / r, -1, 1))
        bump = sum(rng.normal(0, 0.02) * np.cos(m * az + rng.uniform(0, 6.3)) * np.cos(k * el)
                   for m in (1, 2, 3) for k in (1, 2))
        rho = rho * (1 + bump)
        self.depth = ((1 - rho) * r / np.maximum(rho, 1e-3)).astype(np.float32)  # mm below the inner table
        floor = np.where(y < -30, -28 + 0.1 * np.clip(-y - 30, 0, None),
                         np.where(y < 8, -42 + 0.0 * y, -60 + 0.003 * x * x)).astype(np.float32)
        floor = ndimage.uniform_filter(floor, size=(1, 15, 1))
        self.depth = np.minimum(self.depth, z - floor)
        thick = rng.uniform(5, 8.5) * (1 + 0.2 * np.cos(az * 2 + rng.uniform(0, 6.3)))
        cavity = self.depth > 0
        bone = (self.depth <= 0) & (self.depth > -thick)
        scalp = (self.depth <= -thick) & (self.depth > -thick - rng.uniform(4, 8))
        face = (z < -20) & (self.depth <= 0) & (rho < 1.25) & (y < 40)
        hu = np.full(z.shape, -1000.0, np.float32)
        hu[scalp | face] = rng.uniform(20, 45)
        fat = scalp & (self.depth > -thick - 2.5)
        hu[fat] = rng.uniform(-100, -60)
        table, diploe = rng.uniform(1300, 1800), rng.uniform(550, 850)
        mid = np.abs(self.depth + thick / 2) < thick / 4
        hu[bone] = np.where(mid[bone], diploe, table)
        # skull base under the floor, petrous ridges as rotated boxes, air sinuses below
        base = (z < floor) & (z > floor - rng.uniform(6, 11)) & (rho < 1.15)
        hu[base] = rng.uniform(900, 1500)
        for sx in (-1, 1):
            ang = np.deg2rad(sx * rng.uniform(35, 55))
            u = np.cos(ang) * (x - sx * 30) + np.sin(ang) * (y - 8)
            v = -np.sin(ang) * (x - sx * 30) + np.cos(ang) * (y - 8)
            petrous = (np.abs(u) < 22) & (np.abs(v) < 6) & (np.abs(z + 46) < 6)
            hu[petrous] = rng.uniform(1500, 2100)
            cavity &= ~petrous
            orbit = ((x - sx * 30) ** 2 / 14**2 + (y + 0.8 * b) ** 2 / 16**2 + (z + 34) ** 2 / 14**2) < 1
            hu[orbit] = rng.uniform(-90, -50)
        sinus_air = (np.abs(x) < 14) & (y < -10) & (y > -60) & (z < -45) & (z > -70)
        hu[sinus_air] = -900
        self.csf_hu, self.grey_hu, self.white_hu = rng.uniform(0, 12), rng.uniform(32, 42), rng.uniform(21, 30)
        atrophy = rng.uniform(0, 1) ** 1.5
        gap = 1 + 3 * atrophy
        tent_z = -8 - rng.uniform(0.25, 0.45) * np.abs(x) - rng.uniform(0.2, 0.4) * np.clip(y - 15, 0, None)
        infra = (z < tent_z) & (y > 5)
        brain = cavity.copy()
        val = np.full(z.shape, self.white_hu, np.float32)
        sulc = _waves(rng, z, y, x, 14, (14, 30))
        band = (self.depth > gap) & (self.depth < gap + 20)
        width = (0.25 + 0.2 * atrophy) * np.clip(1 - (self.depth - gap) / 20, 0, 1)
        sulcus = band & (np.abs(sulc) < width) & ~infra
        grey = (((self.depth > gap) & (self.depth < gap + rng.uniform(2.5, 4.2)))
                | (band & (np.abs(sulc) < width + 0.35))) & ~infra
        val[grey] = self.grey_hu
        # cerebellum: folia as bands along z, brainstem as a cylinder
        folia = infra & (np.abs(np.sin((z + 0.3 * x) / rng.uniform(2.0, 3.0))) < 0.25 + 0.2 * atrophy)
        val[infra] = self.grey_hu - 2
        stem = ((x / 11) ** 2 + ((y - 8) / 10) ** 2 < 1) & (z < -12) & (z > -75)
        val[stem] = self.white_hu + 2
        # deep grey nuclei (rounded boxes)
        for sx in (-1, 1):
            for cx, cy, cz, rx, ry, rz in ((sx * 21, -5, -2, 6, 13, 9), (sx * 10, 6, -3, 8, 11, 8)):
                box = (np.abs((x - cx) / rx) ** 4 + np.abs((y - cy) / ry) ** 4 + np.abs((z - cz) / rz) ** 4) < 1
                val[box] = self.grey_hu - 1
        # ventricles: lateral ones swept along a C-curve, third and fourth
        vs = 1 + 1.2 * atrophy + rng.uniform(-0.15, 0.15)
        vent = np.zeros(z.shape, bool)
        t = np.linspace(0, 1, 36)
        for sx in (-1, 1):
            cx = sx * (5 + 3 * vs) + sx * 10 * t**2
            cy = -26 + 52 * t
            cz = 12 - 4 * t - 22 * np.clip(t - 0.75, 0, None) / 0.25
            rad = (2 + 3.5 * vs * np.sin(np.pi * np.clip(t, 0.05, 0.95)) ** 0.6) * np.where(t > 0.8, 0.6, 1)
            for px, py, pz, pr in zip(cx, cy, cz, rad):
                sl = tuple(slice(int(max(0, q - o - pr - 1)), int(q - o + pr + 2)) for q, o in
                           ((pz, ORIGIN[2]), (py, ORIGIN[1]), (px, ORIGIN[0])))
                d2 = ((x[sl] - px) ** 2 + ((y[sl] - py) / 1.4) ** 2 + (z[sl] - pz) ** 2)
                vent[sl] |= d2 < pr * pr
        vent |= (np.abs(x) < 1 + 1.5 * atrophy) & (y > -12) & (y < 6) & (z > -16) & (z < -1)
        vent |= ((x / 5) ** 2 + ((y - 30) / 3) ** 2 + ((z + 40) / 6) ** 2) < 1
        septum = (np.abs(x) < 1.0) & (y < 12) & (z > 0)
        vent &= ~septum & cavity
        cistern = (((x / (14 + 4 * atrophy)) ** 2 + ((y + 6) / 8) ** 2 + ((z + 22) / 4) ** 2) < 1) & ~stem
        fissure = (np.abs(x) < 1 + 2 * atrophy) & (z > 15 + 0.003 * y * y) & cavity
        csf = cavity & ((self.depth < gap) | sulcus | (folia & (self.depth < 12)) | cistern | fissure) & ~vent
        val[csf | vent] = self.csf_hu
        # dura and its mimics: falx, tentorium, superior sagittal sinus; calcifications
        fw = rng.uniform(0.6, 1.6)
        falx = (np.abs(x) < fw) & (z > 10 + 0.003 * y * y) & cavity
        val[falx] = rng.uniform(42, 75)
        if rng.random() < 0.3:
            spots = falx & (_waves(rng, z, y, x, 6, (8, 20)) > 1.2)
            val[spots] = rng.uniform(120, 350)
        tent = (np.abs(z - tent_z) < rng.uniform(0.5, 1.4)) & (y > 5) & cavity & (np.abs(x) > 6)
        val[tent] = rng.uniform(40, 70)
        h = rng.uniform(4, 8)
        sss = (np.abs(x) < rng.uniform(2, 5) * np.clip(1 - self.depth / h, 0, 1)) & (self.depth < h) & cavity & (z > 0)
        val[sss] = rng.uniform(40, 72)
        for (cx, cy, cz), p in (((0, 20, -5), 0.5), ((18, 26, 8), 0.6), ((-18, 26, 8), 0.6)):
            if rng.random() < p:
                ball = ((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < rng.uniform(1.5, 3.5) ** 2
                val[ball] = rng.uniform(110, 400)
        val += rng.uniform(0.8, 2.5) * _waves(rng, z, y, x, 10, (3, 9))
        hu[cavity] = val[cavity]
        self.hu = hu
        self.cavity, self.csf, self.vent, self.brain = cavity, csf, vent, brain & ~csf & ~vent
        self.label = np.zeros(z.shape, np.uint8)
        self.coords = (z, y, x)


def _blood_hu(rng: np.random.Generator, subtype: str) -> float:
    lo, hi = {"subdural": (40, 75), "intraventricular": (40, 70), "subarachnoid": (42, 68)}.get(subtype, (48, 82))
    return float(rng.uniform(lo, hi))


def _direction(rng: np.random.Generator) -> np.ndarray:
    while True:
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        if u[2] > 0.0 and abs(u[0]) > 0.35:  # (x, y, z): upper lateral convexity
            return u


def paint_bleed(rng: np.random.Generator, subtype: str, coords, depth: np.ndarray, cavity: np.ndarray,
                csf: np.ndarray, vent: np.ndarray, brain: np.ndarray, hu: np.ndarray, label: np.ndarray,
                center: np.ndarray) -> None:
    """Paint one bleed of ``subtype`` into ``hu``/``label`` (1 mm grid; ``center`` = cavity centre, (x, y, z))."""
    z, y, x = coords
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    value = _blood_hu(rng, subtype)
    if subtype in ("epidural", "subdural"):
        u = _direction(rng)
        r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
        cosang = (dx * u[0] + dy * u[1] + dz * u[2]) / r
        side = np.sign(u[0]) * dx > 1.0  # stays on its side of the falx
        if subtype == "epidural":
            ang = np.deg2rad(rng.uniform(12, 30))
            t = rng.uniform(6, 22)
            shape = np.clip((cosang - np.cos(ang)) / (1 - np.cos(ang)), 0, 1) ** 0.5 * t
        else:
            ang = np.deg2rad(rng.uniform(25, 62))
            t = rng.uniform(2.5, 16)
            shape = np.clip((cosang - np.cos(ang)) / (1 - np.cos(ang)), 0, 1) ** 0.3 * t
        mask = cavity & side & (depth < shape) & (shape > 0.8)
    elif subtype == "intraparenchymal":
        c0 = _pick(rng, brain & (depth > 15), coords)
        mask = np.zeros(z.shape, bool)
        size = rng.uniform(4, 17)
        for _ in range(int(rng.integers(2, 5))):
            ck = c0 + rng.normal(0, size * 0.4, size=3)
            rad = size * rng.uniform(0.5, 1.0)
            mask |= ((z - ck[0]) ** 2 + (y - ck[1]) ** 2 + (x - ck[2]) ** 2) < rad**2
        mask &= cavity & (depth > 2)
        rim = ndimage.binary_dilation(mask, iterations=int(rng.integers(2, 5))) & ~mask & brain
        hu[rim] = np.minimum(hu[rim], rng.uniform(12, 22))
    elif subtype == "intraventricular":
        c0 = _pick(rng, vent, coords)
        near = ((z - c0[0]) ** 2 + (y - c0[1]) ** 2 + (x - c0[2]) ** 2) < rng.uniform(12, 40) ** 2
        level = c0[1] - rng.uniform(-4, 10)
        mask = vent & near & ((y > level) if rng.random() < 0.6 else True)
    else:
        pool = csf & (depth > 1.5)
        c0 = _pick(rng, pool, coords)
        near = ((z - c0[0]) ** 2 + (y - c0[1]) ** 2 + (x - c0[2]) ** 2) < rng.uniform(10, 35) ** 2
        mask = pool & near
    if mask.sum() < 30:
        return
    hu[mask] = value + rng.uniform(1, 3) * rng.standard_normal(int(mask.sum())).astype(np.float32)
    label[mask] = get_class(subtype).label_value


def _pick(rng: np.random.Generator, mask: np.ndarray, coords) -> np.ndarray:
    """(z, y, x) mm of a random voxel of ``mask``."""
    cands = np.argwhere(mask)
    k = tuple(cands[rng.integers(len(cands))])
    return np.array([c[k] for c in coords], np.float32)


def _random_subtypes(rng: np.random.Generator) -> list[str]:
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    return sorted(set(str(s) for s in rng.choice(SUBTYPES, size=n)))


def _scanner(rng: np.random.Generator, hu_1mm: np.ndarray, label_1mm: np.ndarray, origin, center,
             pose_deg: float = 12.0, spacing=None, size=None) -> tuple[sitk.Image, sitk.Image, dict]:
    """Blur, resample into a clinical grid with a random pose, and add CT-shaped noise."""
    thickness = float(spacing[2]) if spacing else float(rng.choice([2.5, 3.0, 5.0, 5.0]))
    inplane = float(spacing[0]) if spacing else float(rng.uniform(0.42, 0.95))
    psf = rng.uniform(0.4, 0.9)
    blurred = ndimage.gaussian_filter(hu_1mm, sigma=(max(thickness / 2.355, 0.3), psf, psf))
    src = sitk.GetImageFromArray(blurred)
    src.SetOrigin(tuple(float(v) for v in origin))
    lab = sitk.GetImageFromArray(label_1mm)
    lab.SetOrigin(src.GetOrigin())
    n = int(size[0]) if size else int(round(rng.uniform(215, 250) / inplane))
    nz = int(size[2]) if size else int(round(rng.uniform(120, 150) / thickness))
    ref = sitk.Image([n, n, nz], sitk.sitkFloat32)
    ref.SetSpacing((inplane, inplane, thickness))
    shift = rng.uniform(-8, 8, size=3)
    top = float(center[2]) + 70 + rng.uniform(-4, 6)
    ref.SetOrigin((float(center[0]) - n * inplane / 2 + shift[0], float(center[1]) - n * inplane / 2 + shift[1],
                   top - nz * thickness))
    tx = sitk.Euler3DTransform()
    tx.SetCenter(tuple(float(v) for v in center))
    angles = np.deg2rad(rng.uniform(-pose_deg, pose_deg, size=3))
    tx.SetRotation(float(angles[0]), float(angles[1] / 2), float(angles[2]))
    ct = sitk.Resample(src, ref, tx, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    out_lab = sitk.Resample(lab, ref, tx, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    arr = sitk.GetArrayFromImage(ct)
    # noise with a CT-like power spectrum in-plane: ramp times Gaussian roll-off
    white = rng.standard_normal(arr.shape).astype(np.float32)
    fy = np.fft.fftfreq(arr.shape[1])[:, None]
    fx = np.fft.fftfreq(arr.shape[2])[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    fc = rng.uniform(0.12, 0.35) * (0.5 / max(inplane, 0.3)) * inplane
    nps = np.sqrt(f * np.exp(-(f / fc) ** 2))
    noise = np.real(np.fft.ifft2(np.fft.fft2(white) * nps[None]))
    sd = rng.uniform(3, 9) * np.sqrt(0.25 * 5 / (inplane * inplane * thickness)) ** 0.5
    noise *= float(np.clip(sd, 2, 14)) / max(float(noise.std()), 1e-6)
    arr = np.clip(np.rint(arr + noise * (arr > -900)), -1024, 3071).astype(np.int16)
    image = sitk.GetImageFromArray(arr)
    image.CopyInformation(ct)
    out_lab.CopyInformation(ct)
    return image, out_lab, {"size": [n, n, nz], "spacing": [round(inplane, 3), round(inplane, 3), thickness],
                            "pose_deg": [round(float(np.rad2deg(a)), 1) for a in angles]}


def make_heldout_case(seed: int, subtypes: list[str] | None = None) -> tuple[sitk.Image, sitk.Image, dict]:
    """One held-out case: CT (int16 HU), label map (label values 1-5) and a description.

    ``subtypes``: None = random (about 40% negatives), ``[]`` = a negative, or the subtypes to paint.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4242, 17]))
    if subtypes is None:
        subtypes = [] if rng.random() < 0.4 else _random_subtypes(rng)
    head = HeldoutHead(rng)
    center = np.array([0.0, 0.0, 0.0])
    for s in subtypes:
        paint_bleed(rng, s, head.coords, head.depth, head.cavity, head.csf, head.vent, head.brain, head.hu,
                    head.label, center)
    ct, label, scanner = _scanner(rng, head.hu, head.label, ORIGIN, center)
    present = sorted({get_class_name(v) for v in np.unique(sitk.GetArrayViewFromImage(label)) if v})
    return ct, label, {"generator": "heldout", "host": "heldout-procedural", "subtypes": present,
                       "requested_subtypes": list(subtypes), "scanner": scanner}


def get_class_name(value: int) -> str:
    return next(s for s in SUBTYPES if get_class(s).label_value == int(value))


def _real_masks(image: sitk.Image) -> dict[str, np.ndarray]:
    """Threshold masks of the real head on its own grid: cavity, depth, CSF, ventricles, brain."""
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    sp = np.array(image.GetSpacing())[::-1]
    soft_tissue = (hu > -20) & (hu < 110)
    lab, n = ndimage.label(ndimage.binary_opening(soft_tissue & ~ndimage.binary_dilation(hu > 150, iterations=2)))
    upper = np.bincount(lab[len(lab) // 2:].ravel(), minlength=n + 1)
    upper[0] = 0
    cavity = ndimage.binary_dilation(lab == np.argmax(upper), iterations=2) & soft_tissue
    cavity = np.stack([ndimage.binary_fill_holes(s) for s in cavity])
    cavity[: int(0.3 * len(cavity))] = False  # the component leaks into the face and neck below the skull base
    depth = ndimage.distance_transform_edt(cavity, sampling=sp).astype(np.float32)
    smooth = ndimage.median_filter(hu, size=3)
    csf = cavity & (smooth < 16)
    lab, n = ndimage.label(csf & (depth > 15))
    sizes = np.bincount(lab.ravel())
    vent = np.isin(lab, np.flatnonzero(sizes > 1500)[1:]) if n else np.zeros_like(csf)
    return {"hu": hu, "cavity": cavity, "depth": depth, "csf": csf & ~vent, "vent": vent,
            "brain": cavity & ~csf}


def insert_into_real_head(seed: int, subtypes: list[str] | None = None) -> tuple[sitk.Image, sitk.Image, dict] | None:
    """Held-out bleeds painted into the real InVesalius head (threshold masks, no mass effect), then scanned."""
    from SMARTNetLib.synthetic.real_head import load_real_head

    image = load_real_head()
    if image is None:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4242, 29]))
    if subtypes is None:
        subtypes = _random_subtypes(rng)
    m = _real_masks(image)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in m["hu"].shape], indexing="ij")
    sp, org = image.GetSpacing(), np.array(image.GetOrigin())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    x = org[0] + direction[0, 0] * i * sp[0]
    y = org[1] + direction[1, 1] * j * sp[1]
    z = org[2] + direction[2, 2] * k * sp[2]
    idx = np.argwhere(m["cavity"]).mean(0)
    center = np.array([org[0] + idx[2] * sp[0] * direction[0, 0], org[1] + idx[1] * sp[1] * direction[1, 1],
                       org[2] + idx[0] * sp[2] * direction[2, 2]])
    hu, label = m["hu"].copy(), np.zeros(m["hu"].shape, np.uint8)
    for s in subtypes:
        paint_bleed(rng, s, (z, y, x), m["depth"], m["cavity"], m["csf"], m["vent"], m["brain"], hu, label, center)
    # resample to 1 mm canonical (identity direction) so that the scanner model is the same as for heldout heads
    src = sitk.GetImageFromArray(hu)
    src.CopyInformation(image)
    lab = sitk.GetImageFromArray(label)
    lab.CopyInformation(image)
    ref = sitk.Image([int(round(image.GetSize()[a] * sp[a])) for a in range(3)], sitk.sitkFloat32)
    lo = np.minimum(org, org + direction @ (np.array(image.GetSize()) * sp))
    ref.SetOrigin(tuple(float(v) for v in lo))
    hu1 = sitk.GetArrayFromImage(sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, -1000.0))
    lab1 = sitk.GetArrayFromImage(sitk.Resample(lab, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    ct, out_lab, scanner = _scanner(rng, hu1, lab1, tuple(lo), center, pose_deg=8.0)
    present = sorted({get_class_name(v) for v in np.unique(sitk.GetArrayViewFromImage(out_lab)) if v})
    return ct, out_lab, {"generator": "heldout", "host": "real-inserted", "subtypes": present,
                         "requested_subtypes": list(subtypes), "scanner": scanner}


def real_head_variants() -> list[tuple[str, sitk.Image]]:
    """The real normal head as given, rotated (about each axis), cropped and at other resolutions."""
    from SMARTNetLib.synthetic.real_head import load_real_head

    image = load_real_head()
    if image is None:
        return []
    out = [("native", image)]
    center = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    for name, angles in (("roll+15", (0, 0.26, 0)), ("pitch-20", (-0.35, 0, 0)), ("pitch+15", (0.26, 0, 0)),
                         ("yaw+20", (0, 0, 0.35)), ("yaw-10,roll-10", (0, -0.17, -0.17))):
        tx = sitk.Euler3DTransform()
        tx.SetCenter(center)
        tx.SetRotation(*[float(a) for a in angles])
        out.append((f"rotated {name}", sitk.Resample(image, image, tx, sitk.sitkLinear, -1000.0)))
    for name, spacing in (("0.5 mm x 5 mm", (0.5, 0.5, 5.0)), ("0.8 mm x 2.5 mm", (0.8, 0.8, 2.5))):
        size = [int(round(image.GetSize()[a] * image.GetSpacing()[a] / spacing[a])) for a in range(3)]
        ref = sitk.Image(size, sitk.sitkInt16)
        ref.SetSpacing(spacing)
        ref.SetOrigin(image.GetOrigin())
        ref.SetDirection(image.GetDirection())
        out.append((f"resampled {name}", sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, -1000.0)))
    size = list(image.GetSize())
    out.append(("cropped field of view (upper 70%)", image[:, :, int(size[2] * 0.3):]))
    out.append(("cropped field of view (central 80% in-plane)", image[int(size[0] * 0.1):int(size[0] * 0.9),
                                                                      int(size[1] * 0.1):int(size[1] * 0.9), :]))
    return out


def probe_volumes() -> list[tuple[str, sitk.Image]]:
    """Inputs that are not a head CT of the kind the model knows (for the familiarity check): an MR-like
    contrast of the real head stored in HU, heavy noise, metal streaks, and a heavily blurred head."""
    from SMARTNetLib.synthetic.real_head import load_real_head

    head = load_real_head()
    if head is None:
        return []
    hu = sitk.GetArrayFromImage(head).astype(np.float32)
    rng = np.random.default_rng(0)

    def image(arr: np.ndarray) -> sitk.Image:
        out = sitk.GetImageFromArray(np.clip(np.rint(arr), -1024, 3071).astype(np.int16))
        out.CopyInformation(head)
        return out

    mr = np.select([hu < -300, hu > 300, hu < 18, hu < 33], [-1000.0, -600.0, -250.0, 420.0], 300.0)
    mr = np.where((hu > -200) & (hu < -30), 700.0, mr)  # fat bright, as on T1
    mr = ndimage.gaussian_filter(mr, 0.7) + rng.normal(0, 15, hu.shape)
    out = [("MR-like contrast (real head, T1-like values)", image(mr)),
           ("heavy noise (sd 90 HU)", image(hu + rng.normal(0, 90, hu.shape)))]
    streaks = hu.copy()
    jj, ii = np.mgrid[0:hu.shape[1], 0:hu.shape[2]].astype(np.float32)
    for k in range(hu.shape[0] // 3, hu.shape[0]):
        for ang in np.linspace(0, np.pi, 9)[:-1]:
            dist = np.abs(np.cos(ang) * (jj - 150) - np.sin(ang) * (ii - 110))
            streaks[k] += 400 * np.sin(ang * 7) * np.exp(-0.5 * (dist / 2.0) ** 2) * (hu[k] > -300)
    out.append(("metal streaks", image(streaks)))
    out.append(("heavy blur (8 mm)", image(ndimage.gaussian_filter(hu, (3, 8, 8)))))
    return out
