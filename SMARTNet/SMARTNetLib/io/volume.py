"""Reading CT volumes (NIfTI, NRRD, MHA, DICOM folders) with SimpleITK, and checking that they are head CTs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.io.dicom_series import DicomVolume, choose_series, find_series, read_dicom_folder

CANONICAL = "LPS"  # the engine works on volumes whose i, j, k axes point left, posterior, superior

sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warnings are multi-line noise; errors are reported by us


def read_ct(path: str | Path) -> sitk.Image:
    """Read a CT volume from a file or a DICOM folder and check it.

    Args:
        path: a NIfTI, NRRD or MetaImage file, or a folder of DICOM files.

    Returns:
        The volume in HU, with the file's geometry (origin, spacing, direction) unchanged.

    Raises:
        SmartNetError: one line naming the file and the problem (missing, unreadable, not a CT volume).
    """
    return read_input(path)[0]


def read_input(path: str | Path) -> tuple[sitk.Image, DicomVolume | None]:
    """:func:`read_ct`, and what was read from a DICOM folder.

    Returns:
        The checked volume and, for a DICOM folder, the :class:`DicomVolume` (the series chosen, the others,
        resampling and warnings), else None.
    """
    path = Path(path)
    if not path.exists():
        raise SmartNetError("file not found", path)
    dicom = read_dicom_folder(path) if path.is_dir() else None
    image = dicom.image if dicom is not None else _read_file(path)
    check_ct(image, path)
    return image, dicom


NIFTI_FLOAT_TYPES = (16, 64, 1536)  # NIfTI's FLOAT32, FLOAT64, FLOAT128


def _read_file(path: Path) -> sitk.Image:
    if path.stat().st_size == 0:
        raise SmartNetError("empty file", path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        datatype = _check_nifti_complete(path)  # ITK reads a truncated NIfTI without complaint
        if datatype in NIFTI_FLOAT_TYPES:  # integer voxels cannot be NaN: nibabel's import (0.2 s) is spared
            _check_nifti_finite(path)  # ITK reads NaN in NIfTI as 0
    elif path.name.lower().endswith(".mha"):
        _check_metaimage_complete(path)  # ITK's message for a truncated MHA is misleading
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise SmartNetError(f"cannot read image: {_itk_reason(err)}", path) from None


def _check_nifti_finite(path: Path) -> None:
    """Raise if a floating-point NIfTI data block holds NaN or infinite values.

    SimpleITK 2.5 (ITK 5.4) returns 0 for NaN voxels of ``.nii``/``.nii.gz`` (it keeps them in NRRD and MHA), so
    :func:`check_ct` would never see them: the data block is read again here with nibabel, unscaled.
    """
    import nibabel

    try:
        image = nibabel.load(str(path))
        if not np.issubdtype(image.header.get_data_dtype(), np.floating):
            return
        finite = bool(np.isfinite(np.asanyarray(image.dataobj.get_unscaled())).all())
    except Exception:  # nibabel raises many kinds on a broken header: SimpleITK's reader gives the error
        return
    if not finite:
        raise SmartNetError("contains NaN or infinite values", path)


def _check_nifti_complete(path: Path) -> int | None:
    """Raise if a NIfTI file holds fewer bytes than its header announces; else its datatype code (None when
    the header is not NIfTI's).

    Plain files are checked by size; gzipped ones by the gzip trailer (uncompressed size modulo 2**32),
    which a truncated stream does not end with.
    """
    import gzip
    import struct

    gzipped = path.name.lower().endswith(".gz")
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
        try:
            header = f.read(540)
        except (OSError, EOFError):
            raise SmartNetError("file is truncated or not a valid gzip stream", path) from None
    if len(header) < 348:
        raise SmartNetError("not a valid NIfTI file (shorter than a NIfTI header)", path)
    for order in "<>":
        size = struct.unpack(order + "i", header[:4])[0]
        if size == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            datatype = struct.unpack(order + "h", header[70:72])[0]
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = struct.unpack(order + "f", header[108:112])[0]
            break
        if size == 540:
            dims = struct.unpack(order + "8q", header[16:80])
            datatype = struct.unpack(order + "h", header[12:14])[0]
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None  # not a NIfTI header: ITK will say so
    if not np.isfinite(offset) or offset < 0 or not 1 <= int(dims[0]) <= 7 or bitpix <= 0:
        raise SmartNetError("not a valid NIfTI header (dimensions, data type or data offset)", path)
    count = int(np.prod([max(int(d), 1) for d in dims[1: max(1, min(int(dims[0]), 7)) + 1]]))
    expected = max(int(offset), 352) + count * bitpix // 8
    if gzipped:
        with open(path, "rb") as raw:
            raw.seek(-4, 2)
            complete = struct.unpack("<I", raw.read(4))[0] == expected % 2**32
    else:
        complete = path.stat().st_size >= expected
    if not complete:
        raise SmartNetError("file is truncated (less image data than its header announces)", path)
    return int(datatype)


def dicom_series_files(path: str | Path) -> list[str]:
    """Files of the series that :func:`read_ct` reads from a DICOM folder, in slice order (file ``k`` is the
    volume's slice ``k`` unless the slices had to be resampled onto a regular grid)."""
    series = find_series(path)
    if not series:
        raise SmartNetError("no DICOM image series found in this folder", path)
    return list(choose_series(series).files)


_META_BYTES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
               "MET_FLOAT": 4, "MET_ULONG": 8, "MET_LONG": 8, "MET_DOUBLE": 8}


def _check_metaimage_complete(path: Path) -> None:
    """Raise if a single-file MetaImage (.mha) holds fewer data bytes than its header announces."""
    fields, header_bytes = {}, 0
    with open(path, "rb") as f:
        for raw in f:
            header_bytes += len(raw)
            key, _, value = raw.decode("latin-1").partition("=")
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile" or header_bytes > 65536:
                break
    if fields.get("ElementDataFile") != "LOCAL" or "DimSize" not in fields:
        return
    if fields.get("CompressedData", "False") == "True":
        expected = int(fields.get("CompressedDataSize", 0))
    else:
        voxels = int(np.prod([int(v) for v in fields["DimSize"].split()]))
        channels = int(fields.get("ElementNumberOfChannels", 1))
        expected = voxels * channels * _META_BYTES.get(fields.get("ElementType"), 1)
    if path.stat().st_size - header_bytes < expected:
        raise SmartNetError("file is truncated (less image data than its header announces)", path)


def _itk_reason(err: RuntimeError) -> str:
    """The useful last line of an ITK exception message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    reason = lines[-1] if lines else "unknown error"
    for prefix in ("Description:", "itk::ERROR:"):
        if prefix in reason:
            reason = reason.split(prefix, 1)[1].strip()
    text = str(err)
    if "Unable to determine ImageIO reader" in text:
        reason = "not an image file in a supported format (NIfTI, NRRD, MHA, DICOM)"
    elif any(s in text for s in ("not read completely", "fread got only", "but received", "truncated")):
        reason = "file is truncated (image data incomplete)"
    return reason[:200]


def check_ct(image: sitk.Image, path: str | Path) -> None:
    """Raise :class:`SmartNetError` unless ``image`` is a 3D, single-channel CT in Hounsfield units."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise SmartNetError(f"has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                            "a grayscale CT volume is needed", path)
    size = image.GetSize()
    if image.GetDimension() != 3 or min(size) < 2:
        raise SmartNetError(f"is a 2D image (size {'x'.join(map(str, size))}); a 3D CT volume is needed", path)
    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise SmartNetError("contains NaN or infinite values", path)
    low, high = float(values.min()), float(values.max())
    if values.dtype == np.uint8 or low > -500 or high < 150:
        raise SmartNetError(f"intensities {low:.0f}..{high:.0f} are not CT Hounsfield units "
                            "(expected air near -1000 HU and bone above 300 HU)", path)


def to_canonical(image: sitk.Image) -> sitk.Image:
    """Permute and flip axes (no resampling) so that i, j, k point left, posterior, superior."""
    return sitk.DICOMOrient(image, CANONICAL)


def orientation_of(image: sitk.Image) -> str:
    """The three-letter orientation code of ``image`` (e.g. ``LPS``, ``RAS``)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def from_canonical(result: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Bring an image computed on ``to_canonical(reference)`` back onto ``reference``'s exact grid."""
    back = sitk.DICOMOrient(result, orientation_of(reference))
    if back.GetSize() != reference.GetSize():
        raise RuntimeError(f"orientation round trip changed the size {back.GetSize()} != {reference.GetSize()}")
    back.CopyInformation(reference)  # exact origin, spacing and direction, free of round-off
    return back


def slice_axis_map(image: sitk.Image) -> tuple[int, bool]:
    """Which input axis (0 i, 1 j, 2 k) became the canonical superior axis, and whether it was flipped."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    axis = int(np.argmax(np.abs(direction[2])))  # the index axis most aligned with S
    return axis, bool(direction[2, axis] < 0)


def head_width_mm(canonical: sitk.Image) -> float:
    """Largest left-right extent (mm) of the largest connected body region (> -300 HU) in axial slices.

    Head CTs measure about 130-210 mm; chest and abdomen CTs 250 mm and more. The largest connected region
    is taken so that the scanner couch does not count.
    """
    from scipy import ndimage

    values = sitk.GetArrayViewFromImage(canonical)  # (k, j, i)
    step = max(1, values.shape[0] // 12)
    widest = 0
    for axial in values[::step, ::2, ::2]:
        regions, count = ndimage.label(axial > -300)
        if count == 0:
            continue
        largest = np.argmax(np.bincount(regions.ravel())[1:]) + 1
        columns = np.flatnonzero((regions == largest).any(axis=0))
        widest = max(widest, int(columns[-1] - columns[0] + 1))
    return float(widest * 2 * canonical.GetSpacing()[0])


def ijk_to_lps(image) -> np.ndarray:
    """4x4 matrix from voxel index (i, j, k, 1) to LPS millimetres, for a ``sitk.Image`` or anything with its
    geometry getters (an ``ImageFileReader`` after ``ReadImageInformation``)."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection(), dtype=float).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in millilitres."""
    return float(np.prod(image.GetSpacing())) / 1000.0


def distance_to(foreground: np.ndarray, spacing) -> np.ndarray:
    """Euclidean distance (mm) of every voxel of a 2D or 3D array to the nearest ``foreground`` voxel, 0 on it,
    with ``spacing`` in the array's axis order: scipy's ``distance_transform_edt(~foreground, sampling=spacing)``,
    computed by SimpleITK's Maurer transform, exact too and several times faster (multi-threaded, and no feature
    transform kept); scipy's when there is no foreground, whose answer SimpleITK does not give."""
    if not foreground.any():
        from scipy import ndimage

        return ndimage.distance_transform_edt(~foreground, sampling=spacing)
    image = sitk.GetImageFromArray(foreground.astype(np.uint8))
    image.SetSpacing([float(v) for v in np.asarray(spacing)[::-1]])
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True, backgroundValue=0)
    return np.maximum(sitk.GetArrayViewFromImage(distance), 0)
