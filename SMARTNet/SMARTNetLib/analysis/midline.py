"""Midline shift and a head frame on CT: the ideal midline (skull symmetry, falx attachments) against the septum.

1. The skull's plane of mirror symmetry: the bone window is mirrored across the scanner's left-right axis and
   rigidly registered onto itself (:func:`comparison.register_rigid`); the registered mirror is a reflection whose
   fixed plane is the mid-sagittal plane. The skull, not the brain, sets it, so a mass that pushes the brain does
   not move it. The CT is then resampled in that plane's frame (0.5 mm across, 1 mm along, 2 mm levels).
2. The septum pellucidum: on each level and anterior-posterior row, a ridge between two separate CSF spaces (one
   at least 4 mm wide, the other, which a mass may compress, 1.5 mm), deeper than 25 mm below the inner table.
   The septum's level is the one with the longest consistent run of such samples, scored with its neighbours.
3. The ideal midline on that level joins the falx's anterior and posterior attachments (the falx, or where it is
   not resolved the interhemispheric fissure, next to the inner table), as radiologists draw it; without both,
   the symmetry plane.
4. The shift is the septum's median deviation from the ideal midline over its smoothed curve on its level and
   one either side, signed to the patient's left.

"Not measurable", with the reason, when no septum is found (ventricles compressed or effaced, slit ventricles,
a scan that does not cover them) or no skull. Where a hematoma effaces the ventricle next to the septum, only the
visible part of the septum is measured and the shift can be underestimated (``benchmarks/midline_shift.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SMARTNetLib.analysis.comparison import register_rigid
from SMARTNetLib.io.volume import distance_to

BONE_HU = (200.0, 1500.0)  # the window the symmetry registration looks at: skull only
SYMMETRY_SPACING_MM = 6.0  # 4 mm: slower, same shift errors (benchmarks/midline_location.py); the falx attachments
# then set the midline's position on the septum's level
CSF_HU = (-15.0, 22.0)
CSF_MARGIN_HU = 8.0
MIN_PROMINENCE_HU = 4.0
ACROSS_MM, ALONG_MM, LEVEL_MM = 0.5, 1.0, 2.0  # the plane frame's sampling
HALF_WIDTH_MM = 85.0  # the whole skull, so that the cavity inside it closes
FRAME_AP_MM, FRAME_SI_MM = 250.0, 200.0
MIN_WALL_MM, MAX_WALL_MM = 0.5, 7.0
MIN_CSF_RUN_MM = 4.0  # one lateral ventricle; the CSF beside the falx in the fissure is narrower
MIN_COMPRESSED_RUN_MM = 1.5  # the other, which a mass may compress
MIN_DEPTH_MM = 25.0  # the septum lies deep; the interhemispheric fissure near the vertex does not count
MAX_OFFSET_MM = 25.0
MIN_VENTRICLE_MM2 = 40.0
MIN_SEPTUM_MM = 8.0  # shortest septum (anterior-posterior) that counts as found
SEPTUM_BLOCK = 2
SEPTUM_LEVELS_USED = 1  # the septum's level and one either side (2 mm each)
MAX_BEND_MM = 8.0  # runs further from the best run's median are another structure
MIN_RUN_ROWS = 5
FALX_REACH_MM, FALX_PROMINENCE_HU, FALX_HALF_WIDTH_MM, FALX_LEVELS = 15.0, 5.0, 2.0, 3
FISSURE_DEPTH_HU, FISSURE_HALF_WIDTH_MM = 8.0, 4.0


@dataclass
class Plane:
    """A plane in physical (LPS) coordinates: a point on it and its unit normal (pointing to patient left)."""

    point: np.ndarray
    normal: np.ndarray

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points) - self.point) @ self.normal


def symmetry_plane(ct: sitk.Image) -> tuple[Plane, dict]:
    """The skull's plane of mirror symmetry and facts about its fit (registration metric, angle to the grid)."""
    bone = sitk.Clamp(sitk.Cast(ct, sitk.sitkFloat32), sitk.sitkFloat32, *BONE_HU)
    arr = sitk.GetArrayViewFromImage(bone)
    kji = np.argwhere(arr > BONE_HU[0] + 100)
    if len(kji) < 1000:
        raise ValueError("no skull in the image")
    centre = np.array(ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in kji.mean(0)[::-1]]))
    mirror = sitk.AffineTransform(3)
    mirror.SetMatrix([-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])  # across physical x (patient left-right)
    mirror.SetCenter([float(c) for c in centre])
    # averaged down towards the working grid first: mirroring and smoothing 512 x 512 slices cost 1 s
    small = sitk.BinShrink(bone, [max(1, int(SYMMETRY_SPACING_MM / 2 / s)) for s in bone.GetSpacing()])
    mirrored = sitk.Resample(small, small, mirror, sitk.sitkLinear, BONE_HU[0])
    registration = register_rigid(small, mirrored, hu_range=BONE_HU, spacing_mm=SYMMETRY_SPACING_MM)

    def reflect(x: np.ndarray) -> np.ndarray:  # bone(x) ~ bone(reflect(x))
        return np.array(mirror.TransformPoint(registration.transform.TransformPoint([float(v) for v in x])))

    linear = np.stack([reflect(centre + e) - reflect(centre) for e in np.eye(3)], axis=1)
    values, vectors = np.linalg.eig(linear)
    normal = np.real(vectors[:, int(np.argmin(np.abs(values + 1)))])
    normal = normal / np.linalg.norm(normal) * (1 if normal[0] >= 0 else -1)
    point = (centre + reflect(centre)) / 2
    facts = {"normal_lps": [round(float(v), 4) for v in normal], "point_lps": [round(float(v), 2) for v in point],
             "yaw_roll_deg": round(float(np.degrees(np.arccos(min(1.0, abs(normal[0]))))), 2),
             "mattes_mutual_information": round(registration.metric, 4)}
    return Plane(point, normal), facts


