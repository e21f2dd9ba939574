"""The training set of the SMARTNetTraining Slicer module: cases, segment mapping, checks, files on disk.

A case is a CT volume with its segmentation, either nodes of the Slicer scene (``volume_id`` and
``segmentation_id``) or files (``image`` and ``label``, e.g. from a folder or a MONAI datalist). Each
segment maps to a hemorrhage class by its name (:func:`~SMARTNetLib.contracts.classes.class_from_segment_name`)
or by its terminology; segments that map to nothing are flagged and left out of training.

The set is plain data: it is saved as JSON (in the scene's parameter node, or as ``training_set.json``
in a project folder) and restored from it. Exporting writes each scene case as ``<stem>.nrrd`` +
``<stem>.seg.nrrd`` (one segment per class, canonical names, label values of :mod:`~SMARTNetLib.contracts.classes`)
and a MONAI datalist next to them.

Example::

    cases = TrainingSet()
    cases.add(TrainingCase("head 1", volume_id="vtkMRMLScalarVolumeNode1", segmentation_id="vtkMRMLSegmentationNode1",
                           segments=[segment_info("Segment_1", "SDH")]))
    cases.add_from_datalist("/data/datalist.json")
    for problem in cases.problems():
        print(problem.level, problem.message)
    TrainingSet.from_json(cases.to_json())

Only numpy, SimpleITK and slicerio (all three in Slicer's Python once the engine is installed), and those
only inside the functions that read or write files: the Slicer module imports this file at start-up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from SMARTNetLib.contracts.classes import HEMORRHAGE_TYPE, SUBTYPES, class_from_segment_name, get_class
from SMARTNetLib.contracts.files import IMAGE_SUFFIXES, atomic_path, image_stem, write_text_atomic

FORMAT_VERSION = 1
PROJECT_FILE = "training_set.json"
DATALIST_FILE = "datalist.json"
MIN_CASES = 2  # one to train on and one to validate on
# Names that mark a label file in a folder of cases (``case1.seg.nrrd``, ``case1_label.nii.gz``...).
LABEL_MARKERS = (".seg", "_seg", "-seg", ".label", "_label", "-label", "_labels", "_mask", "-mask", "_gt")
COVERAGE_TOLERANCE_VOXELS = 1.0  # content may reach this far past the volume's edge (voxel-centre rounding)


# ---------------------------------------------------------------------------------------------- segments
@dataclass
class SegmentInfo:
    """One segment of a case's segmentation and the class it trains (None: left out)."""

    segment_id: str
    name: str
    terminology: str = ""
    subtype: str | None = None  # a subtype name or "hemorrhage"
    source: str = ""  # how it was mapped: "name", "terminology", "label value", "user", or "" (unmapped)

    @property
    def mapped(self) -> bool:
        return self.subtype is not None


def parse_terminology(tag: str) -> dict[str, list[str]]:
    """Fields of a Slicer terminology tag (``context~scheme^code^meaning~type~modifier~region context~...``).

    The format is the one Slicer's terminology logic serializes (``SerializeTerminologyEntry``): 7 fields
    separated by ``~``, each coded field a ``scheme^value^meaning`` triple. Unknown or empty fields are [].
    """
    parts = (tag or "").split("~")
    names = ("category", "type", "typeModifier", None, "anatomicRegion", "anatomicRegionModifier")
    fields: dict[str, list[str]] = {}
    for index, name in enumerate(names, start=1):
        if name is None:
            continue
        triple = parts[index].split("^") if index < len(parts) else []
        fields[name] = triple if len(triple) == 3 and any(triple) else []
    return fields


def class_from_terminology(tag: str) -> str | None:
    """A class name from a terminology tag: a subtype modifier or meaning, else "hemorrhage" for the type."""
    fields = parse_terminology(tag)
    for key in ("typeModifier", "type"):
        triple = fields.get(key) or []
        for text in (triple[1:3] if triple else []):  # code value (e.g. "SDH"), then code meaning
            found = class_from_segment_name(text) if text else None
            if found and (found != "hemorrhage" or key == "type"):
                return found
    triple = fields.get("type") or []
    if triple and triple[0] == HEMORRHAGE_TYPE[0] and triple[1] == HEMORRHAGE_TYPE[1]:
        return "hemorrhage"
    return None


