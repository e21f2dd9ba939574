"""The real normal head CT of Debian's ``invesalius-examples`` as a host for inserted bleeds.

``Cranium.inv3`` is a gzipped tar holding ``main.plist`` (shape, dtype, spacing) and the raw voxels
``matrix.dat`` (108 x 256 x 256 int16 HU, 0.957 x 0.957 x 1.5 mm). Slice 0 is the most inferior and rows
run from posterior to anterior (InVesalius stores VTK's bottom-up rows), so the image gets the direction
diag(1, -1, 1) in LPS (checked on slices: the head holder is posterior, the face anterior; left/right
cannot be checked on a normal head and is assumed radiological as in the source DICOM).

As FDA's InSilicoICH does, the host's anatomy is segmented by thresholds and morphology: the cranial
cavity (inside the skull, filled slice by slice), depth below the inner table (distance transform),
CSF-range voxels inside the brain (sulci and cisterns) and the ventricles (large deep CSF components).
Bleeds are placed on these masks by :mod:`.bleeds` and the host is warped for mass effect.
"""

from __future__ import annotations

import os
import plistlib
import tarfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.synthetic.bleeds import plan_bleeds, total_displacement
from SMARTNetLib.synthetic.noise import SmoothNoise
from SMARTNetLib.synthetic.randomisation import plan_mimics, randomise_scanner, real_head_warp, tissue_contrast
from SMARTNetLib.synthetic.scanner import random_geometry

CANDIDATES = (
    "/usr/share/doc/invesalius-examples/examples/Cranium.inv3",
    "/usr/share/invesalius/examples/Cranium.inv3",
)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
_CACHE: dict[str, object] = {}