def plane_frame(ct: sitk.Image, plane: Plane, centre: np.ndarray) -> sitk.Image:
    """``ct`` resampled in the plane's frame: i across the plane (to patient left), j anterior to posterior,
    k inferior to superior, centred on ``centre`` projected onto the plane."""
    n = plane.normal
    ap = np.array([0.0, 1.0, 0.0]) - n[1] * n
    ap /= np.linalg.norm(ap)
    si = np.cross(n, ap)
    si *= 1 if si[2] >= 0 else -1
    origin_on_plane = centre - plane.signed_distance(centre) * n
    size = [int(2 * HALF_WIDTH_MM / ACROSS_MM) + 1, int(FRAME_AP_MM / ALONG_MM) + 1, int(FRAME_SI_MM / LEVEL_MM) + 1]
    spacing = [ACROSS_MM, ALONG_MM, LEVEL_MM]
    direction = np.stack([n, ap, si], axis=1)
    origin = origin_on_plane - direction @ (np.array(spacing) * (np.array(size) - 1) / 2)
    return sitk.Resample(ct, size, sitk.Transform(), sitk.sitkLinear, [float(v) for v in origin], spacing,
                         [float(v) for v in direction.ravel()], -1024.0, sitk.sitkFloat32)


def _csf_threshold(frame: np.ndarray, deep: np.ndarray) -> float:
    """HU below which a voxel counts as CSF in this scan: 8 HU under the median of deep brain (scanners differ
    by several HU; the InVesalius head's brain is about 22 HU, the synthetic heads' about 30)."""
    values = frame[deep]
    values = values[(values > -20) & (values < 60)]
    return float(np.median(values)) - CSF_MARGIN_HU if values.size else CSF_HU[1]


def _enclosed(bone: np.ndarray) -> np.ndarray:
    """Points of a slice with bone in front, behind and on both sides (inside the skull; unlike filling holes,
    this holds where the ring has gaps: thin frontal bone, sinuses, sutures)."""
    inside = np.ones_like(bone)
    for axis in (0, 1):
        inside &= np.maximum.accumulate(bone, axis=axis)
        inside &= np.flip(np.maximum.accumulate(np.flip(bone, axis), axis=axis), axis)
    return inside & ~bone


SMOOTH_SIGMA = (0.5, 2.5 / ALONG_MM, 0.5 / ACROSS_MM)  # levels, rows, across (voxels)