def segment_info(segment_id: str, name: str, terminology: str = "") -> SegmentInfo:
    """A segment mapped by its name first (what users type), else by its terminology."""
    found = class_from_segment_name(name)
    if found:
        return SegmentInfo(segment_id, name, terminology, found, "name")
    found = class_from_terminology(terminology)
    if found:
        return SegmentInfo(segment_id, name, terminology, found, "terminology")
    return SegmentInfo(segment_id, name, terminology, None, "")


def mapping_text(segment: SegmentInfo) -> str:
    """``"SDH → subdural"`` or ``"Skull → (not used)"``, for the cases table."""
    target = segment.subtype if segment.mapped else "(not used)"
    return f"{segment.name} → {target}"


# ---------------------------------------------------------------------------------------------- cases
@dataclass
class TrainingCase:
    """A CT volume and its segmentation, from the scene (node IDs) or from files."""

    name: str
    volume_id: str = ""
    segmentation_id: str = ""
    image: str = ""
    label: str = ""
    segments: list[SegmentInfo] = field(default_factory=list)

    @property
    def from_scene(self) -> bool:
        return bool(self.volume_id)

    @property
    def mapped_segments(self) -> list[SegmentInfo]:
        return [s for s in self.segments if s.mapped]

    @property
    def unmapped_segments(self) -> list[SegmentInfo]:
        return [s for s in self.segments if not s.mapped]

    def key(self) -> str:
        """What identifies the case's CT (a node ID or a resolved path): a CT is in the set once."""
        return self.volume_id if self.from_scene else str(Path(self.image).expanduser().resolve())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingCase:
        segments = [SegmentInfo(**s) for s in data.get("segments", [])]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "segments"}
        return cls(segments=segments, **known)


@dataclass
class Problem:
    """Something wrong with the set: ``error`` blocks training, ``warning`` does not."""

    level: str
    message: str
    case: str = ""


@dataclass
class TrainingSet:
    """The cases to train on, in the order shown."""

    cases: list[TrainingCase] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def add(self, case: TrainingCase) -> bool:
        """Add ``case``, or replace the case with the same CT; True when it was new."""
        for index, old in enumerate(self.cases):
            if old.key() == case.key():
                self.cases[index] = case
                return False
        self.cases.append(case)
        return True

    def remove(self, index: int) -> None:
        del self.cases[index]

    def clear(self) -> None:
        self.cases.clear()

    # -- JSON (parameter node, project folder) --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "cases": [c.to_dict() for c in self.cases]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSet:
        if int(data.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
            raise ValueError("this training set was saved by a newer SMART-Net")
        return cls([TrainingCase.from_dict(c) for c in data.get("cases", [])])

    @classmethod
    def from_json(cls, text: str) -> TrainingSet:
        """The set saved by :meth:`to_json`; an empty string gives an empty set."""
        return cls.from_dict(json.loads(text)) if text and text.strip() else cls()

    def save(self, folder: str | Path) -> Path:
        """Write ``training_set.json`` into a project folder (atomically); file paths stay absolute."""
        path = Path(folder) / PROJECT_FILE
        write_text_atomic(path, self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, folder_or_file: str | Path) -> TrainingSet:
        path = Path(folder_or_file)
        if path.is_dir():
            path = path / PROJECT_FILE
        return cls.from_json(path.read_text())

    # -- files --------------------------------------------------------------------------------------
    def add_from_datalist(self, datalist: str | Path) -> int:
        """Add every case (training and validation) of a MONAI datalist; returns how many were new."""
        path = Path(datalist)
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f'{path}: a datalist is a JSON object with a "training" list')
        added = 0
        for key in ("training", "validation"):
            for entry in data.get(key) or []:
                entry = {"image": entry} if isinstance(entry, str) else entry
                if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
                    raise ValueError(f'{path}: a {key} entry has no "image" path')
                image = _resolve(entry["image"], path.parent)
                label = _resolve(entry["label"], path.parent) if entry.get("label") else None
                added += self.add(file_case(image, label))
        return added

    def add_from_folder(self, folder: str | Path) -> int:
        """Add the (image, label) pairs found in ``folder`` (see :func:`find_pairs`); returns how many were new."""
        return sum(self.add(file_case(image, label)) for image, label in find_pairs(folder))

    # -- checks ---------------------------------------------------------------------------------------
    def problems(self, min_cases: int = MIN_CASES, val_split: float = 0.2) -> list[Problem]:
        """Errors (training cannot start) and warnings about the set as it is."""
        found: list[Problem] = []
        if len(self.cases) < min_cases:
            found.append(Problem("error", f"Too few cases: {len(self.cases)}. Add at least {min_cases} "
                                          "(one to train on, one to validate the new model on)."))
        elif val_split > 0 and round(val_split * len(self.cases)) < 1:
            found.append(Problem("warning", f"With {len(self.cases)} cases and a validation split of {val_split:g}, "
                                            "one case is held out for validation."))
        for case in self.cases:
            if case.from_scene and not case.segmentation_id:
                found.append(Problem("error", f"{case.name}: no segmentation.", case.name))
            if not case.from_scene and case.image and not Path(case.image).exists():
                found.append(Problem("error", f"{case.name}: file not found: {case.image}", case.name))
            if case.label and not Path(case.label).exists():
                found.append(Problem("error", f"{case.name}: file not found: {case.label}", case.name))
            unmapped = case.unmapped_segments
            if unmapped:
                names = ", ".join(repr(s.name) for s in unmapped)
                found.append(Problem("warning", f"{case.name}: segment(s) {names} match no hemorrhage type and are "
                                                "not used (rename them, e.g. 'SDH' or 'subdural').", case.name))
            if case.segments and not case.mapped_segments:
                found.append(Problem("warning", f"{case.name}: no segment is used; the case trains as a CT "
                                                "without hemorrhage.", case.name))
        mapped = {s.subtype for c in self.cases for s in c.mapped_segments}
        if self.cases and not mapped:
            found.append(Problem("error", "No case has a hemorrhage segment: the model would learn nothing."))
        if "hemorrhage" in mapped and mapped - {"hemorrhage"}:
            found.append(Problem("warning", "Some segments are subtypes and some only 'hemorrhage': the latter count "
                                            "as hemorrhage of unknown type."))
        return found


