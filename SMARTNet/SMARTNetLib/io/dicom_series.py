"""DICOM folders as users hand them over: several series, localizers, DICOMDIRs, tilted gantries, gaps.

:func:`read_dicom_folder` finds the image series (in sub-folders too when the folder has a DICOMDIR or no
files of its own), chooses the axial CT series (not a localizer, most images), reads it with SimpleITK and,
when its slices do not lie on a regular grid (gantry tilt, a missing slice, uneven spacing), resamples
them by their ImagePositionPatient onto one, as Slicer's DICOM plugin does, with a warning that says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.contracts.errors import SmartNetError

TILT_TOLERANCE_DEG = 0.5
SPACING_TOLERANCE = 0.1  # a slice gap this much (relative) off the median makes the grid irregular


@dataclass(frozen=True)
class SeriesInfo:
    """One image series of a folder."""

    uid: str
    files: tuple[str, ...]  # in slice order
    modality: str = ""
    description: str = ""
    number: str = ""
    orientation: str = ""  # axial, coronal, sagittal or oblique (from the first image's orientation)
    localizer: bool = False

    def summary(self) -> dict:
        return {"series_instance_uid": self.uid, "images": len(self.files), "modality": self.modality,
                "description": self.description, "series_number": self.number, "orientation": self.orientation,
                "localizer": self.localizer, "folder": os.path.dirname(self.files[0]) if self.files else ""}


@dataclass
class DicomVolume:
    """The chosen series as a volume, with what the user should know about the choice and the grid."""

    image: sitk.Image
    series: SeriesInfo
    others: list[SeriesInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resampled: bool = False  # the slices were moved onto a regular grid: voxel k is no longer file k

    def report(self) -> dict:
        return {"chosen": self.series.summary(), "others": [s.summary() for s in self.others]}


def _folders(path: Path) -> list[Path]:
    """``path`` itself, or every folder below it when it holds a DICOMDIR or no file of its own."""
    own_files = [p for p in path.iterdir() if p.is_file()]
    if (path / "DICOMDIR").is_file() or not own_files:
        return sorted({Path(d) for d, _dirs, files in os.walk(path) if files})
    return [path]


def _header(file: str):
    import pydicom

    try:
        return pydicom.dcmread(file, stop_before_pixels=True, force=True)
    except Exception:  # unreadable header: the series reader will say more
        return None


def _orientation(header) -> str:
    cosines = header.get("ImageOrientationPatient") if header is not None else None
    if not cosines or len(cosines) != 6:
        return ""
    normal = np.abs(np.cross(np.asarray(cosines[:3], float), np.asarray(cosines[3:], float)))
    axis = int(np.argmax(normal))
    if normal[axis] < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def find_series(path: str | Path) -> list[SeriesInfo]:
    """Image series under ``path`` (see :func:`_folders`), with what their first header says."""
    path = Path(path)
    reader = sitk.ImageSeriesReader()
    found = []
    for folder in _folders(path):
        try:
            uids = reader.GetGDCMSeriesIDs(str(folder))
        except RuntimeError:
            uids = ()
        for uid in uids:
            files = tuple(reader.GetGDCMSeriesFileNames(str(folder), uid))
            header = _header(files[0]) if files else None
            image_type = [str(v).upper() for v in (header.get("ImageType") or [])] if header is not None else []
            found.append(SeriesInfo(
                uid=uid, files=files, modality=str(header.get("Modality", "")) if header is not None else "",
                description=str(header.get("SeriesDescription", "")) if header is not None else "",
                number=str(header.get("SeriesNumber", "")) if header is not None else "",
                orientation=_orientation(header), localizer="LOCALIZER" in image_type))
    return found


def choose_series(series: list[SeriesInfo]) -> SeriesInfo:
    """The series to analyze: CT before other modalities, not a localizer, axial, then the most images."""
    return max(series, key=lambda s: (s.modality in ("CT", ""), not s.localizer, s.orientation == "axial",
                                      len(s.files) > 1, len(s.files)))


def read_dicom_folder(path: str | Path) -> DicomVolume:
    """Read the chosen series of a DICOM folder; raises :class:`SmartNetError` naming the folder."""
    series = find_series(path)
    if not series:
        raise SmartNetError("no DICOM image series found in this folder", path)
    chosen = choose_series(series)
    others = [s for s in series if s is not chosen]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    try:
        # one file: an Enhanced (multi-frame) CT, which the series reader would give as 4D
        image = sitk.ReadImage(chosen.files[0]) if len(chosen.files) == 1 else reader.Execute()
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1][:200] if str(err).strip() else "unknown reason"
        raise SmartNetError(f"cannot read DICOM series {chosen.uid}: {reason}", path) from None
    volume = DicomVolume(image, chosen, others)
    if others:
        names = ", ".join(f"{s.description or s.uid} ({len(s.files)} images)" for s in others)
        volume.warnings.append(f"{len(series)} series in the folder: analyzed {chosen.description or chosen.uid} "
                               f"({len(chosen.files)} images, {chosen.orientation or 'unknown orientation'}); "
                               f"not {names}")
    volume.image, grid_warnings = regular_grid(image, list(chosen.files))
    volume.warnings += grid_warnings
    volume.resampled = bool(grid_warnings)
    return volume


def slice_positions(files: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(positions (n, 3), row direction, column direction) in LPS from the headers, or None if unknown."""
    headers = [_header(f) for f in files]
    if any(h is None or "ImagePositionPatient" not in h or "ImageOrientationPatient" not in h for h in headers):
        return None
    try:
        cosines = np.asarray(headers[0].ImageOrientationPatient, float)
        positions = np.array([np.asarray(h.ImagePositionPatient, float) for h in headers])
    except (TypeError, ValueError):
        return None
    if positions.shape != (len(files), 3) or cosines.shape != (6,):
        return None
    return positions, cosines[:3], cosines[3:]


def frame_positions(file: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(positions, row, column) of an Enhanced (multi-frame) image's frames, from its functional groups."""
    header = _header(file)
    try:
        frames = header.PerFrameFunctionalGroupsSequence
        shared = header.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in header else None

        def group(frame, name):
            return frame.get(name) or (shared.get(name) if shared is not None else None)

        cosines = np.asarray(group(frames[0], "PlaneOrientationSequence")[0].ImageOrientationPatient, float)
        positions = np.array([np.asarray(group(f, "PlanePositionSequence")[0].ImagePositionPatient, float)
                              for f in frames])
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None
    if positions.shape != (len(frames), 3) or cosines.shape != (6,):
        return None
    return positions, cosines[:3], cosines[3:]


def regular_grid(image: sitk.Image, files: list[str]) -> tuple[sitk.Image, list[str]]:
    """``image`` on its slices' true grid: unchanged when the slices lie on a regular one (the geometry of an
    Enhanced CT is taken from its frames' positions), else resampled by their positions."""
    if image.GetDimension() != 3 or image.GetDepth() < 2:
        return image, []
    enhanced = len(files) == 1
    if not enhanced and len(files) != image.GetDepth():
        return image, []
    found = frame_positions(files[0]) if enhanced else slice_positions(files)
    if found is None or len(found[0]) != image.GetDepth():
        return image, []
    positions, row, column = found
    normal = np.cross(row, column)
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(normal))) or np.linalg.norm(normal) < 0.5:
        raise SmartNetError("the series' ImagePositionPatient or ImageOrientationPatient is not a valid geometry",
                            os.path.dirname(files[0]))
    offsets = positions - positions[0]
    along = offsets @ normal
    if along[-1] < 0:
        normal, along = -normal, -along
    steps = np.diff(along)
    if np.any(steps <= 0):
        raise SmartNetError("two slices of the series share a position (duplicate or mixed series)",
                            os.path.dirname(files[0]))
    median = float(np.median(steps))
    shear = offsets - np.outer(along, normal)  # in-plane displacement of each slice (gantry tilt)
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(shear[-1]), along[-1])))
    uneven = float(np.max(np.abs(steps - median)) / median)
    if tilt <= TILT_TOLERANCE_DEG and uneven <= SPACING_TOLERANCE:
        if enhanced:  # frames in file order, on a regular grid: the geometry from the frames themselves
            image = sitk.Image(image)
            image.SetOrigin(tuple(float(v) for v in positions[0]))
            image.SetSpacing((*image.GetSpacing()[:2], median))
            image.SetDirection(tuple(float(v) for v in np.column_stack([row, column, normal]).ravel()))
        return image, []
    warnings = []
    if tilt > TILT_TOLERANCE_DEG:
        warnings.append(f"gantry tilt of {tilt:.1f} degrees: the slices were resampled onto a regular grid")
    if uneven > SPACING_TOLERANCE:
        gap = int(np.argmax(steps))
        warnings.append(f"uneven slice spacing: {steps[gap]:.1f} mm between slices {gap} and {gap + 1} (median "
                        f"{median:.1f} mm), a slice may be missing; resampled onto a regular {median:.1f} mm grid, "
                        "values in the gap are interpolated")
    return _resample(image, positions[0], row, column, normal, along, shear, median), warnings


def _resample(image: sitk.Image, origin: np.ndarray, row: np.ndarray, column: np.ndarray, normal: np.ndarray,
              along: np.ndarray, shear: np.ndarray, step: float) -> sitk.Image:
    """Each slice moved onto the first slice's in-plane grid, then linear interpolation along the normal."""
    from scipy import ndimage

    voxels = sitk.GetArrayFromImage(image).astype(np.float32)  # (k, j, i)
    sx, sy = image.GetSpacing()[:2]
    shifts = np.stack([shear @ column / sy, shear @ row / sx], axis=1)  # (rows j, columns i) per slice
    planes = [ndimage.shift(voxels[k], shifts[k], order=1, mode="nearest") if np.any(np.abs(shifts[k]) > 1e-3)
              else voxels[k] for k in range(len(along))]
    count = int(round(along[-1] / step)) + 1
    targets = np.arange(count) * step
    result = np.empty((count, *voxels.shape[1:]), np.float32)
    for m, z in enumerate(targets):
        k = int(np.clip(np.searchsorted(along, z, side="right") - 1, 0, len(along) - 2))
        w = float(np.clip((z - along[k]) / (along[k + 1] - along[k]), 0.0, 1.0))
        result[m] = (1 - w) * planes[k] + w * planes[k + 1]
    if np.issubdtype(sitk.GetArrayViewFromImage(image).dtype, np.integer):
        result = np.round(result)
    out = sitk.GetImageFromArray(result.astype(sitk.GetArrayViewFromImage(image).dtype))
    out.SetSpacing((sx, sy, step))
    out.SetOrigin(tuple(float(v) for v in origin))
    out.SetDirection(tuple(float(v) for v in np.column_stack([row, column, normal]).ravel()))
    return out
