"""DICOM Segmentation objects (SEG) of an analysis, referencing the source CT series, made with highdicom.

One segment per class found (volume > 0), with the same codes and colours as the ``.seg.nrrd``:
category SNOMED CT 49755003 "Morphologically Altered Structure", type 50960005 "Hemorrhage", the subtype as
a type modifier in the project's private scheme (no SNOMED code is guessed for it), and the class colour as
the recommended display colour. Frames follow the source series slice for slice (the volume's k index is
the series file order, as SimpleITK read it), so the SEG lies exactly on the CT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from SMARTNetLib.contracts.classes import CATEGORY, HEMORRHAGE_TYPE, PRIVATE_SCHEME, HemorrhageClass
from SMARTNetLib.contracts.errors import SmartNetError

SERIES_DESCRIPTION = "SMART-Net hemorrhage segmentation"
SERIES_NUMBER = 9901


def _code(triple: Sequence[str]) -> Any:
    from pydicom.sr.coding import Code

    scheme, value, meaning = triple
    return Code(value, scheme, meaning)


def write_dicom_seg(path: str | Path, labels_kji: np.ndarray, classes: Sequence[HemorrhageClass],
                    source_files: Sequence[str], algorithm: tuple[str, str]) -> list[str]:
    """Write a binary DICOM SEG of ``labels_kji`` (label values of ``classes``) to ``path``.

    ``source_files``: the series' files in the order of the volume's slices; ``algorithm``: (name, version)
    of the model. Returns the segment labels written; raises :class:`SmartNetError` when nothing was found
    (a SEG needs at least one segment) or the series does not match the labels.
    """
    import highdicom as hd
    import pydicom
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from highdicom.color import CIELabColor

    if len(source_files) != labels_kji.shape[0]:
        raise SmartNetError(f"the DICOM series has {len(source_files)} images but the volume {labels_kji.shape[0]} "
                            "slices: no DICOM SEG written", path)
    sources = [pydicom.dcmread(f) for f in source_files]
    present = [c for c in classes if np.any(labels_kji == c.label_value)]
    if not present:
        raise SmartNetError("no hemorrhage found: a DICOM SEG needs at least one segment, none written", path)
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm[0], version=algorithm[1] or "unknown", family=_code(("DCM", "113014", "Neural network")))
    descriptions, masks = [], []
    for number, cls in enumerate(present, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=cls.display_name,
            segmented_property_category=_code(CATEGORY), segmented_property_type=_code(HEMORRHAGE_TYPE),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm_id,
            display_color=CIELabColor.from_rgb(*(int(round(255 * v)) for v in cls.color)))
        if cls.abbreviation != "ICH":
            modifier = hd.sr.CodedConcept(cls.abbreviation, PRIVATE_SCHEME, cls.display_name)
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [modifier]
        descriptions.append(description)
        masks.append(labels_kji == cls.label_value)
    pixels = np.stack(masks, axis=-1).astype(np.uint8)  # (frames, rows, columns, segments)
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=SERIES_NUMBER,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="SMART-Net for 3D Slicer",
            manufacturer_model_name=algorithm[0], software_versions=algorithm[1] or "unknown",
            device_serial_number="none", series_description=SERIES_DESCRIPTION,
            coding_schemes=[CodingSchemeIdentificationItem(PRIVATE_SCHEME, name="SMART-Net hemorrhage subtypes",
                                                           responsible_organization="SMART-Net for 3D Slicer")])
    except (ValueError, TypeError, AttributeError) as err:  # what highdicom says of a series it cannot reference
        raise SmartNetError(f"cannot make a DICOM SEG for this series: {err}", path) from None
    seg.save_as(str(path))
    return [d.SegmentLabel for d in descriptions]