def file_case(image: str | Path, label: str | Path | None) -> TrainingCase:
    """A case from files, with the segments of its label (read from the file's header or values)."""
    image = Path(image)
    return TrainingCase(name=_stem(image), image=str(image), label=str(label) if label else "",
                        segments=label_segments(label) if label else [])


def label_segments(label: str | Path) -> list[SegmentInfo]:
    """Segments of a label file: a ``.seg.nrrd``'s segments, or a label map's values (1 EDH ... 5 SDH)."""
    label = Path(label)
    if not label.exists():
        return []
    if label.name.lower().endswith(".seg.nrrd"):
        import slicerio

        segmentation = slicerio.read_segmentation(str(label), skip_voxels=True)
        infos = []
        for segment in segmentation.get("segments", []):
            terminology = segment.get("terminology")
            tag = _terminology_tag(terminology) if isinstance(terminology, dict) else str(terminology or "")
            infos.append(segment_info(str(segment.get("id", "")), str(segment.get("name") or segment.get("id", "")),
                                      tag))
        return infos
    import numpy as np
    import SimpleITK as sitk

    values = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label))))
    by_value = {c.label_value: c.name for c in SUBTYPES}
    return [SegmentInfo(str(int(v)), f"label {int(v)}", "", by_value.get(int(v)),
                        "label value" if int(v) in by_value else "") for v in values if v != 0]


def _terminology_tag(entry: dict) -> str:
    """slicerio's terminology dict back to Slicer's tag string (only the fields the mapping reads)."""
    def triple(key: str) -> str:
        value = entry.get(key) or ["", "", ""]
        return "^".join(str(v) for v in value) if len(value) == 3 else "^^"

    return "~".join([str(entry.get("contextName", "")), triple("category"), triple("type"), triple("typeModifier"),
                     str(entry.get("anatomicContextName", "")), triple("anatomicRegion"),
                     triple("anatomicRegionModifier")])


def find_pairs(folder: str | Path) -> list[tuple[Path, Path | None]]:
    """(image, label) pairs in ``folder``: ``a.nrrd`` + ``a.seg.nrrd`` (or ``a_label.nii.gz``...), or the
    nnU-Net layout ``imagesTr/a_0000.nii.gz`` + ``labelsTr/a.nii.gz``. Images without a label are skipped."""
    folder = Path(folder)
    if (folder / "imagesTr").is_dir() and (folder / "labelsTr").is_dir():
        labels = {_stem(p): p for p in _image_files(folder / "labelsTr")}
        pairs = []
        for image in _image_files(folder / "imagesTr"):
            stem = re.sub(r"_\d{4}$", "", _stem(image))
            if stem in labels:
                pairs.append((image, labels[stem]))
        return pairs
    files = _image_files(folder)
    labels, images = {}, []
    for path in files:
        stem = _stem(path)
        marker = next((m for m in LABEL_MARKERS if stem.lower().endswith(m)), None)
        if marker:
            labels[stem[: -len(marker)]] = path
        else:
            images.append(path)
    return [(image, labels[_stem(image)]) for image in images if _stem(image) in labels]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def _stem(path: Path) -> str:
    return image_stem(path.name)


def _resolve(relative: str, base: Path) -> Path:
    path = Path(relative).expanduser()
    return path if path.is_absolute() else base / path


# ---------------------------------------------------------------------------------------------- geometry
def coverage_problem(ijk_to_world: Sequence[Sequence[float]], dimensions: Sequence[int],
                     content_bounds: Sequence[float],
                     content_ijk_to_world: Sequence[Sequence[float]] | None = None) -> str | None:
    """Why a segmentation does not cover its volume, or None when its content lies inside the volume.

    ``ijk_to_world``: the volume's 4x4 voxel-to-world matrix; ``dimensions``: its size (i, j, k);
    ``content_bounds``: (xmin, xmax, ymin, ymax, zmin, zmax) of the segments' content in the same world
    frame (Slicer gives both in RAS), or, with ``content_ijk_to_world``, the content's voxel extent
    (imin, imax, jmin, jmax, kmin, kmax) on its own grid: exact for oblique grids, where a world-axis
    box around the content reaches beyond it. Empty content (min > max) is fine: a CT without hemorrhage.
    Content is cut where it leaves the volume (the labels are resampled onto the CT's grid), so a
    segmentation drawn on another volume, or larger than this one, is reported.
    """
    import numpy as np

    bounds = np.asarray(content_bounds, float).reshape(3, 2)
    if (bounds[:, 0] > bounds[:, 1]).any():
        return None
    corners = np.array([[x, y, z, 1.0] for x in bounds[0] for y in bounds[1] for z in bounds[2]])
    if content_ijk_to_world is not None:
        corners = (np.asarray(content_ijk_to_world, float) @ corners.T).T
    to_ijk = np.linalg.inv(np.asarray(ijk_to_world, float))
    ijk = (to_ijk @ corners.T).T[:, :3]
    low, high = ijk.min(axis=0), ijk.max(axis=0)
    size = np.asarray(dimensions, float)
    edge_low, edge_high = -0.5 - COVERAGE_TOLERANCE_VOXELS, size - 0.5 + COVERAGE_TOLERANCE_VOXELS
    if (high < -0.5).any() or (low > size - 0.5).any():
        return ("the segmentation lies entirely outside its volume: was it drawn on another volume? Pick the "
                "volume it belongs to.")
    outside = np.maximum(edge_low - low, 0) + np.maximum(high - edge_high, 0)
    if (outside > 0).any():
        axis = "IJK"[int(np.argmax(outside))]
        return (f"the segmentation extends about {float(outside.max()):.0f} voxels beyond its volume (axis {axis}): "
                "the part outside would be lost. Check that it belongs to this volume, or crop it.")
    return None


def label_coverage_problem(image_path: str | Path, label_path: str | Path) -> str | None:
    """:func:`coverage_problem` for files: the label's non-zero content against the image's grid (LPS)."""
    import numpy as np
    import SimpleITK as sitk

    from SMARTNetLib.io.volume import ijk_to_lps

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    image_matrix = ijk_to_lps(reader)
    label_path = Path(label_path)
    if label_path.name.lower().endswith(".seg.nrrd"):
        import slicerio

        segmentation = slicerio.read_segmentation(str(label_path))
        voxels = np.asarray(segmentation["voxels"])
        mask = (voxels != 0) if voxels.ndim == 3 else (voxels != 0).any(axis=-1)  # (i, j, k)[, layer]
        label_matrix = np.asarray(segmentation["ijkToLPS"], float)
    else:
        label = sitk.ReadImage(str(label_path))
        mask = sitk.GetArrayViewFromImage(label).transpose(2, 1, 0) != 0
        label_matrix = ijk_to_lps(label)
    if not mask.any():
        return None
    index = np.nonzero(mask)
    corners = np.array([[i, j, k, 1.0] for i in (index[0].min() - 0.5, index[0].max() + 0.5)
                        for j in (index[1].min() - 0.5, index[1].max() + 0.5)
                        for k in (index[2].min() - 0.5, index[2].max() + 0.5)])
    world = (label_matrix @ corners.T).T[:, :3]
    # Shrink by half a voxel of the image so that the voxel-edge box compares with voxel centres.
    bounds = [v for axis in range(3) for v in (world[:, axis].min(), world[:, axis].max())]
    return coverage_problem(image_matrix, reader.GetSize(), bounds)


