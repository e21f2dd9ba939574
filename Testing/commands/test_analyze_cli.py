"""``smartnet analyze`` end to end through the real CLI in a subprocess, with a tiny random-weight model."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
import torch

from conftest import OBLIQUE, events_of, head_phantom, run_cli, write_dicom_series
from SMARTNetLib.contracts.classes import SUBTYPES
from SMARTNetLib.contracts.events import parse_event
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.model.store import save_model


def _final(events: list[dict]) -> dict:
    finals = [e for e in events if e["event"] in ("result", "error")]
    assert len(finals) == 1 and events[-1] is finals[0], "exactly one final event, and it comes last"
    return finals[0]


@pytest.mark.parametrize("fmt", ["nifti", "nrrd", "dicom"])
def test_geometry_round_trip(tmp_path, tiny_model, fmt):
    spacing, origin = (0.45, 0.7, 4.0), (-31.5, 12.25, -80.0)
    ct, _ = head_phantom(size=(40, 32, 8), spacing=spacing, origin=origin, direction=OBLIQUE)
    if fmt == "dicom":
        source = write_dicom_series(ct, tmp_path / "series")
    else:
        source = tmp_path / ("ct.nii.gz" if fmt == "nifti" else "ct.nrrd")
        sitk.WriteImage(ct, str(source))
    reference = sitk.ReadImage(str(source)) if fmt != "dicom" else ct
    out = tmp_path / "out"
    proc = run_cli("analyze", str(source), "-o", str(out), "--model", str(tiny_model), "--format", "nifti",
                   "--events")
    assert proc.returncode == 0, proc.stderr
    results = [sitk.ReadImage(str(out / n)) for n in ("labels.nii.gz", "activation.nrrd")]
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    for image in results:
        assert image.GetSize() == reference.GetSize()
        np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-4)
        np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-3)
        np.testing.assert_allclose(image.GetDirection(), OBLIQUE, atol=1e-5)
    assert seg["voxels"].shape == reference.GetSize()  # slicerio indexes voxels (i, j, k)
    expected = np.eye(4)
    expected[:3, :3] = np.array(OBLIQUE).reshape(3, 3) * np.array(spacing)
    expected[:3, 3] = origin
    np.testing.assert_allclose(seg["ijkToLPS"], expected, atol=1e-3)


def test_segmentation_file_segments_and_values(tmp_path, tiny_model, ct_file):
    out = tmp_path / "out"
    proc = run_cli("analyze", str(ct_file), "-o", str(out), "--model", str(tiny_model), "--format", "nifti")
    assert proc.returncode == 0, proc.stderr
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    segments = {s["name"]: s for s in seg["segments"]}
    assert list(segments) == [c.display_name for c in SUBTYPES]
    for cls in SUBTYPES:
        segment = segments[cls.display_name]
        assert segment["labelValue"] == cls.label_value
        np.testing.assert_allclose(segment["color"], cls.color, atol=1e-3)
        assert segment["terminology"]["type"][1] == "50960005"
        assert segment["terminology"]["typeModifier"][1] == cls.abbreviation
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz"))).transpose(2, 1, 0)
    np.testing.assert_array_equal(seg["voxels"], labels)  # the same label values in both files
    report = json.loads((out / "report.json").read_text())
    ml = np.prod(sitk.ReadImage(str(ct_file)).GetSpacing()) / 1000
    for cls in SUBTYPES:
        assert report["findings"][cls.name]["volume_ml"] == pytest.approx((labels == cls.label_value).sum() * ml,
                                                                           abs=1e-3)
    assert report["total_volume_ml"] == pytest.approx(sum(f["volume_ml"] for f in report["findings"].values()),
                                                      abs=1e-2)
    assert len(report["slice_probabilities"]) == 12 and report["slice_order"] == "k"
    assert 0.0 <= report["ich_probability"] <= 1.0
    assert report["model"] == {"name": "tiny-test", "version": "0.0.1",
                               "description": "Random weights for tests (epidural, intraparenchymal, "
                                              "intraventricular, subarachnoid, subdural)",
                               "synthetic_only": True, "finding_classifier": False}
    assert set(report["timing_s"]) >= {"read", "preprocess", "inference_2d", "inference_3d", "write", "load_model"}
    assert "device" in report and report["files"]["segmentation"] == "segmentation.seg.nrrd"


def test_event_stream_and_several_inputs(tmp_path, tiny_model, ct_file):
    second = tmp_path / "second.nii.gz"
    sitk.WriteImage(head_phantom(bleed=False)[0], str(second))
    out = tmp_path / "out"
    proc = run_cli("analyze", str(ct_file), str(second), "-o", str(out), "--model", str(tiny_model), "--events",
                   "--explain", "none")
    assert proc.returncode == 0, proc.stderr
    events = [parse_event(line) for line in proc.stdout.splitlines()]
    final = _final(events)
    assert final["event"] == "result" and final["command"] == "analyze"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [Path(c["output_dir"]).name for c in final["cases"]] == ["head", "second"]
    for case in final["cases"]:
        folder = Path(case["output_dir"])
        assert sorted(p.name for p in folder.iterdir()) == ["report.json", "segmentation.seg.nrrd"]
        assert json.loads(Path(case["report"]).read_text())["ich_probability"] == case["ich_probability"]
    assert final["volumes_per_minute"] > 0


def test_a_bad_input_in_a_batch_fails_in_its_turn(tmp_path, tiny_model, ct_file):
    """The next input is read ahead on a thread; its error still comes after the cases before it are written."""
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a volume")
    out = tmp_path / "out"
    proc = run_cli("analyze", str(ct_file), str(broken), "-o", str(out), "--model", str(tiny_model), "--events",
                   "--explain", "none")
    assert proc.returncode != 0
    final = _final(events_of(proc))
    assert final["event"] == "error" and final["file"] == str(broken)
    assert sorted(p.name for p in (out / "head").iterdir()) == ["report.json", "segmentation.seg.nrrd"]
    assert not (out / "broken").exists()


def test_inputs_from_a_list_a_datalist_or_a_folder_and_the_summary_table(tmp_path, tiny_model, ct_file):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name, bleed in (("a.nii.gz", True), ("b.nrrd", False)):
        sitk.WriteImage(head_phantom(bleed=bleed)[0], str(folder / name))
    sitk.WriteImage(head_phantom()[1], str(folder / "a.seg.nrrd"))  # a segmentation: not an input
    (tmp_path / "list.txt").write_text("# scans\nscans/a.nii.gz\n\nscans/b.nrrd\n")
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [{"image": "scans/a.nii.gz"}],
                                                        "testing": [{"image": "scans/b.nrrd"}]}))
    for source in ("list.txt", "datalist.json", "scans"):
        out = tmp_path / f"out-{source}"
        proc = run_cli("analyze", "--inputs-from", str(tmp_path / source), "-o", str(out), "--model",
                       str(tiny_model), "--explain", "none", "--events")
        assert proc.returncode == 0, proc.stderr
        cases = events_of(proc)[-1]["cases"]
        assert [Path(c["input"]).name for c in cases] == ["a.nii.gz", "b.nrrd"], source
        rows = list(csv.DictReader((out / "summary.csv").open()))
        assert [Path(r["input"]).name for r in rows] == ["a.nii.gz", "b.nrrd"]
        assert [float(r["ich_probability"]) for r in rows] == [c["ich_probability"] for c in cases]
        assert json.loads((out / "summary.json").read_text())["cases"] == cases
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    proc = run_cli("analyze", "--inputs-from", str(empty), "-o", str(tmp_path / "none"))
    assert proc.returncode == 2 and str(empty) in proc.stderr and "empty" in proc.stderr
    assert not (tmp_path / "none").exists()


def test_batch_under_torchrun_two_processes_share_the_inputs(tmp_path, tiny_model):
    inputs = []
    for i in range(3):
        inputs.append(tmp_path / f"head{i}.nii.gz")
        sitk.WriteImage(head_phantom(bleed=i != 1)[0], str(inputs[-1]))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "SMARTNetLib.cli", "analyze", *map(str, inputs), "-o", str(out), "--model",
                           str(tiny_model), "--explain", "none", "--events"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = [e for e in events_of(proc) if e["event"] == "result"]
    assert len(results) == 1  # rank 0 alone writes events
    cases = results[0]["cases"]
    assert [Path(c["input"]).name for c in cases] == [p.name for p in inputs]
    for case in cases:
        report = json.loads(Path(case["report"]).read_text())
        assert report["ich_probability"] == case["ich_probability"]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["output_dir"] for r in rows] == [c["output_dir"] for c in cases]
    # the same numbers as one process computes
    single = run_cli("analyze", *map(str, inputs), "-o", str(tmp_path / "single"), "--model", str(tiny_model),
                     "--explain", "none", "--events")
    assert [c["ich_probability"] for c in events_of(single)[-1]["cases"]] == [c["ich_probability"] for c in cases]


@pytest.mark.parametrize("method", ["activation", "hirescam"])
def test_explain_methods_in_unit_range_on_the_input_grid(tmp_path, tiny_model, ct_file, method):
    from SMARTNetLib.analysis.inference import EXPLAIN_METHODS as ENGINE_METHODS
    from SMARTNetLib.commands.analyze import EXPLAIN_METHODS

    assert EXPLAIN_METHODS == ENGINE_METHODS
    out = tmp_path / "out"
    proc = run_cli("analyze", str(ct_file), "-o", str(out), "--model", str(tiny_model), "--explain", method)
    assert proc.returncode == 0, proc.stderr
    image = sitk.ReadImage(str(out / "activation.nrrd"))
    heat = sitk.GetArrayFromImage(image)
    assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.0
    reference = sitk.ReadImage(str(ct_file))
    assert image.GetSize() == reference.GetSize() and image.GetOrigin() == pytest.approx(reference.GetOrigin())


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    mr = tmp_path / "mr.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 3000, (8, 24, 24)).astype(np.int16)),
                    str(mr))
    truncated = tmp_path / "truncated.nii.gz"
    sitk.WriteImage(head_phantom()[0], str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:300])
    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((32, 32), -1000, np.int16)), str(flat))
    nan = tmp_path / "nan.nrrd"
    array = sitk.GetArrayFromImage(head_phantom()[0]).astype(np.float32)
    array[0, 0, 0] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(nan))
    text = tmp_path / "report.txt"
    text.write_text("not an image")
    dicom = tmp_path / "empty-dicom"
    dicom.mkdir()
    return {"missing": ([str(tmp_path / "nope.nii.gz")], "file not found"),
            "truncated": ([str(truncated)], "truncated"),
            "not-image": ([str(text)], "not an image file"),
            "2d": ([str(flat)], "2D image"),
            "mr": ([str(mr)], "not CT Hounsfield units"),
            "nan": ([str(nan)], "NaN"),
            "no-series": ([str(dicom)], "no DICOM image series")}


@pytest.mark.parametrize("events", [False, True])
def test_bad_inputs_one_line_error_no_output(tmp_path, tiny_model, events):
    for name, (inputs, message) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out-{name}"
        proc = run_cli("analyze", *inputs, "-o", str(out), "--model", str(tiny_model),
                       *(["--events"] if events else []))
        assert proc.returncode == 2, (name, proc.stderr)
        assert not out.exists(), f"{name}: partial output left behind"
        if events:
            final = _final(events_of(proc))
            assert final["event"] == "error" and message in final["message"] and inputs[0] in final["message"]
        else:
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (name, lines)
            assert inputs[0] in lines[0] and "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path, tiny_model):
    proc = run_cli("analyze", str(tmp_path / "nope.nrrd"), "-o", str(tmp_path / "o"), "--model", str(tiny_model),
                   "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unknown_model_name(tmp_path, ct_file, smartnet_home):
    proc = run_cli("analyze", str(ct_file), "-o", str(tmp_path / "o"), "--model", "no-such-model",
                   env={"SMARTNET_HOME": str(smartnet_home)})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no-such-model: unknown model")
    assert not (tmp_path / "o").exists()


def test_model_whose_weights_do_not_match_card(tmp_path, ct_file, tiny_model):
    broken = tmp_path / "broken"
    card = ModelCard.load(tiny_model)
    card.classes = ("hemorrhage",)  # the card now says one class; the weights have five
    save_model(SmartNet(ModelCard.load(tiny_model)), card, broken)
    card.save(broken)
    proc = run_cli("analyze", str(ct_file), "-o", str(tmp_path / "o"), "--model", str(broken))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith(f"error: {broken}: weights do not match the model card") and "\n" not in line
    assert not (tmp_path / "o").exists()


def test_garbage_weights_file(tmp_path, ct_file, tiny_model):
    broken = tmp_path / "garbage"
    broken.mkdir()
    (broken / "model.json").write_text((tiny_model / "model.json").read_text())
    (broken / "model.pt").write_bytes(b"not a torch file")
    proc = run_cli("analyze", str(ct_file), "-o", str(tmp_path / "o"), "--model", str(broken))
    assert proc.returncode == 2 and "cannot load weights" in proc.stderr


def test_cuda_request_without_gpu(tmp_path, ct_file, tiny_model):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = run_cli("analyze", str(ct_file), "-o", str(tmp_path / "o"), "--model", str(tiny_model),
                   "--device", "cuda")
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr
