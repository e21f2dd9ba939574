"""Training data: MONAI-style datalists, label files (label maps or Slicer ``.seg.nrrd``) and their checks.

A datalist is the MONAI convention::

    {"training": [{"image": "ct/case1.nii.gz", "label": "labels/case1.nii.gz"}, ...],
     "validation": [...],            # optional: otherwise split off with --val-split and the seed
     "synthetic": true,              # optional: the data are synthetic (recorded in the model card)
     "classes": "subtypes"}          # optional: "subtypes" or "binary" (else inferred from the labels)

Paths are relative to the datalist file. Labels are label maps (0 background, 1 EDH, 2 IPH, 3 IVH,
4 SAH, 5 SDH) or Slicer segmentations whose segment names map to classes through
:func:`~SMARTNetLib.contracts.classes.class_from_segment_name`. A label may be left out for a normal CT.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.contracts.classes import SUBTYPES, class_from_segment_name, get_class
from SMARTNetLib.contracts.errors import SmartNetError

GENERIC = 6  # internal label value of a segment named just "hemorrhage" (no subtype known)
MAX_VALUE = 5
SPACING_TOLERANCE = 1e-3  # relative
DIRECTION_TOLERANCE = 1e-3  # absolute, on direction cosines
ORIGIN_TOLERANCE = 1e-2  # in voxels


@dataclass(frozen=True)
class Case:
    """One training or validation volume."""

    image: Path
    label: Path | None


@dataclass
class Datalist:
    """The cases of a datalist file, with its top-level metadata."""

    path: Path
    training: list[Case]
    validation: list[Case]
    synthetic: bool = False
    classes: str | None = None  # "subtypes", "binary" or None (infer from labels)
    metadata: dict = field(default_factory=dict)


@dataclass
class LabelInfo:
    """A label read onto its CT's grid: (k, j, i) uint8 values 0..5 (or :data:`GENERIC`)."""

    array: np.ndarray
    kind: str  # "subtypes" (values 2..5 or named subtype segments), "binary" (0/1 or a hemorrhage segment), "empty"
    warnings: list[str] = field(default_factory=list)


def load_datalist(path: str | Path, val_split: float = 0.2, seed: int = 0) -> Datalist:
    """Read and check a datalist; every file must exist. Splits off validation cases when there are none."""
    path = Path(path)
    if not path.is_file():
        raise SmartNetError("datalist file not found", path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SmartNetError(f"not a JSON datalist: {err}", path) from None
    if not isinstance(data, dict):
        raise SmartNetError('a datalist is a JSON object with a "training" list', path)
    training = _cases(data.get("training"), path, "training")
    validation = _cases(data.get("validation"), path, "validation")
    if not training:
        raise SmartNetError('empty datalist: no "training" cases', path)
    if not validation and val_split > 0 and len(training) > 1:
        order = list(range(len(training)))
        random.Random(seed).shuffle(order)
        count = min(max(1, round(val_split * len(training))), len(training) - 1)
        held = set(order[:count])
        validation = [c for i, c in enumerate(training) if i in held]
        training = [c for i, c in enumerate(training) if i not in held]
    classes = data.get("classes")
    if classes not in (None, "subtypes", "binary"):
        raise SmartNetError(f'"classes" must be "subtypes" or "binary", not {classes!r}', path)
    meta = {k: v for k, v in data.items() if k not in ("training", "validation") and isinstance(v, (str, int, float,
                                                                                                     bool))}
    return Datalist(path, training, validation, bool(data.get("synthetic", False)), classes, meta)


def _cases(entries, datalist: Path, key: str) -> list[Case]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise SmartNetError(f'"{key}" must be a list of {{"image": ..., "label": ...}} entries', datalist)
    cases = []
    for n, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise SmartNetError(f'{key} entry {n} has no "image" path', datalist)
        image = _resolve(entry["image"], datalist)
        label = _resolve(entry["label"], datalist) if entry.get("label") else None
        for file in (image, label):
            if file is not None and not file.exists():
                raise SmartNetError(f"file not found (listed in {datalist.name}, {key} entry {n})", file)
        cases.append(Case(image, label))
    return cases


def _resolve(relative: str, datalist: Path) -> Path:
    path = Path(relative).expanduser()
    return path if path.is_absolute() else datalist.parent / path


def read_label(path: Path | None, image: sitk.Image, image_path: Path | None = None) -> LabelInfo:
    """Read a label map or ``.seg.nrrd`` onto ``image``'s grid; checks the geometry and the values."""
    shape = image.GetSize()[::-1]
    if path is None:
        return LabelInfo(np.zeros(shape, np.uint8), "empty")
    if path.name.lower().endswith(".seg.nrrd"):
        label, kind, warnings = _read_segmentation(path)
        label = _onto_image(label, image, path, allow_subgrid=True)
        array = sitk.GetArrayFromImage(label).astype(np.uint8)
    else:
        try:
            label = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise SmartNetError(f"cannot read label: {str(err).strip().splitlines()[-1][:150]}", path) from None
        if label.GetNumberOfComponentsPerPixel() != 1 or label.GetDimension() != 3:
            raise SmartNetError("label is not a 3D single-component label map", path)
        label = _onto_image(label, image, path, allow_subgrid=False)
        values = sitk.GetArrayFromImage(label)
        if np.issubdtype(values.dtype, np.floating):
            if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)):
                raise SmartNetError("label map has non-integer values", path)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > MAX_VALUE:
            raise SmartNetError(f"label values {low}..{high} are outside 0..5 (1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH)",
                                path)
        array = values.astype(np.uint8)
        kind, warnings = ("subtypes" if high > 1 else "binary" if high == 1 else "empty"), []
    if kind != "empty" and not array.any():
        kind = "empty"
    return LabelInfo(array, kind, warnings)


