"""``smartnet train``: datalists and labels, learning, resume after a real kill, DDP with gloo, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import events_of, head_phantom, kill_at_first_checkpoint, run_cli
from SMARTNetLib.analysis.inference import Analyzer
from SMARTNetLib.contracts.classes import SUBTYPES
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.io.volume import ijk_to_lps
from SMARTNetLib.model.store import load_model
from SMARTNetLib.training.datalist import load_datalist, read_label

FAST = ["--architecture", "tiny", "--image-size", "64"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def write_cases(folder: Path, bleeds: list[bool]) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for n, bleed in enumerate(bleeds):
        ct, label = head_phantom(bleed=bleed)
        sitk.WriteImage(ct, str(folder / f"ct{n}.nii.gz"))
        sitk.WriteImage(label, str(folder / f"label{n}.nii.gz"))
        entries.append({"image": f"ct{n}.nii.gz", "label": f"label{n}.nii.gz"})
    return entries


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    """Three training volumes (two with a subdural bleed) and two validation volumes (one positive)."""
    folder = tmp_path_factory.mktemp("data")
    entries = write_cases(folder, [True, True, False, False])
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": entries[:3], "validation": [entries[3], entries[0]], "synthetic": True}))
    return path


def test_training_learns_and_writes_a_model_folder(datalist, tmp_path):
    out = tmp_path / "model"
    proc = run_cli("train", "--datalist", str(datalist), "--output", str(out), *FAST, "--stage", "upstream",
                   "--epochs", "3", "--steps-per-epoch", "20", "--lr", "3e-3", "--events",
                   env={"OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = events_of(proc)
    metrics = [e for e in events if e["event"] == "metrics"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        assert {"stage", "epochs", "train_loss", "val_auc", "val_dice", "seconds"} <= set(m)
    assert {e["stage"] for e in events if e["event"] == "progress"} >= {"upstream", "validate"}
    assert events[-1]["event"] == "result" and events[-1]["model_dir"] == str(out)
    assert (out / "checkpoints" / "last.pt").is_file()

    card = ModelCard.load(out)
    assert card.synthetic_only is True
    assert card.classes == tuple(c.name for c in SUBTYPES)
    assert card.architecture.image_size == 64
    data = card.provenance["data"]
    assert data["training"]["cases"] == 3 and data["training"]["positives"] == 2
    assert data["training"]["per_class"]["subdural"] == 2 and data["validation"]["negatives"] == 1
    assert "train" in card.provenance["command"] and card.provenance["created"]
    assert card.metrics["val_dice"] is not None and card.metrics["stage"] == "upstream"

    # Measured by inference on a training case, as users would run it.
    model, card = load_model(out)
    ct, truth = head_phantom(bleed=True)
    labels = sitk.GetArrayFromImage(Analyzer(model, card, torch.device("cpu")).analyze(ct, explain="none").labels)
    truth = sitk.GetArrayFromImage(truth) == 5
    dice = 2 * np.logical_and(labels > 0, truth).sum() / ((labels > 0).sum() + truth.sum())
    assert dice > 0.8, dice


def _retrain_volume_classifier(datalist: Path, base: Path, out: Path, inputs: str, *options: str) -> list[str]:
    """One short frozen downstream epoch from ``base`` with ``--operator-inputs inputs``; its warnings."""
    proc = run_cli("train", "--datalist", str(datalist), "--output", str(out), "--base-model", str(base),
                   "--operator-inputs", inputs, *options, "--stage", "downstream", "--downstream-epochs", "1",
                   "--steps-per-epoch", "2", "--events", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [e["message"] for e in events_of(proc) if e["event"] == "log" and e.get("level") == "warning"]


def test_base_model_with_other_operator_inputs_keeps_the_2d_network(datalist, tiny_model, tmp_path):
    """``--operator-inputs`` over a base model: the volume classifier's first layer starts afresh (with a
    warning), the frozen 2D network is the base's, and the card records the new inputs."""
    out = tmp_path / "model"
    warnings = _retrain_volume_classifier(datalist, tiny_model, out, "encoder")
    assert any("volume-classifier inputs" in w for w in warnings), warnings
    base, _ = load_model(tiny_model)
    tuned, card = load_model(out)
    assert ModelCard.load(tiny_model).architecture.operator_inputs == "segmentation"
    assert card.architecture.operator_inputs == "encoder"
    assert tuned.volume_classifier.project[0].in_features == tuned.feature_size
    torch.testing.assert_close(tuned.unet.encoder.state_dict(), base.unet.encoder.state_dict())

    # trained again from it: the card keeps the whole chain of models and commands
    _retrain_volume_classifier(datalist, out, tmp_path / "again", "segmentation")
    lineage = ModelCard.load(tmp_path / "again").provenance["base_model"]
    assert lineage["path"] == str(out) and "--operator-inputs encoder" in lineage["command"]
    assert lineage["base_model"] == card.provenance["base_model"] and lineage["base_model"]["path"] == str(tiny_model)


