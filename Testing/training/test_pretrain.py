"""``smartnet pretrain``: Models Genesis distortions, learning to restore, resume, and fine-tuning from the result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from conftest import events_of, head_phantom, kill_at_first_checkpoint, run_cli
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.store import load_model
from SMARTNetLib.training.distortions import BezierIntensity, ModelsGenesis, inpainting, local_shuffle, outpainting

S = 96  # slice side in the distortion tests
FAST = ["--architecture", "tiny", "--image-size", "64"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def seeded(transform, seed: int):
    transform.set_random_state(seed=seed)
    return transform


def components(mask: np.ndarray) -> list[tuple[int, int]]:
    """(height, width) of the bounding box of every connected component of ``mask``."""
    labels, _ = ndimage.label(mask)
    return [(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in ndimage.find_objects(labels)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_local_shuffle_keeps_each_patch_histogram(seed):
    x = torch.rand(3, S, S)
    y = seeded(local_shuffle(S, prob=1.0), seed)(x.clone())
    moved = (y != x).numpy()
    assert moved.any() and moved.mean() < 0.5
    for c in range(3):  # values only move within their box: the same multiset where anything changed
        assert np.array_equal(np.sort(x[c].numpy()[moved[c]]), np.sort(y[c].numpy()[moved[c]]))
        assert np.array_equal(np.sort(x[c].numpy().ravel()), np.sort(y[c].numpy().ravel()))
    one = seeded(local_shuffle(S, prob=1.0, holes=1, max_holes=1), seed)(x.clone())  # one box: find it
    rows, cols = np.nonzero((one != x).numpy().any(0))
    assert np.ptp(rows) < S // 10 and np.ptp(cols) < S // 10
    box = (slice(None), slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    for c in range(3):
        assert np.array_equal(np.sort(x[box][c].numpy().ravel()), np.sort(one[box][c].numpy().ravel()))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_inpainting_fills_boxes_with_noise(seed):
    x = torch.full((3, S, S), 0.5)
    y = seeded(inpainting(S), seed)(x.clone()).numpy()
    filled = y != 0.5
    assert (filled == filled[0]).all(), "the boxes span every channel"
    fraction = filled[0].mean()
    assert (S // 6) ** 2 / S**2 * 0.95 <= fraction <= 5 * (S // 3) ** 2 / S**2
    assert all(min(h, w) >= S // 6 for h, w in components(filled[0]))
    noise = y[filled]
    assert 0.0 <= noise.min() and noise.max() < 1.0 and 0.25 < noise.std() < 0.33  # uniform in [0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_outpainting_keeps_only_inner_boxes(seed):
    x = torch.rand(2, S, S)
    y = seeded(outpainting(S), seed)(x.clone()).numpy()
    kept = (y == x.numpy()).all(0)
    assert 0 < kept.mean() < 1
    assert kept.sum() >= (3 * S // 7) ** 2 and all(min(h, w) >= 3 * S // 7 for h, w in components(kept))
    noise = y[:, ~kept]
    assert 0.0 <= noise.min() and noise.max() < 1.0
    assert abs(np.corrcoef(noise.ravel(), x.numpy()[:, ~kept].ravel())[0, 1]) < 0.1  # not the image any more


def test_bezier_intensity_is_monotone_or_inverted_and_stays_in_unit_range():
    ramp = torch.linspace(0, 1, 501)
    directions, curved = set(), 0
    for seed in range(24):
        transform = seeded(BezierIntensity(prob=1.0), seed)
        y = transform(ramp.clone())
        steps = y.diff()
        assert 0.0 <= y.min() and y.max() <= 1.0
        if transform.inverted:
            assert (steps <= 1e-7).all() and y[0] == 1 and y[-1] == 0
            linear = 1 - ramp
        else:
            assert (steps >= -1e-7).all() and y[0] == 0 and y[-1] == 1
            linear = ramp
        directions.add(transform.inverted)
        curved += bool((y - linear).abs().max() > 0.03)
    assert directions == {True, False} and curved >= 12, "maps of both directions, most of them non-linear"
    out_of_range = seeded(BezierIntensity(prob=1.0), 0)(torch.tensor([-0.5, 1.5]))
    assert 0.0 <= out_of_range.min() and out_of_range.max() <= 1.0


def test_models_genesis_is_seeded_and_leaves_its_input_alone():
    x = torch.rand(4, 3, 64, 64)
    before = x.clone()
    a = seeded(ModelsGenesis(64), 5).batch(x)
    b = seeded(ModelsGenesis(64), 5).batch(x)
    assert torch.equal(x, before) and torch.equal(a, b) and not torch.equal(a, x)
    assert a.shape == x.shape and type(a) is torch.Tensor and 0 <= a.min() and a.max() <= 1


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory) -> Path:
    """Three tiny head CTs (one a NRRD in a subfolder) and a label map, which pretraining must skip."""
    folder = tmp_path_factory.mktemp("unlabeled")
    (folder / "more").mkdir()
    for n, bleed in enumerate([True, False, True]):
        ct, label = head_phantom(bleed=bleed)
        sitk.WriteImage(ct, str(folder / ("more/ct2.nrrd" if n == 2 else f"ct{n}.nii.gz")))
        if n == 0:
            sitk.WriteImage(label, str(folder / "label0.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def pretrained(ct_folder, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("runs") / "genesis"
    proc = run_cli("pretrain", "--data", str(ct_folder), "--output", str(out), *FAST, "--epochs", "4",
                   "--steps-per-epoch", "10", "--lr", "3e-3", "--events", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, events_of(proc)


def test_pretraining_lowers_the_restoration_loss_and_writes_a_model(pretrained, ct_folder):
    out, events = pretrained
    metrics = [e for e in events if e["event"] == "metrics"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    first, last = metrics[0], metrics[-1]
    assert last["restoration_loss"] < 0.85 * first["restoration_loss"], metrics
    assert last["restoration_loss"] < last["identity_loss"], "restoring does better than leaving the distortion"
    assert last["train_loss"] < first["train_loss"]
    warnings = [e["message"] for e in events if e["event"] == "log" and e["level"] == "warning"]
    assert any("1 of 4 files are not CT volumes" in w for w in warnings), warnings
    assert events[-1]["event"] == "result" and events[-1]["volumes"] == 3 and events[-1]["model_dir"] == str(out)

    model, card = load_model(out)  # a complete, loadable model folder
    assert (out / "checkpoints" / "last.pt").is_file()
    genesis = card.provenance["pretraining"]
    assert genesis["method"] == "models-genesis" and genesis["loss"] == "l1"
    assert genesis["data"]["kind"] == "folder" and genesis["data"]["volumes"] == 3
    assert genesis["data"]["path"] == str(ct_folder.resolve())
    assert "smartnet pretrain" in genesis["command"] and genesis["argv"][1] == "pretrain"
    assert card.synthetic_only is False and card.architecture.image_size == 64
    assert card.metrics["pretraining"]["restoration_loss"] == last["restoration_loss"]
    x = torch.rand(2, card.preprocessing.in_channels, 64, 64)
    with torch.no_grad():
        rec = model.forward_slices(x)["rec"]
    assert rec.shape == x.shape and 0 <= rec.min() and rec.max() <= 1


def test_resume_after_kill_ends_like_an_uninterrupted_run(ct_folder, tmp_path):
    entries = [{"image": str(p)} for p in sorted(ct_folder.rglob("ct*"))]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": entries[:2], "validation": entries[2:], "synthetic": True}))
    args = ["--data", str(datalist), *FAST, "--epochs", "3", "--steps-per-epoch", "5", "--seed", "4", "--events"]
    whole = tmp_path / "whole"
    proc = run_cli("pretrain", *args, "--output", str(whole), env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ModelCard.load(whole).synthetic_only is True  # the datalist says so

    killed = tmp_path / "killed"
    checkpoint = kill_at_first_checkpoint("pretrain", args, killed, ONE_THREAD)
    assert torch.load(checkpoint, weights_only=True)["epoch"] < 3, "the run finished before it could be killed"
    refused = run_cli("pretrain", *args, "--output", str(killed), env=ONE_THREAD)
    assert refused.returncode == 2 and "--resume" in refused.stdout

    again = run_cli("pretrain", *args, "--output", str(killed), "--resume", env=ONE_THREAD)
    assert again.returncode == 0, again.stderr[-2000:]
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(checkpoint, weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert [h["restoration_loss"] for h in a["history"]] == [h["restoration_loss"] for h in b["history"]]


def test_train_starts_from_the_pretrained_encoder(pretrained, tmp_path):
    out, _ = pretrained
    folder = tmp_path / "labeled"
    folder.mkdir()
    entries = []
    for n, bleed in enumerate([True, False]):
        ct, label = head_phantom(bleed=bleed)
        sitk.WriteImage(ct, str(folder / f"ct{n}.nii.gz"))
        sitk.WriteImage(label, str(folder / f"label{n}.nii.gz"))
        entries.append({"image": f"ct{n}.nii.gz", "label": f"label{n}.nii.gz"})
    (folder / "datalist.json").write_text(json.dumps({"training": entries, "validation": entries[:1]}))
    # The downstream stage with its 2D network frozen for its only epoch: the encoder cannot change, so the
    # written model shows what training started from.
    tuned = tmp_path / "tuned"
    proc = run_cli("train", "--datalist", str(folder / "datalist.json"), "--base-model", str(out), "--output",
                   str(tuned), "--stage", "downstream", "--downstream-epochs", "1", "--unfreeze-after", "1",
                   "--steps-per-epoch", "1", "--events", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    base = torch.load(out / "model.pt", weights_only=True)
    after = torch.load(tuned / "model.pt", weights_only=True)
    encoder = [k for k in base if k.startswith("unet.encoder.")]
    assert len(encoder) > 50 and all(torch.equal(base[k], after[k]) for k in encoder)
    assert any(not torch.equal(base[k], after[k]) for k in base if k.startswith("volume_classifier."))
    assert ModelCard.load(tuned).provenance["base_model"]["path"] == str(out)


def test_folder_without_ct_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    proc = run_cli("pretrain", "--data", str(tmp_path), "--output", str(tmp_path / "m"), *FAST)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no CT volumes found" in lines[0]
