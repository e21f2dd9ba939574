"""Reading CT volumes and rejecting bad input with one-line errors (engine level)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import head_phantom
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.io.volume import from_canonical, head_width_mm, read_ct, to_canonical


def _write(image: sitk.Image, path, compress=False):
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


@pytest.mark.parametrize("name,compress", [("ct.nii.gz", True), ("ct.nii", False), ("ct.nrrd", False),
                                           ("ct.nrrd", True), ("ct.mha", False), ("ct.mha", True)])
def test_truncated_files_are_rejected(tmp_path, name, compress):
    ct, _ = head_phantom()
    path = _write(ct, tmp_path / name, compress)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SmartNetError, match="truncated") as err:
        read_ct(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_complete_files_are_read_with_geometry(tmp_path):
    ct, _ = head_phantom()
    for name in ("a.nii.gz", "a.nrrd", "a.mha"):
        image = read_ct(_write(ct, tmp_path / name, True))
        assert image.GetSize() == ct.GetSize()
        np.testing.assert_allclose(image.GetSpacing(), ct.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(image.GetDirection(), ct.GetDirection(), atol=1e-5)


@pytest.mark.parametrize("case,message", [
    ("missing", "file not found"),
    ("empty", "empty file"),
    ("text", "not an image file"),
    ("2d", "2D image"),
    ("uint8", "not CT Hounsfield units"),
    ("mr", "not CT Hounsfield units"),
    ("nan", "NaN"),
    ("nan_nifti", "NaN"),
    ("inf_nifti_gz", "NaN or infinite"),
    ("rgb", "components per voxel"),
    ("no_dicom", "no DICOM image series"),
])
def test_bad_input_errors(tmp_path, case, message):
    path = tmp_path / "input.nrrd"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path = tmp_path / "notes.txt"
        path.write_text("this is not an image\n")
    elif case == "2d":
        _write(sitk.GetImageFromArray(np.full((64, 64), -1000, np.int16)), path)
    elif case == "uint8":
        _write(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (8, 32, 32), dtype=np.uint8)), path)
    elif case == "mr":
        _write(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 4000, (8, 32, 32)).astype(np.int16)), path)
    elif case == "nan":
        array = np.full((8, 32, 32), -1000.0, np.float32)
        array[4, 10:20, 10:20] = 1000
        array[2, 3, 3] = np.nan
        _write(sitk.GetImageFromArray(array), path)
    elif case in ("nan_nifti", "inf_nifti_gz"):
        import nibabel  # SimpleITK writes NaN into NIfTI but reads it back as 0: write the file with nibabel

        array = np.full((32, 32, 8), -1000.0, np.float32)
        array[10:20, 10:20, 4] = 1000
        array[3, 3, 2] = np.nan if case == "nan_nifti" else np.inf
        path = tmp_path / ("input.nii" if case == "nan_nifti" else "input.nii.gz")
        nibabel.save(nibabel.Nifti1Image(array, np.diag([0.5, 0.5, 5.0, 1.0])), str(path))
    elif case == "rgb":
        _write(sitk.GetImageFromArray(np.zeros((8, 32, 32, 3), np.int16), isVector=True), path)
    elif case == "no_dicom":
        path = tmp_path / "dicom"
        path.mkdir()
        (path / "readme.txt").write_text("no images here")
    with pytest.raises(SmartNetError, match=message) as err:
        read_ct(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_canonical_round_trip_is_exact():
    ct, _ = head_phantom(direction=(-1, 0, 0, 0, 0, 1, 0, -1, 0))  # a coronal-like, flipped orientation
    canonical = to_canonical(ct)
    direction = np.array(canonical.GetDirection()).reshape(3, 3)
    assert np.all(np.diag(direction) > 0.9)  # i, j, k now point to L, P, S
    back = from_canonical(canonical, ct)
    assert back.GetOrigin() == ct.GetOrigin() and back.GetDirection() == ct.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(ct))


def test_head_width_separates_head_from_chest():
    head, _ = head_phantom(size=(96, 96, 6), spacing=(2.0, 2.0, 5.0))  # about 180 mm wide
    chest, _ = head_phantom(size=(96, 96, 6), spacing=(4.0, 4.0, 5.0))  # about 360 mm wide
    assert 150 < head_width_mm(to_canonical(head)) < 200
    assert head_width_mm(to_canonical(chest)) > 300


@pytest.mark.parametrize("shape,spacing", [((9, 40, 33), (5.0, 0.45, 0.6)), ((50, 37), (0.7, 1.3))])
def test_distance_to_equals_scipys_edt(shape, spacing):
    """SimpleITK's Maurer transform gives scipy's exact Euclidean distances on anisotropic 2D and 3D grids."""
    from scipy import ndimage

    from SMARTNetLib.io.volume import distance_to

    rng = np.random.default_rng(7)
    for fraction in (0.002, 0.05, 0.6):
        foreground = rng.random(shape) < fraction
        expected = ndimage.distance_transform_edt(~foreground, sampling=spacing)
        assert np.allclose(distance_to(foreground, spacing), expected, atol=1e-4)
    nothing = np.zeros(shape, bool)
    assert np.array_equal(distance_to(nothing, spacing), ndimage.distance_transform_edt(~nothing, sampling=spacing))