def test_resume_after_kill_ends_like_an_uninterrupted_run(datalist, tmp_path):
    args = ["--datalist", str(datalist), *FAST, "--epochs", "2", "--downstream-epochs", "1", "--steps-per-epoch",
            "12", "--seed", "3", "--events"]
    whole = tmp_path / "whole"
    proc = run_cli("train", *args, "--output", str(whole), env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-2000:]

    killed = tmp_path / "killed"
    checkpoint = kill_at_first_checkpoint("train", args, killed, ONE_THREAD)
    state = torch.load(checkpoint, weights_only=True)
    assert (state["stage"], state["epoch"]) != ("downstream", 1), "the run finished before it could be killed"

    again = run_cli("train", *args, "--output", str(killed), "--resume", env=ONE_THREAD)
    assert again.returncode == 0, again.stderr[-2000:]
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(checkpoint, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert ModelCard.load(killed).metrics["history"] == ModelCard.load(whole).metrics["history"]


def test_torchrun_two_processes_gloo(datalist, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "SMARTNetLib.cli", "train", "--datalist", str(datalist), "--output", str(out),
                           *FAST, "--epochs", "1", "--downstream-epochs", "1", "--steps-per-epoch", "2", "--events"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    events = events_of(proc)
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 1 and results[0]["world_size"] == 2  # rank 0 alone writes events
    assert [m["stage"] for m in events if m["event"] == "metrics"] == ["upstream", "downstream"]
    load_model(out)
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["stage"] == "downstream"


@pytest.mark.parametrize("problem", ["missing", "geometry", "empty", "unreadable"])
def test_datalist_errors_are_one_line_with_status_2(problem, tmp_path):
    entries = write_cases(tmp_path, [True])
    expected = {"missing": "file not found", "geometry": "label geometry does not match",
                "empty": "empty datalist", "unreadable": "cannot read label"}[problem]
    bad = tmp_path / "label0.nii.gz"
    if problem == "missing":
        entries[0]["label"] = "nope.nii.gz"
        bad = tmp_path / "nope.nii.gz"
    elif problem == "geometry":
        ct, label = head_phantom(size=(48, 40, 10))
        sitk.WriteImage(label, str(bad))
    elif problem == "empty":
        entries, bad = [], tmp_path / "datalist.json"
    else:
        bad.write_bytes(b"not an image at all")
    (tmp_path / "datalist.json").write_text(json.dumps({"training": entries}))
    proc = run_cli("train", "--datalist", str(tmp_path / "datalist.json"), "--output", str(tmp_path / "m"), *FAST,
                   "--epochs", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert str(bad) in lines[0]


def _write_seg(path: Path, reference: sitk.Image, names_values: list[tuple[str, int]], array: np.ndarray) -> None:
    import slicerio

    voxels = np.ascontiguousarray(array.transpose(2, 1, 0))
    segments = [{"id": f"S{v}", "name": name, "labelValue": v, "layer": 0, "color": [1.0, 0.0, 0.0],
                 "extent": [0, voxels.shape[0] - 1, 0, voxels.shape[1] - 1, 0, voxels.shape[2] - 1]}
                for name, v in names_values]
    slicerio.write_segmentation(str(path), {"voxels": voxels, "ijkToLPS": ijk_to_lps(reference), "segments": segments,
                                            "containedRepresentationNames": ["Binary labelmap"],
                                            "masterRepresentation": "Binary labelmap"})


def test_segmentation_labels_map_names_and_report_unknown_ones(tmp_path):
    ct, label = head_phantom()
    array = sitk.GetArrayFromImage(label)  # bleed = 5
    array[0, :4, :4] = 7  # a segment with a name that is no hemorrhage class
    path = tmp_path / "case.seg.nrrd"
    _write_seg(path, ct, [("Subdural hematoma", 5), ("Tumor", 7)], array)
    info = read_label(path, ct)
    assert info.kind == "subtypes"
    assert set(np.unique(info.array)) == {0, 5} and (info.array == 5).sum() == (array == 5).sum()
    assert len(info.warnings) == 1 and "Tumor" in info.warnings[0]

    _write_seg(path, ct, [("Hemorrhage", 1)], (array == 5).astype(np.uint8))
    assert read_label(path, ct).kind == "binary"
    binary = sitk.GetImageFromArray((array == 5).astype(np.uint8))
    binary.CopyInformation(ct)
    sitk.WriteImage(binary, str(tmp_path / "mask.nrrd"))
    assert read_label(tmp_path / "mask.nrrd", ct).kind == "binary"


def test_datalist_split_and_empty(tmp_path):
    entries = write_cases(tmp_path, [True, False, True, False, True])
    (tmp_path / "d.json").write_text(json.dumps({"training": entries}))
    first = load_datalist(tmp_path / "d.json", val_split=0.4, seed=1)
    again = load_datalist(tmp_path / "d.json", val_split=0.4, seed=1)
    assert len(first.validation) == 2 and len(first.training) == 3 and first.validation == again.validation
    assert first.synthetic is False
    (tmp_path / "e.json").write_text(json.dumps({"training": []}))
    with pytest.raises(SmartNetError, match="empty datalist"):
        load_datalist(tmp_path / "e.json")


@pytest.mark.parametrize("segmentation", ["multilabel", "exclusive"])
def test_training_a_volume_classifier_on_the_refined_segmentation(segmentation, datalist, tiny_model, tmp_path):
    """``--operator-inputs segmentation-3d`` trains through the volume segmenter's output, keeps the base's
    volume classifier (same size of input) and gives a model that analyzes with Grad-CAM; with
    ``--volume-segmentation exclusive`` the volume segmenter learns classes that exclude each other."""
    out = tmp_path / "model"
    warnings = _retrain_volume_classifier(datalist, tiny_model, out, "segmentation-3d",
                                          "--volume-segmentation", segmentation)
    assert not any("do not fit" in w for w in warnings), warnings
    base, _ = load_model(tiny_model)
    tuned, card = load_model(out)
    assert card.architecture.operator_inputs == "segmentation-3d"
    assert card.architecture.volume_segmentation == segmentation and tuned.exclusive == (segmentation == "exclusive")
    assert not torch.equal(tuned.volume_classifier.head[1].weight, base.volume_classifier.head[1].weight)
    assert not torch.equal(tuned.volume_segmenter.out.weight, base.volume_segmenter.out.weight)
    ct, truth = head_phantom(bleed=True)
    analysis = Analyzer(tuned, card, torch.device("cpu")).analyze(ct, explain="gradcam")
    heat = sitk.GetArrayFromImage(analysis.activations["any"])
    assert 0 <= heat.min() and heat.max() <= 1 and heat.shape == sitk.GetArrayFromImage(ct).shape
    labels, truth = sitk.GetArrayFromImage(analysis.labels), sitk.GetArrayFromImage(truth)
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4, 5} and (labels[truth > 0] > 0).mean() > 0.5
