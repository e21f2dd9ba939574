"""A DICOM corpus: each case ends analyzed, analyzed with a warning, or in one line; never a traceback.

Series the tests write (transcoded by Debian's gdcmconv, shuffled, several series with a localizer, a
tilted gantry, a missing slice, a DICOMDIR) and real CT files shipped by pydicom and pydicom-data, read
in place.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import head_phantom, run_cli, write_dicom_series
from SMARTNetLib.io.dicom_series import read_dicom_folder
from SMARTNetLib.io.volume import read_ct

GDCMCONV = shutil.which("gdcmconv")  # Debian's libgdcm-tools, installed by the README's test set-up


def analyze(source: Path, model: Path, out: Path, *extra: str):
    proc = run_cli("analyze", str(source), "--output-dir", str(out), "--model", str(model), "--device", "cpu",
                   *extra)
    report = json.loads((out / "report.json").read_text()) if proc.returncode == 0 else None
    return proc, report


def labels(out: Path) -> np.ndarray:
    import slicerio

    return slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))["voxels"]


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    ct, _ = head_phantom(size=(48, 40, 10))
    return write_dicom_series(ct, tmp_path_factory.mktemp("dicom") / "head")


@pytest.fixture(scope="module")
def reference(series, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    proc, report = analyze(series, tiny_model, out)
    assert proc.returncode == 0, proc.stderr
    return report, labels(out)


@pytest.mark.skipif(GDCMCONV is None, reason="gdcmconv (libgdcm-tools) not installed")
@pytest.mark.parametrize("codec", ["--jpeg", "--j2k", "--jpegls", "--rle"])
def test_transcoded_series_give_the_same_result(series, reference, tiny_model, tmp_path, codec):
    folder = tmp_path / codec.strip("-")
    folder.mkdir()
    for file in sorted(series.iterdir()):
        subprocess.run([GDCMCONV, codec, str(file), str(folder / file.name)], check=True, capture_output=True)
    syntax = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert syntax.is_compressed, syntax.name
    proc, report = analyze(folder, tiny_model, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert report["ich_probability"] == reference[0]["ich_probability"]
    assert np.array_equal(labels(tmp_path / "out"), reference[1])


def test_shuffled_file_names_give_the_same_result(series, reference, tiny_model, tmp_path):
    folder = tmp_path / "shuffled"
    folder.mkdir()
    files = sorted(series.iterdir())
    names = [f"{n:04x}.dcm" for n in random.Random(3).sample(range(60000), len(files))]
    for file, name in zip(files, names):
        shutil.copy(file, folder / name)
    proc, report = analyze(folder, tiny_model, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert report["ich_probability"] == reference[0]["ich_probability"]
    assert np.array_equal(labels(tmp_path / "out"), reference[1])


def _retag(folder: Path, **values) -> None:
    for file in folder.iterdir():
        ds = pydicom.dcmread(file)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(file)


def test_the_axial_head_series_is_chosen_among_others_and_they_are_reported(series, tiny_model, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(series, folder / "head")
    ct, _ = head_phantom(size=(48, 40, 10))
    sagittal = write_dicom_series(sitk.PermuteAxes(ct, [1, 2, 0]), tmp_path / "sagittal")  # more images
    _retag(sagittal, SeriesInstanceUID="1.2.826.0.1.3680043.2.1125.77", SeriesDescription="Sagittal reformat")
    scout = write_dicom_series(sitk.PermuteAxes(ct, [0, 2, 1])[:, :, 20:21], tmp_path / "scout")
    _retag(scout, SeriesInstanceUID="1.2.826.0.1.3680043.2.1125.78", SeriesDescription="Scout",
           ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    _retag(folder / "head", SeriesDescription="Head 5mm")
    for source in (sagittal, scout):
        for file in source.iterdir():
            shutil.copy(file, folder / f"{source.name}-{file.name}")
    shutil.copytree(folder / "head", folder, dirs_exist_ok=True)
    shutil.rmtree(folder / "head")

    listed = run_cli("analyze", str(folder), "--list-series")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "3 image series" in lines[0]
    assert lines[1].startswith(" * Head 5mm: 10 images, CT, axial")
    assert any("Sagittal reformat: 48 images" in line for line in lines) and any("localizer" in line for line in lines)

    proc, report = analyze(folder, tiny_model, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    chosen, others = report["input_series"]["chosen"], report["input_series"]["others"]
    assert (chosen["description"], chosen["images"], chosen["orientation"]) == ("Head 5mm", 10, "axial")
    assert sorted(o["description"] for o in others) == ["Sagittal reformat", "Scout"]
    assert any("3 series in the folder" in w for w in report["warnings"])


def _moved(series: Path, target: Path, shift_rows_per_slice: int = 0, drop: int | None = None) -> Path:
    """A copy of ``series`` whose slice k is shown k*shift rows further down (a tilted gantry that saw the
    same anatomy), or without slice ``drop``."""
    target.mkdir()
    files = sorted(series.iterdir())
    for k, file in enumerate(files):
        if k == drop:
            continue
        ds = pydicom.dcmread(file)
        if shift_rows_per_slice:
            shift = k * shift_rows_per_slice
            column = np.asarray(ds.ImageOrientationPatient[3:], float)
            ds.ImagePositionPatient = [float(v) for v in
                                       np.asarray(ds.ImagePositionPatient, float) + shift * float(ds.PixelSpacing[0])
                                       * column]
            pixels = ds.pixel_array.copy()
            pixels[: pixels.shape[0] - shift] = pixels[shift:]
            pixels[pixels.shape[0] - shift:] = pixels.min()
            ds.PixelData = pixels.tobytes()
            ds.GantryDetectorTilt = float(np.degrees(np.arctan2(shift_rows_per_slice * float(ds.PixelSpacing[0]),
                                                                float(ds.SliceThickness))))
        ds.save_as(target / file.name)
    return target


def test_a_tilted_gantry_is_resampled_onto_the_true_grid(series, tmp_path):
    straight = read_ct(series)
    tilted = read_dicom_folder(_moved(series, tmp_path / "tilted", shift_rows_per_slice=1))
    assert any("gantry tilt of 8.0 degrees" in w for w in tilted.warnings), tilted.warnings
    image = tilted.image
    assert image.GetSize() == straight.GetSize()
    assert np.allclose(image.GetSpacing(), straight.GetSpacing()) and np.allclose(image.GetOrigin(),
                                                                                   straight.GetOrigin())
    a, b = sitk.GetArrayFromImage(straight), sitk.GetArrayFromImage(image)
    seen = a.shape[0] - 1  # slice k lost its first k rows to the tilt: from this row on, every slice saw them
    assert np.array_equal(a[:, seen:], b[:, seen:])
    assert not np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(sorted(str(f) for f in (tmp_path / "tilted")
                                                                           .iterdir()))), a)  # read as is
    untouched = read_ct(series)
    assert np.array_equal(sitk.GetArrayFromImage(untouched), a)  # a straight series is not resampled


def test_a_missing_slice_is_reported_with_its_gap(series, tiny_model, tmp_path):
    folder = _moved(series, tmp_path / "gap", drop=4)
    straight = sitk.GetArrayFromImage(read_ct(series))
    volume = read_dicom_folder(folder)
    assert any("between slices 3 and 4" in w and "10.0 mm" in w for w in volume.warnings), volume.warnings
    gapped = sitk.GetArrayFromImage(volume.image)
    assert gapped.shape == straight.shape
    keep = [k for k in range(straight.shape[0]) if k != 4]
    assert np.array_equal(gapped[keep], straight[keep])
    assert np.allclose(gapped[4], np.round((straight[3].astype(float) + straight[5]) / 2), atol=1)
    proc, report = analyze(folder, tiny_model, tmp_path / "out")
    assert proc.returncode == 0 and any("a slice may be missing" in w for w in report["warnings"])


def test_a_dicomdir_is_followed(series, reference, tiny_model, tmp_path):
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for file in sorted(series.iterdir()):
        ds = pydicom.dcmread(file)
        ds.PatientID, ds.StudyID, ds.SeriesNumber = "PHANTOM", "1", 1  # what a DICOMDIR record needs
        fileset.add(ds)
    fileset.write(tmp_path / "media")
    assert (tmp_path / "media" / "DICOMDIR").is_file()
    proc, report = analyze(tmp_path / "media", tiny_model, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(labels(tmp_path / "out"), reference[1])


def _real_files() -> list[Path]:
    import data_store  # pydicom-data
    import pydicom.data

    shipped = Path(os.path.dirname(data_store.__file__)) / "data"
    names = ["693_J2KR.dcm", "693_UNCI.dcm", "693_UNCR.dcm", "bad_sequence.dcm", "eCT_Supplemental.dcm",
             "explicit_VR-UN.dcm"]
    return [shipped / n for n in names] + [Path(pydicom.data.get_testdata_file(n)) for n in
                                           ("693_J2KI.dcm", "CT_small.dcm", "J2K_pixelrep_mismatch.dcm")]


def reference_hu(path: Path, tmp_path: Path) -> np.ndarray:
    """HU from pydicom: the stored values times the slope plus the intercept, from the functional groups of an
    Enhanced CT (pydicom's ``apply_rescale`` leaves those unscaled); files pydicom cannot decode are first
    decompressed with gdcmconv."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        try:
            pixels = ds.pixel_array
        except (RuntimeError, NotImplementedError):
            raw = tmp_path / "raw.dcm"
            subprocess.run([GDCMCONV, "--raw", str(path), str(raw)], check=True, capture_output=True)
            pixels = pydicom.dcmread(raw).pixel_array
    rescale = ds
    if "SharedFunctionalGroupsSequence" in ds and "PixelValueTransformationSequence" in \
            ds.SharedFunctionalGroupsSequence[0]:
        rescale = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    slope, intercept = float(rescale.get("RescaleSlope", 1)), float(rescale.get("RescaleIntercept", 0))
    return pixels.astype(float) * slope + intercept


@pytest.mark.skipif(GDCMCONV is None, reason="gdcmconv (libgdcm-tools) not installed")
@pytest.mark.parametrize("path", _real_files(), ids=lambda p: p.name)
def test_real_ct_files_decode_to_pydicom_hu_and_slices_get_the_2d_error(path, tiny_model, tmp_path):
    image = sitk.ReadImage(str(path))  # what the engine's reader gives
    engine = sitk.GetArrayFromImage(image).astype(float)
    expected = reference_hu(path, tmp_path).reshape(engine.shape)
    assert np.array_equal(engine, expected), f"max difference {np.abs(engine - expected).max()}"
    proc = run_cli("analyze", str(path), "--output-dir", str(tmp_path / "out"), "--model", str(tiny_model),
                   "--device", "cpu")
    if image.GetDepth() <= 1:
        assert proc.returncode == 2 and "is a 2D image" in proc.stderr and str(path) in proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and not (tmp_path / "out").exists()
    else:  # the Enhanced CT's two frames: a (thin) volume, analyzed
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "out" / "report.json").is_file()