def _read_segmentation(path: Path) -> tuple[sitk.Image, str, list[str]]:
    """A Slicer segmentation (slicerio) -> label image with subtype values (or :data:`GENERIC`), its kind."""
    import slicerio

    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as err:  # slicerio/pynrrd raise many kinds of errors for bad files
        raise SmartNetError(f"cannot read segmentation: {str(err).splitlines()[0][:150]}", path) from None
    pairs, warnings, kinds = [], [], set()
    for segment in segmentation.get("segments", []):
        name = segment.get("name") or segment.get("id") or ""
        cls = class_from_segment_name(name)
        if cls is None:
            warnings.append(f"{path}: segment {name!r} is not a known hemorrhage class; ignored")
            continue
        value = GENERIC if cls == "hemorrhage" else get_class(cls).label_value
        kinds.add("binary" if cls == "hemorrhage" else "subtypes")
        pairs.append((name, value))
    if pairs:
        voxels = slicerio.extract_segments(segmentation, pairs)["voxels"]
    else:
        voxels = np.zeros(segmentation["voxels"].shape[-3:], np.uint8)
    ijk = np.asarray(segmentation["ijkToLPS"], float)
    label = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(voxels, np.uint8).transpose(2, 1, 0)))
    spacing = np.linalg.norm(ijk[:3, :3], axis=0)
    label.SetSpacing(spacing.tolist())
    label.SetDirection((ijk[:3, :3] / spacing).flatten().tolist())
    label.SetOrigin(ijk[:3, 3].tolist())
    kind = "subtypes" if "subtypes" in kinds else "binary" if kinds else "empty"
    return label, kind, warnings


def _onto_image(label: sitk.Image, image: sitk.Image, path: Path, allow_subgrid: bool) -> sitk.Image:
    """``label`` on ``image``'s exact grid; a Slicer segmentation cropped to its extent is padded back."""
    spacing_ok = np.allclose(label.GetSpacing(), image.GetSpacing(), rtol=SPACING_TOLERANCE, atol=0)
    direction_ok = np.allclose(label.GetDirection(), image.GetDirection(), atol=DIRECTION_TOLERANCE)
    tolerance = ORIGIN_TOLERANCE * min(image.GetSpacing())
    origin_ok = np.allclose(label.GetOrigin(), image.GetOrigin(), atol=tolerance)
    if spacing_ok and direction_ok and origin_ok and label.GetSize() == image.GetSize():
        label = sitk.Cast(label, sitk.sitkUInt8) if label.GetPixelID() != sitk.sitkUInt8 else label
        label.CopyInformation(image)  # free of round-off (NIfTI stores float32 geometry)
        return label
    if allow_subgrid and spacing_ok and direction_ok:
        return sitk.Resample(sitk.Cast(label, sitk.sitkUInt8), image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    what = [name for name, ok in (("size", label.GetSize() == image.GetSize()), ("spacing", spacing_ok),
                                  ("origin", origin_ok), ("direction", direction_ok)) if not ok]
    detail = (f"size {'x'.join(map(str, label.GetSize()))} vs {'x'.join(map(str, image.GetSize()))}"
              if "size" in what else f"{what[0]} differs")
    raise SmartNetError(f"label geometry does not match its image ({', '.join(what)}: {detail})", path)


def to_classes(array: np.ndarray, mode: str) -> np.ndarray:
    """Internal label values -> the model's label values: subtypes keep 1..5, binary maps any label to 1."""
    if mode == "binary":
        return (array > 0).astype(np.uint8)
    return np.where(array == GENERIC, 0, array).astype(np.uint8)


def class_names(mode: str) -> tuple[str, ...]:
    return ("hemorrhage",) if mode == "binary" else tuple(c.name for c in SUBTYPES)