def _smoothed(frame: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """``frame`` smoothed by :data:`SMOOTH_SIGMA` on the levels the searches read (those with rows deep below the
    inner table, and ``FALX_LEVELS`` either side), exactly as smoothing it all would give them; 0 elsewhere. A
    head CT covers about half of the frame's levels: this halves the smoothing."""
    smooth = np.zeros_like(frame)
    deep = np.flatnonzero((depth[:, :, (depth.shape[2] - 1) // 2] > MIN_DEPTH_MM).any(axis=1))
    if not deep.size:
        return smooth
    radius = int(4.0 * SMOOTH_SIGMA[0] + 0.5)  # scipy's reach along levels (truncate=4)
    lo, hi = max(deep[0] - FALX_LEVELS, 0), min(deep[-1] + FALX_LEVELS + 1, frame.shape[0])
    start, stop = max(lo - radius, 0), min(hi + radius, frame.shape[0])
    block = ndimage.gaussian_filter(frame[start:stop], sigma=SMOOTH_SIGMA)
    smooth[lo:hi] = block[lo - start:hi - start]
    return smooth


@dataclass
class FrameImage:
    """A plane-frame array (k, j, i) with what the searches need: smoothed along the midline, depth below the
    inner table within each level, the scan's CSF threshold."""

    smooth: np.ndarray
    depth: np.ndarray
    csf_below: float

    @classmethod
    def of(cls, frame: np.ndarray) -> FrameImage:
        bone = frame > 300
        depth = np.zeros(frame.shape, np.float32)
        for k in range(frame.shape[0]):
            if bone[k].sum() > 100:
                depth[k] = np.where(_enclosed(bone[k]),
                                    distance_to(bone[k], (ALONG_MM, ACROSS_MM)), 0)
        return cls(_smoothed(frame, depth), depth, _csf_threshold(frame, depth > MIN_DEPTH_MM))

    @property
    def centre_i(self) -> float:
        return (self.depth.shape[2] - 1) / 2


def _ridge_mask(profiles: np.ndarray, prominence: float, window: int) -> np.ndarray:
    """Per row of ``profiles`` (n, m): the local maxima that stand ``prominence`` above the lowest point on each
    side within ``window`` samples (``scipy.signal.find_peaks`` with ``prominence`` and ``wlen`` does this, but
    importing scipy.signal costs about 1.5 s per analysis). All rows at once: the septum search scores every
    row of a level."""
    from numpy.lib.stride_tricks import sliding_window_view

    half = window // 2
    profiles = np.atleast_2d(profiles)
    edge_left = np.repeat(profiles[:, :1], half, axis=1)
    edge_right = np.repeat(profiles[:, -1:], half, axis=1)
    # lowest point of [p - half, p] and of [p, p + half], the windows cut at the ends (padding with the end value
    # does not change a minimum that already includes it)
    left = sliding_window_view(np.concatenate([edge_left, profiles], axis=1), half + 1, axis=1).min(axis=2)
    right = sliding_window_view(np.concatenate([profiles, edge_right], axis=1), half + 1, axis=1).min(axis=2)
    inner = profiles[:, 1:-1]
    maxima = np.zeros(profiles.shape, bool)
    maxima[:, 1:-1] = (inner > profiles[:, :-2]) & (inner >= profiles[:, 2:])
    return maxima & (profiles - np.maximum(left, right) >= prominence)


def _ridges(profile: np.ndarray, prominence: float, window: int) -> list[int]:
    """:func:`_ridge_mask` of one profile, as indices."""
    return [int(p) for p in np.flatnonzero(_ridge_mask(profile, prominence, window)[0])]


def _peak_offset(profile: np.ndarray, peak: int, start: int, centre_i: float) -> float:
    """Signed offset (mm) of a profile's peak from the plane, refined by a parabola through its neighbours."""
    a, b, c = profile[peak - 1], profile[peak], profile[peak + 1]
    vertex = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
    return float((start + peak + vertex - centre_i) * ACROSS_MM)


def septum_samples(image: FrameImage) -> list[tuple[int, int, float]]:
    """(level, row, signed offset in mm) of each septum sample: a ridge of at least ``MIN_PROMINENCE_HU`` between
    two CSF spaces (one ``MIN_CSF_RUN_MM`` wide, the other at least ``MIN_COMPRESSED_RUN_MM``), each part of a
    CSF region of at least ``MIN_VENTRICLE_MM2`` on the level (requiring two separate regions lost the real head's
    septum, whose ventricles touch through it on the smoothed image), on profiles smoothed along the septum."""
    centre_i = image.centre_i
    reach = int(MAX_OFFSET_MM / ACROSS_MM)
    flank, wall = int(MIN_CSF_RUN_MM / ACROSS_MM), int(MAX_WALL_MM / ACROSS_MM)
    narrow = int(MIN_COMPRESSED_RUN_MM / ACROSS_MM)
    lo, hi = int(centre_i) - reach - wall - flank, int(centre_i) + reach + wall + flank + 1
    min_voxels = MIN_VENTRICLE_MM2 / (ACROSS_MM * ALONG_MM)
    samples = []
    deep_rows = image.depth[:, :, int(centre_i)] > MIN_DEPTH_MM
    for k in np.flatnonzero(deep_rows.any(axis=1)):
        spaces, _ = ndimage.label((image.smooth[k] < image.csf_below) & (image.depth[k] > 0))
        sizes = np.bincount(spaces.ravel())
        rows = np.flatnonzero(deep_rows[k])
        ridges = _ridge_mask(image.smooth[k, rows, lo:hi], MIN_PROMINENCE_HU, 2 * wall + 1)
        for j, ridge in zip(rows, ridges):
            profile = image.smooth[k, j, lo:hi]
            csf = profile < image.csf_below
            best = None
            for peak in np.flatnonzero(ridge):
                left = peak - np.argmax(csf[peak::-1]) if csf[:peak].any() else -1
                right = peak + np.argmax(csf[peak:]) if csf[peak:].any() else len(csf)
                if left < flank or right + flank > len(csf) or right - left > wall:
                    continue
                wide = (csf[left - flank + 1:left + 1].all(), csf[right:right + flank].all())
                thin = (csf[left - narrow + 1:left + 1].all(), csf[right:right + narrow].all())
                if not (any(wide) and all(thin)):
                    continue
                a, b = spaces[j, lo + left], spaces[j, lo + right]
                if a == 0 or b == 0 or min(sizes[a], sizes[b]) < min_voxels:
                    continue
                offset = _peak_offset(profile, peak, lo, centre_i)
                if abs(offset) <= MAX_OFFSET_MM and image.depth[k, j, lo + peak] > MIN_DEPTH_MM:
                    if best is None or abs(offset) < abs(best):
                        best = offset
            if best is not None:
                samples.append((int(k), int(j), best))
    return samples


def _most_prominent(profile: np.ndarray, prominence: float, window: int) -> int | None:
    """The ridge of ``profile`` that stands highest above both sides within ``window`` samples, or None."""
    half = window // 2
    peaks = _ridges(profile, prominence, window)

    def height(p: int) -> float:
        return profile[p] - max(profile[max(p - half, 0):p + 1].min(), profile[p:p + half + 1].min())

    return max(peaks, key=height) if peaks else None


def _midline_marker(profile: np.ndarray) -> tuple[int, bool] | None:
    """(index, is a ridge) of the midline on a profile next to the inner table: the falx (a thin dense sheet;
    gyri are broader) or, where the falx is not resolved, the interhemispheric fissure (a CSF trough)."""
    ridge = _most_prominent(profile, FALX_PROMINENCE_HU, int(2 * FALX_HALF_WIDTH_MM / ACROSS_MM))
    if ridge is not None:
        return ridge, True
    trough = _most_prominent(-profile, FISSURE_DEPTH_HU, int(2 * FISSURE_HALF_WIDTH_MM / ACROSS_MM))
    return None if trough is None else (trough, False)


def falx_attachment(image: FrameImage, levels: range, anterior: bool) -> tuple[float, float] | None:
    """(row, signed offset in mm) of the falx (or the fissure around it) next to the anterior or posterior inner
    table, within ``FALX_REACH_MM`` of the plane on rows 3 to 30 mm inside the table, median over ``levels``."""
    centre_i = image.centre_i
    reach = int(FALX_REACH_MM / ACROSS_MM)
    lo, hi = int(centre_i) - reach, int(centre_i) + reach + 1
    found = []
    for k in levels:
        inside = np.flatnonzero(image.depth[k, :, int(centre_i)] > 0)
        if inside.size < 60:
            continue
        table = inside[0] if anterior else inside[-1]
        near, far = int(3 / ALONG_MM), int(30 / ALONG_MM)
        rows = range(table + near, table + far) if anterior else range(table - far, table - near)
        for j in rows:
            profile = image.smooth[k, j, lo:hi]
            marker = _midline_marker(profile)
            if marker is not None:
                found.append((j, _peak_offset(profile if marker[1] else -profile, marker[0], lo, centre_i)))
    if len(found) < 5:
        return None
    offsets = np.array([o for _, o in found])
    median = float(np.median(offsets))
    consistent = np.abs(offsets - median) <= 1.5
    if consistent.mean() < 0.5:
        return None
    return float(np.median([j for (j, _), ok in zip(found, consistent) if ok])), float(np.median(offsets[consistent]))


@dataclass
class HeadAnatomy:
    """What :func:`find_head_anatomy` found on a CT: the midline frame, the septum and the falx attachments.

    Frame coordinates: i across the plane (to patient left), j anterior to posterior, k inferior to superior."""

    frame: sitk.Image  # after :meth:`for_transfer`, its geometry alone (one voxel)
    image: FrameImage
    plane_facts: dict
    septum_level: int | None
    septum: list[tuple[int, int, float]]  # (level, row, offset from the plane in mm) on the levels measured
    falx: tuple[tuple[float, float] | None, tuple[float, float] | None]  # (row, offset) front and back

    @property
    def septum_row(self) -> float | None:
        return float(np.median([j for _, j, _ in self.septum])) if self.septum else None

    def ideal_offset(self, row: float) -> float:
        """The ideal midline's offset (mm) from the plane on ``row``: the line joining the falx attachments, or
        the skull's symmetry plane (0) when either is missing."""
        front, back = self.falx
        if front and back and back[0] > front[0]:
            return front[1] + (row - front[0]) / (back[0] - front[0]) * (back[1] - front[1])
        return 0.0

    def midline_shift(self) -> dict:
        """``report.json``'s midline shift: the septum's median deviation from the ideal midline over its smoothed
        curve, signed to the patient's left, or why it was not measured. The median underestimates a bent
        septum's largest deviation (by up to 1 mm on the generator's 5 mm shifts, more next to a hematoma)."""
        method = "falx attachments" if self.ideal_method_is_falx else "skull symmetry plane"
        ideal = {"method": method, **self.plane_facts,
                 "falx_offsets_mm": [None if f is None else round(f[1], 2) for f in self.falx]}
        if not self.septum:
            return {"measurable": False, "ideal_midline": ideal,
                    "reason": "the septum pellucidum was not found (ventricles compressed or effaced, or not in "
                              "the scan)"}
        shifts = np.array([o - self.ideal_offset(j) for _, j, o in self.septum])
        extreme = float(np.median(shifts))  # the 90th percentile followed stray ridges (5 mm errors)
        at = self.septum[int(np.argmin(np.abs(shifts - extreme)))]
        point = self.frame.TransformContinuousIndexToPhysicalPoint(
            [self.image.centre_i + at[2] / ACROSS_MM, float(at[1]), float(at[0])])
        rows = {j for _, j, _ in self.septum}
        return {"measurable": True, "shift_mm": round(abs(extreme), 1),
                "direction": "none" if abs(extreme) < 0.5 else ("left" if extreme > 0 else "right"),
                "signed_to_left_mm": round(extreme, 2),
                "largest_sample_mm": round(float(shifts[np.argmax(np.abs(shifts))]), 2),
                "septum_length_mm": round((max(rows) - min(rows) + 1) * ALONG_MM, 1),
                "septum_point_lps": [round(float(v), 1) for v in point], "ideal_midline": ideal}

    def for_transfer(self) -> HeadAnatomy:
        """This anatomy without what only the search needed, the frame's voxels and the smoothed image: what
        :meth:`midline_shift` and :meth:`position` read (the frame's geometry, the depth below the inner table),
        a third of the bytes to send from another process."""
        geometry = sitk.Image([1, 1, 1], sitk.sitkUInt8)
        geometry.SetOrigin(self.frame.GetOrigin())
        geometry.SetSpacing(self.frame.GetSpacing())
        geometry.SetDirection(self.frame.GetDirection())
        image = FrameImage(np.empty((0, 0, 0), np.float32), self.image.depth, self.image.csf_below)
        return HeadAnatomy(geometry, image, self.plane_facts, self.septum_level, self.septum, self.falx)

    @property
    def ideal_method_is_falx(self) -> bool:
        front, back = self.falx
        return bool(front and back and back[0] > front[0])

    def position(self, point_lps: np.ndarray) -> dict[str, float] | None:
        """A point relative to the septum landmark (mm): ``lateral`` from the ideal midline (+ left), ``posterior``
        from the septum's middle row, ``superior`` from its level, and ``depth`` below the inner table on its
        level; None without a septum or outside the frame."""
        if self.septum_level is None:
            return None
        i, j, k = self.frame.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps])
        size = self.image.depth.shape
        if not (0 <= k < size[0] and 0 <= j < size[1] and 0 <= i < size[2]):
            return None
        depth = float(self.image.depth[int(round(k)), int(round(j)), int(round(i))])
        return {"lateral": (i - self.image.centre_i) * ACROSS_MM - self.ideal_offset(j),
                "posterior": (j - self.septum_row) * ALONG_MM, "superior": (k - self.septum_level) * LEVEL_MM,
                "depth": depth}


def find_head_anatomy(ct: sitk.Image, check: Callable[[], None] | None = None) -> HeadAnatomy:
    """The head frame of a CT.

    Args:
        ct: a head CT in HU, any orientation.
        check: called between the steps; may raise to stop the search (the anatomy worker's cancel).

    Returns:
        The :class:`HeadAnatomy`: the skull's symmetry plane, the septum pellucidum and the falx attachments,
        with :meth:`HeadAnatomy.midline_shift` and :meth:`HeadAnatomy.position`.

    Raises:
        ValueError: no skull is found.
    """
    check = check or (lambda: None)
    plane, facts = symmetry_plane(ct)
    check()
    arr = sitk.GetArrayViewFromImage(ct)
    kji = np.argwhere(arr[:, ::4, ::4] > -300) * [1, 4, 4]
    centre = np.array(ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in kji.mean(0)[::-1]]))
    frame = plane_frame(ct, plane, centre)
    check()
    image = FrameImage.of(sitk.GetArrayFromImage(frame))
    check()
    samples = septum_samples(image)
    check()
    level, rows = _longest_septum(samples)
    if len(rows) * ALONG_MM < MIN_SEPTUM_MM:
        return HeadAnatomy(frame, image, facts, None, [], (None, None))
    used = _septum_curve(samples, level, float(np.median([o for _, o in rows])))
    around = range(max(level - FALX_LEVELS, 0), min(level + FALX_LEVELS + 1, image.smooth.shape[0]))
    falx = (falx_attachment(image, around, True), falx_attachment(image, around, False))
    return HeadAnatomy(frame, image, facts, level, used, falx)