def real_head_path() -> Path | None:
    """Where ``Cranium.inv3`` is (``SMARTNET_INVESALIUS_HEAD`` overrides), or None."""
    env = os.environ.get("SMARTNET_INVESALIUS_HEAD")
    for candidate in ([env] if env else []) + list(CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def load_real_head(path: str | Path | None = None) -> sitk.Image | None:
    """The InVesalius 'Cranium' head CT as an int16 HU image in LPS, or None when it is not installed."""
    path = Path(path) if path else real_head_path()
    if path is None or not path.is_file():
        return None
    with tarfile.open(path, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        plist = plistlib.loads(tar.extractfile(members["main.plist"]).read())
        matrix = plist["matrix"]
        raw = tar.extractfile(members[matrix["filename"]]).read()
    arr = np.frombuffer(raw, dtype=np.dtype(matrix["dtype"]).newbyteorder("<")).reshape(matrix["shape"])
    image = sitk.GetImageFromArray(arr.astype(np.int16))
    image.SetSpacing([float(s) for s in plist["spacing"]])
    image.SetDirection(DIRECTION)
    image.SetOrigin((0.0, 0.0, 0.0))
    return image


class RealHost:
    """Masks and fields of the real head, and bleed sites on them (host frame = the image's LPS mm)."""

    def __init__(self, image: sitk.Image) -> None:
        self.image = image
        self.hu = sitk.GetArrayFromImage(image).astype(np.float32)  # (k, j, i)
        sp = np.array(image.GetSpacing())[::-1]  # numpy order
        hu = self.hu
        lab, n = ndimage.label(hu > -300)
        head = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1) if n else np.zeros_like(hu, bool)
        # cavity: soft tissue inside the skull; eroding first cuts leaks through thin bone and foramina
        bone = ndimage.binary_dilation((hu > 150) & head, np.ones((3, 3, 3)))
        filled = np.stack([ndimage.binary_fill_holes(s) for s in head])
        candidate = filled & ~bone & (hu > -50) & (hu < 150)
        core = ndimage.binary_erosion(candidate, np.ones((3, 5, 5)), iterations=2)
        lab, n = ndimage.label(core)
        if n:
            core = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
        cavity = ndimage.binary_dilation(core, np.ones((3, 5, 5)), iterations=2) & candidate
        cavity = np.stack([ndimage.binary_fill_holes(s) for s in cavity])
        self.cavity = cavity
        self.depth = ndimage.distance_transform_edt(cavity, sampling=sp).astype(np.float32)
        smooth = ndimage.gaussian_filter(hu, 0.8)
        csf = cavity & (smooth < 15) & (smooth > -30)
        lab, n = ndimage.label(csf & (self.depth > 12))
        sizes = np.bincount(lab.ravel()) * np.prod(sp) / 1000.0
        big = np.flatnonzero(sizes[1:] > 1.0) + 1
        self.ventricle = np.isin(lab, big) if big.size else np.zeros_like(csf)
        self.ventricle = ndimage.binary_dilation(self.ventricle, iterations=1) & csf
        self.csf = csf & ~self.ventricle
        self.brain = cavity & ~csf
        idx = np.argwhere(cavity)
        self.center = self._phys(idx.mean(0)[None])[0]
        self.midline_x = float(self.center[0])
        self.top_z = float(self._phys(np.array([[np.flatnonzero(head.any((1, 2))).max(), 0, 0]]))[0][2])

    def _phys(self, kji: np.ndarray) -> np.ndarray:
        """Physical LPS points (N, 3) of numpy indices (N, 3) in (k, j, i) order."""
        img = self.image
        m = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
        return (m @ np.asarray(kji, float)[:, ::-1].T).T + np.array(img.GetOrigin())

    def _pick(self, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
        idx = np.argwhere(mask)
        if len(idx) == 0:
            idx = np.argwhere(self.cavity & (self.depth > 20))
        return idx[rng.integers(len(idx))]

    def surface_site(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        kz = np.arange(self.hu.shape[0])[:, None, None]
        k_mid = int(np.argwhere(self.cavity)[:, 0].mean())
        mask = self.cavity & (self.depth < 1.5) & (kz > k_mid - 8)
        kji = self._pick(rng, mask)
        p = self._phys(kji[None])[0]
        n = self.center + np.array([0, 0, 15.0]) - p
        return p.astype(np.float32), (n / np.linalg.norm(n)).astype(np.float32)

    def parenchyma_site(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        deep = rng.random() < 0.5
        far_vent = ~ndimage.binary_dilation(self.ventricle, iterations=4)
        mask = self.brain & far_vent & ((self.depth > 32) if deep else ((self.depth > 14) & (self.depth < 28)))
        return self._phys(self._pick(rng, mask)[None])[0].astype(np.float32), "deep" if deep else "lobar"

    def ventricle_site(self, rng: np.random.Generator) -> np.ndarray:
        return self._phys(self._pick(rng, self.ventricle)[None])[0].astype(np.float32)

    def cistern_site(self, rng: np.random.Generator) -> np.ndarray:
        return self._phys(self._pick(rng, self.csf & (self.depth > 22))[None])[0].astype(np.float32)

    def sylvian_site(self, rng: np.random.Generator) -> np.ndarray:
        return self._phys(self._pick(rng, self.csf & (self.depth > 10) & (self.depth < 25))[None])[0].astype(np.float32)

    def sulcal_site(self, rng: np.random.Generator) -> np.ndarray:
        return self._phys(self._pick(rng, self.csf & (self.depth > 2) & (self.depth < 12))[None])[0].astype(np.float32)


def real_host() -> RealHost | None:
    """The (cached) real host, or None when ``invesalius-examples`` is not installed."""
    if "host" not in _CACHE:
        image = load_real_head()
        _CACHE["host"] = RealHost(image) if image is not None else None
    return _CACHE["host"]  # type: ignore[return-value]


def make_real_case(rng: np.random.Generator, size: str, subtypes: list[str], extra: np.random.Generator | None = None):
    """Bleeds inserted into the real head, resampled onto a random scanner grid; None if no real head.

    With ``extra`` (the randomised style) the head also gets random tissue contrast, mimics, scaling, an
    elastic warp and scanner variety (:mod:`.randomisation`), all drawn from ``extra``."""
    host = real_host()
    if host is None:
        return None
    bleeds = plan_bleeds(rng, host, subtypes, np.array([0.0, 1.0, 0.0]))  # supine: gravity posterior
    hu = host.hu.copy()
    region = ndimage.binary_dilation(host.cavity, iterations=2)
    kji = np.argwhere(region)
    p = host._phys(kji).T.astype(np.float32)
    fields = {"depth": host.depth[region], "cavity": host.cavity[region].astype(np.float32),
              "brain": host.brain[region].astype(np.float32), "csf": host.csf[region].astype(np.float32),
              "ventricle": host.ventricle[region].astype(np.float32)}
    disp = total_displacement(bleeds, p)
    if np.abs(disp).max() > 0.05:  # mass effect: pull tissue (and its masks) from p - D(p)
        img = host.image
        m = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
        src = np.linalg.solve(m, (p - disp) - np.array(img.GetOrigin())[:, None])[::-1]  # (k, j, i)
        inside = fields["cavity"] > 0
        src_in = src[:, inside]
        hu_vals = hu[region]
        hu_vals[inside] = ndimage.map_coordinates(host.hu, src_in, order=1, mode="nearest")
        hu[region] = hu_vals
        for key, mask in (("brain", host.brain), ("csf", host.csf), ("ventricle", host.ventricle)):
            fields[key][inside] = ndimage.map_coordinates(mask.astype(np.float32), src_in, order=1, mode="nearest")
    values = hu[region]
    labels = np.zeros(values.shape, np.uint8)
    texture = SmoothNoise(rng, scale_mm=6.0, extent_mm=400)
    edge = 1.0
    randomised: dict = {}
    if extra is not None:
        randomised["contrast"] = round(tissue_contrast(values, fields["cavity"] > 0, extra), 3)
        mimics = plan_mimics(extra)
        for m in mimics:
            m.paint(p, fields, values, host.center, host.midline_x, edge)
        randomised["mimics"] = [m.kind for m in mimics]
    shifted = p - host.center[:, None].astype(np.float32)  # texture noise is centred on the head
    for b in bleeds:
        b.paint(p, fields, values, labels, edge, _Shifted(texture, host.center))
    hu[region] = values
    lab = np.zeros(hu.shape, np.uint8)
    lab[region] = labels
    del shifted

    geom = random_geometry(rng, size, head_top=host.top_z - float(host.center[2]))
    thickness = geom.spacing[2]
    if thickness > 1.5:  # slice-profile averaging before sampling thick slices
        hu = ndimage.gaussian_filter1d(hu, sigma=max(thickness - 1.5, 0.1) / 2.355 / 1.5, axis=0)
    src_ct = sitk.GetImageFromArray(hu)
    src_ct.CopyInformation(host.image)
    src_lab = sitk.GetImageFromArray(lab)
    src_lab.CopyInformation(host.image)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in geom.pose.ravel()])  # output -> host: rotate the head by the pose
    tx.SetCenter([float(v) for v in geom.head_center])
    tx.SetTranslation([float(v) for v in (host.center - geom.head_center)])
    ref = geom.reference_image()
    transform: sitk.Transform = tx
    if extra is not None:
        transform, warp = real_head_warp(ref, tx, extra)
        randomised.update(warp)
    ct = sitk.Resample(src_ct, ref, transform, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    label = sitk.Resample(src_lab, ref, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    arr = sitk.GetArrayFromImage(ct)
    if extra is not None:
        randomised.update(randomise_scanner(arr, geom.spacing, extra))
    arr = np.clip(np.rint(arr), -1024, 3071).astype(np.int16)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(ref)
    info = {"host": "real", "scanner": geom.describe(), "bleeds": [b.describe() for b in bleeds],
            "confounders": ["falx", "tentorium", "skull-base beam hardening", "bone partial volume",
                            "real anatomy"]}
    if randomised:
        info["randomised"] = randomised
    return out, label, info


class _Shifted:
    """A noise field evaluated relative to ``center`` (the host frame is not centred on the head)."""

    def __init__(self, noise: SmoothNoise, center: np.ndarray) -> None:
        self.noise, self.center = noise, np.asarray(center, np.float32)[:, None]

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return self.noise(p - self.center)
