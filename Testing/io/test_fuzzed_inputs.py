"""Fuzzed headers: NRRD and NIfTI files and DICOM series with mutated headers end in a volume or in the
engine's one-line error (SmartNetError), never in another exception or a hang.

Seeded: a failure names its seed and mutation, so it replays. The engine's reader is called in-process (a
few hundred cases in about a minute); a sample of the cases also runs through the real CLI.
"""

from __future__ import annotations

import random
import signal
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import head_phantom, run_cli, write_dicom_series
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.io.volume import read_input

CASES_PER_FORMAT = 250
SECONDS_PER_CASE = 10
pytestmark = pytest.mark.filterwarnings("ignore")  # pydicom and ITK warn about the values the fuzzing writes


class Hang(Exception):
    pass


def outcome(path: Path) -> str:
    """"volume" or "error: <one line>"; raises on anything else (the failure the fuzzing looks for)."""
    def alarm(_signum, _frame):
        raise Hang(f"{path}: no answer in {SECONDS_PER_CASE} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS_PER_CASE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_input(path)
        return "volume"
    except SmartNetError as err:
        assert "\n" not in str(err), str(err)
        return f"error: {err}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def nrrd_mutations(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    index = rng.randrange(len(lines))
    key, _, value = lines[index].partition(": ")
    choice = rng.randrange(6)
    if choice == 0:
        del lines[index]
    elif choice == 1:
        lines[index] = f"{key}: " + rng.choice(["", "-1", "0", "nan", "1e308", "abc", "3 3", "(1,0) (0,1)"])
    elif choice == 2:
        numbers = [rng.choice(["0", "-4", "nan", "inf", "99999999", "1.5"]) for _ in value.split()]
        lines[index] = f"{key}: {' '.join(numbers) or '7'}"
    elif choice == 3:
        lines.insert(index, rng.choice(["type: double", "encoding: hex", "endian: big", "dimension: 2",
                                        "space: left-anterior", "kinds: RGB-color domain domain"]))
    elif choice == 4:
        lines[index] = lines[index][::-1]
    else:
        lines[index] = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 40)))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    ct, _ = head_phantom(size=(24, 20, 6))
    nhdr = root / "head.nhdr"  # detached header: the mutations stay in text
    sitk.WriteImage(ct, str(nhdr))
    nifti = root / "head.nii"
    sitk.WriteImage(ct, str(nifti))
    series = write_dicom_series(ct, root / "series")
    return root, nhdr, nifti, series


def test_fuzzed_nrrd_headers(sources, tmp_path):
    _root, nhdr, _nifti, _series = sources
    text = nhdr.read_text()
    raw = nhdr.with_name(next(line.split(": ")[1] for line in text.splitlines() if line.startswith("data file")))
    seen = set()
    for seed in range(CASES_PER_FORMAT):
        rng = random.Random(seed)
        mutated = text
        for _ in range(rng.randrange(1, 4)):
            mutated = nrrd_mutations(mutated, rng)
        path = tmp_path / f"case{seed}.nhdr"
        path.write_text(mutated.replace(f"data file: {raw.name}", f"data file: {raw}"))
        try:
            seen.add(outcome(path).split(":")[0])
        except Exception as err:
            pytest.fail(f"seed {seed}: {type(err).__name__}: {err}\n{mutated}")
    assert seen == {"volume", "error"}  # the mutations reach both ends


def test_fuzzed_nifti_headers(sources, tmp_path):
    _root, _nhdr, nifti, _series = sources
    data = bytearray(nifti.read_bytes())
    fields = [(40, "8h"), (70, "h"), (72, "h"), (76, "8f"), (108, "f"), (252, "h"), (254, "h"), (280, "12f")]
    seen = set()
    for seed in range(CASES_PER_FORMAT):
        rng = random.Random(seed)
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            offset, fmt = rng.choice(fields)
            count = struct.calcsize("<" + fmt) // struct.calcsize("<" + fmt[-1])
            values = [rng.choice([0, -1, 1, 3, 7, 255, 32767, -32768]) if fmt[-1] == "h" else
                      rng.choice([0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), 2.5]) for _ in range(count)]
            mutated[offset:offset + struct.calcsize("<" + fmt)] = struct.pack("<" + fmt, *values)
        if rng.random() < 0.2:
            mutated = mutated[: rng.randrange(348, len(mutated))]
        path = tmp_path / f"case{seed}.nii"
        path.write_bytes(bytes(mutated))
        try:
            seen.add(outcome(path).split(":")[0])
        except Exception as err:
            pytest.fail(f"seed {seed}: {type(err).__name__}: {err}")
    assert "error" in seen


DICOM_MUTATIONS = {
    "Rows": [0, 1, 65535], "Columns": [0, 3], "BitsAllocated": [8, 32, 12], "BitsStored": [1, 20],
    "PixelRepresentation": [1, 0, 5], "SamplesPerPixel": [3, 0], "RescaleSlope": ["0", "nan", "1e300", "-1"],
    "RescaleIntercept": ["nan", "1e300"], "ImageOrientationPatient": [[0] * 6, [1, 0, 0, 1, 0, 0], ["nan"] * 6],
    "ImagePositionPatient": [["nan", "0", "0"], [0, 0, 0], None], "PixelSpacing": [[0, 0], [-1, 1], ["nan", 1]],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", ""], "NumberOfFrames": [0, 7],
    "Modality": ["MR", ""], "SeriesInstanceUID": [None], "PixelData": [b"", b"\x00\x01"],
}


def test_fuzzed_dicom_series(sources, tmp_path):
    _root, _nhdr, _nifti, series = sources
    files = sorted(series.iterdir())
    seen = set()
    for seed in range(CASES_PER_FORMAT):
        rng = random.Random(seed)
        folder = tmp_path / f"case{seed}"
        folder.mkdir()
        changes = [(rng.choice(list(DICOM_MUTATIONS)), rng.random() < 0.5) for _ in range(rng.randrange(1, 3))]
        for index, file in enumerate(files):
            ds = pydicom.dcmread(file)
            for keyword, every_file in changes:
                if not every_file and index != len(files) // 2:
                    continue
                value = rng.choice(DICOM_MUTATIONS[keyword])
                if value is None:
                    if keyword in ds:
                        delattr(ds, keyword)
                else:
                    setattr(ds, keyword, value)
            ds.save_as(folder / file.name, enforce_file_format=False)
        try:
            seen.add(outcome(folder).split(":")[0])
        except Exception as err:
            pytest.fail(f"seed {seed}: {changes}: {type(err).__name__}: {err}")
    assert "error" in seen


@pytest.mark.parametrize("seed", [3, 17, 42])
def test_fuzzed_inputs_through_the_cli(sources, tmp_path, tiny_model, seed):
    """A few mutated files through the real command: one line, exit status 2 or a result, nothing partial."""
    _root, _nhdr, nifti, _series = sources
    rng = np.random.default_rng(seed)
    data = bytearray(nifti.read_bytes())
    for offset in rng.integers(40, 348, size=6):
        data[int(offset)] = int(rng.integers(0, 256))
    path = tmp_path / "fuzzed.nii"
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = run_cli("analyze", str(path), "--output-dir", str(out), "--model", str(tiny_model), "--device", "cpu")
    assert "Traceback" not in proc.stderr
    if proc.returncode == 0:
        assert (out / "report.json").is_file()
    else:
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
        assert not out.exists()