def measure_midline_shift(ct: sitk.Image) -> dict:
    """Midline shift for ``report.json`` (see :meth:`HeadAnatomy.midline_shift`)."""
    try:
        return find_head_anatomy(ct).midline_shift()
    except (ValueError, RuntimeError) as exc:
        return {"measurable": False, "reason": f"the skull's symmetry plane was not found ({exc})"}


def _septum_runs(samples: list[tuple[int, int, float]]) -> dict[int, list[list[tuple[int, float]]]]:
    """Per level, the runs of contiguous rows (gaps of at most 2 mm) whose offsets agree (1.5 mm from row to
    row): a septum is one smooth curve, stray ridges are not."""
    levels: dict[int, list[tuple[int, float]]] = {}
    for k, j, offset in samples:
        levels.setdefault(k, []).append((j, offset))
    runs = {}
    for k, rows in levels.items():
        rows.sort()
        found, current = [], [rows[0]]
        for row in rows[1:]:
            if row[0] - current[-1][0] <= 2 and abs(row[1] - current[-1][1]) <= 1.5:
                current.append(row)
            else:
                found.append(current)
                current = [row]
        found.append(current)
        runs[k] = found
    return runs


def _longest_septum(samples: list[tuple[int, int, float]]) -> tuple[int | None, list[tuple[int, float]]]:
    """The septum's level and that level's longest run of contiguous, consistent samples (row, offset).

    Levels are scored with their neighbours (``SEPTUM_BLOCK`` levels either side): the septum spans 10-20 mm
    from the corpus callosum down to the fornix, a chance ridge between two cisterns fewer levels."""
    runs = {k: max(found, key=len) for k, found in _septum_runs(samples).items()}
    if not runs:
        return None, []

    def score(k: int) -> tuple[int, int]:
        return sum(len(runs.get(k + d, ())) for d in range(-SEPTUM_BLOCK, SEPTUM_BLOCK + 1)), len(runs[k])

    best = max(runs, key=score)
    return best, runs[best]


def _septum_curve(samples: list[tuple[int, int, float]], level: int, reference: float) -> list[tuple[int, int, float]]:
    """The septum's samples on ``level`` and ``SEPTUM_LEVELS_USED`` either side: runs of at least
    ``MIN_RUN_ROWS`` rows within ``MAX_BEND_MM`` of ``reference``, each smoothed by a running median of 5 rows."""
    curve = []
    for k, found in _septum_runs(samples).items():
        if abs(k - level) > SEPTUM_LEVELS_USED:
            continue
        for run in found:
            if len(run) < MIN_RUN_ROWS or abs(float(np.median([o for _, o in run])) - reference) > MAX_BEND_MM:
                continue
            offsets = np.array([o for _, o in run])
            smooth = [float(np.median(offsets[max(n - 2, 0):n + 3])) for n in range(len(run))]
            curve += [(k, j, o) for (j, _), o in zip(run, smooth)]
    return curve