# ---------------------------------------------------------------------------------------------- export
def file_stems(names: Iterable[str]) -> list[str]:
    """Safe, unique file names for cases (``"Head CT 1"`` → ``"Head_CT_1"``; repeats get ``_2``...)."""
    stems, seen = [], set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "case"
        stem, n = base, 1
        while stem.lower() in seen:
            n += 1
            stem = f"{base}_{n}"
        seen.add(stem.lower())
        stems.append(stem)
    return stems


def export_case(folder: str | Path, stem: str, ct_kji, ijk_to_ras: Sequence[Sequence[float]],
                masks: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.nrrd`` (the CT) and ``<stem>.seg.nrrd`` (one segment per class) on the same grid.

    ``ct_kji``: the voxels as Slicer's ``arrayFromVolume`` gives them (k, j, i); ``ijk_to_ras``: the
    volume's IJK-to-RAS matrix; ``masks``: class name (a subtype or "hemorrhage") → boolean (k, j, i)
    array on the CT's grid. Masks of the same class are merged; where classes overlap, the later subtype
    in :data:`~SMARTNetLib.contracts.classes.SUBTYPES` wins (a voxel has one label).
    """
    import numpy as np
    import SimpleITK as sitk

    from SMARTNetLib.io.outputs import write_image, write_segmentation

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ct = np.asarray(ct_kji)
    if ct.ndim != 3:
        raise ValueError(f"{stem}: the volume is not 3D (shape {ct.shape})")
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps = ras_to_lps @ np.asarray(ijk_to_ras, float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    geometry = {"spacing": spacing.tolist(), "direction": (lps[:3, :3] / spacing).flatten().tolist(),
                "origin": lps[:3, 3].tolist()}

    def image(array):
        img = sitk.GetImageFromArray(np.ascontiguousarray(array))
        img.SetSpacing(geometry["spacing"])
        img.SetDirection(geometry["direction"])
        img.SetOrigin(geometry["origin"])
        return img

    order = ["hemorrhage", *(c.name for c in SUBTYPES)]
    names = sorted(masks, key=order.index)
    if "hemorrhage" in names and len(names) > 1:
        # Untyped hemorrhage next to subtypes: the trainer drops it in subtype mode (and its label value would
        # clash with epidural's), so it is not written.
        names.remove("hemorrhage")
    labels = np.zeros(ct.shape, np.uint8)
    classes = []
    for name in names:
        mask = np.asarray(masks[name]).astype(bool)
        if mask.shape != ct.shape:
            raise ValueError(f"{stem}: the {name} mask has shape {mask.shape}, the volume {ct.shape}")
        cls = get_class(name)
        labels[mask] = cls.label_value
        classes.append(cls)
    image_path, label_path = folder / f"{stem}.nrrd", folder / f"{stem}.seg.nrrd"
    for path, write, data in ((image_path, write_image, image(ct)), (label_path, None, image(labels))):
        with atomic_path(path) as tmp:
            if write is not None:
                write(tmp, data)
            else:
                write_segmentation(tmp, data, classes)
    return image_path, label_path


def write_datalist(folder: str | Path, training: Sequence[tuple[str | Path, str | Path | None]],
                   validation: Sequence[tuple[str | Path, str | Path | None]] = (), **metadata: Any) -> Path:
    """Write ``folder/datalist.json`` (MONAI convention) for files already on disk.

    Paths inside ``folder`` are written relative to it (the folder can be moved); others stay absolute.
    Without ``validation`` the trainer holds out ``--val-split`` of the training cases itself.
    """
    folder = Path(folder).resolve()

    def entry(image, label) -> dict[str, str]:
        item = {"image": _relative(Path(image), folder)}
        if label:
            item["label"] = _relative(Path(label), folder)
        return item

    data: dict[str, Any] = {"training": [entry(*pair) for pair in training]}
    if validation:
        data["validation"] = [entry(*pair) for pair in validation]
    data.update(metadata)
    path = folder / DATALIST_FILE
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def _relative(path: Path, folder: Path) -> str:
    path = path.expanduser().resolve()
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)