def test_an_enhanced_multiframe_ct_reads_like_its_series(series, reference, tiny_model, tmp_path):
    """The series converted to one Enhanced CT file (highdicom's legacy conversion): same voxels in space."""
    import highdicom as hd

    datasets = []
    for file in sorted(series.iterdir()):
        ds = pydicom.dcmread(file)
        ds.PatientID, ds.StudyID, ds.SeriesNumber, ds.Manufacturer = "PHANTOM", "1", 1, "test"
        for keyword in ("AccessionNumber", "StudyDate", "StudyTime", "PatientBirthDate", "PatientSex",
                        "ReferringPhysicianName"):
            setattr(ds, keyword, getattr(ds, keyword, "") or "")
        datasets.append(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(datasets, series_instance_uid=hd.UID(), series_number=2,
                                                            sop_instance_uid=hd.UID(), instance_number=1)
    (tmp_path / "enhanced").mkdir()
    enhanced.save_as(tmp_path / "enhanced" / "ct.dcm")
    straight, multiframe = read_ct(series), read_ct(tmp_path / "enhanced")
    assert multiframe.GetSize() == straight.GetSize()
    on_series_grid = sitk.Resample(multiframe, straight, sitk.Transform(), sitk.sitkNearestNeighbor, -2000)
    assert np.array_equal(sitk.GetArrayFromImage(on_series_grid), sitk.GetArrayFromImage(straight))
    proc, report = analyze(tmp_path / "enhanced", tiny_model, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert report["ich_probability"] == pytest.approx(reference[0]["ich_probability"], abs=0.02)
