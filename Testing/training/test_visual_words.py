"""TransVW for head CT: visual-word discovery (deterministic, anatomy-bound under rigid motion) and
``smartnet pretrain --method transvw`` (losses fall, the card says what was done, resume ends as an
uninterrupted run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import events_of, kill_at_first_checkpoint, run_cli
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.training import visual_words

FAST = ["--architecture", "tiny", "--image-size", "64"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def moved(image: sitk.Image, degrees: tuple[float, float, float], shift_mm: tuple[float, float, float]):
    """``image`` moved rigidly (rotation about its centre, then a shift): point p of ``image`` is at T(p)."""
    transform = sitk.Euler3DTransform()
    transform.SetCenter(image.TransformContinuousIndexToPhysicalPoint([s / 2 for s in image.GetSize()]))
    transform.SetRotation(*np.radians(degrees))
    transform.SetTranslation(shift_mm)
    return sitk.Resample(image, image, transform.GetInverse(), sitk.sitkLinear, -1024.0), transform


def test_discovery_is_deterministic_for_a_seed(real_head):
    copy, _ = moved(real_head, (0, 0, 6), (5, 0, 0))
    heads = [real_head, copy]
    a = visual_words.discover(heads, n_words=6, instances=2, size=32, context=1, seed=3)
    b = visual_words.discover(heads, n_words=6, instances=2, size=32, context=1, seed=3)
    c = visual_words.discover(heads, n_words=6, instances=2, size=32, context=1, seed=4)
    assert a.words == b.words and np.array_equal(a.patches, b.patches) and np.array_equal(a.labels, b.labels)
    assert [w.place for w in a.words] != [w.place for w in c.words]
    assert a.patches.shape == (12, 3, 32, 32) and a.labels.tolist() == [w for w in range(6) for _ in range(2)]


def test_each_word_is_the_same_anatomy_in_a_rigidly_moved_copy(real_head):
    """Words found in a head and in a copy turned by (4, -3, 12) degrees and shifted by (14, -9, 6) mm: each word
    lies at the moved place of its anatomy, and its two patches show the same thing."""
    copy, transform = moved(real_head, (4, -3, 12), (14.0, -9.0, 6.0))
    heads = [real_head, copy]
    vocabulary = visual_words.discover(heads, n_words=12, instances=2, size=48, context=1, seed=0)
    frames = [visual_words.head_frame(h) for h in heads]
    errors, likeness = [], []
    for word, places in visual_words.word_positions(vocabulary, frames).items():
        errors.append(np.linalg.norm(np.array(transform.TransformPoint(places[0].tolist())) - places[1]))
        first, second = vocabulary.patches[vocabulary.labels == word]
        likeness.append(np.corrcoef(first.ravel(), second.ravel())[0, 1])
    assert max(errors) < 2.0, errors  # mm, with 1 mm voxels
    assert min(likeness) > 0.9, likeness
    # Different words are different anatomy: patches of distinct words are less alike than a word's pair.
    others = [np.corrcoef(vocabulary.patches[2 * i].ravel(), vocabulary.patches[2 * i + 2].ravel())[0, 1]
              for i in range(len(vocabulary.words) - 1)]
    assert np.median(others) < np.median(likeness) - 0.2, (others, likeness)


@pytest.fixture(scope="module")
def head_folder(real_head, tmp_path_factory) -> Path:
    """The real head and three rigid poses of it, as unlabelled CTs."""
    folder = tmp_path_factory.mktemp("unlabelled-heads")
    small = sitk.BinShrink(real_head, [2, 2, 1])  # 128 x 128 x 108: enough for 64 px patches of 64 mm
    poses = [((0, 0, 0), (0, 0, 0)), ((0, 0, 8), (6, 0, 0)), ((3, 0, -6), (0, -5, 4)), ((0, -4, 3), (-4, 3, 0))]
    for n, (degrees, shift) in enumerate(poses):
        sitk.WriteImage(moved(small, degrees, shift)[0], str(folder / f"head{n}.nrrd"), useCompression=True)
    return folder


def test_transvw_pretraining_lowers_both_losses_and_records_its_words(head_folder, tmp_path):
    out = tmp_path / "transvw"
    proc = run_cli("pretrain", "--method", "transvw", "--data", str(head_folder), "--output", str(out), *FAST,
                   "--words", "8", "--instances", "4", "--epochs", "4", "--steps-per-epoch", "12", "--lr", "3e-3",
                   "--events", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = [e for e in events_of(proc) if e["event"] == "metrics"]
    first, last = metrics[0], metrics[-1]
    assert last["restoration_loss"] < 0.85 * first["restoration_loss"], metrics
    assert last["word_loss"] < 0.7 * first["word_loss"] and last["word_accuracy"] > first["word_accuracy"], metrics
    card = ModelCard.load(out)
    pretraining = card.provenance["pretraining"]
    assert pretraining["method"] == "transvw" and "TransVW" in card.description
    assert pretraining["visual_words"]["words"] == 8 and pretraining["visual_words"]["instances"] == 4
    assert card.metrics["pretraining"]["word_accuracy"] == last["word_accuracy"]


def test_transvw_resume_after_kill_ends_like_an_uninterrupted_run(head_folder, tmp_path):
    args = ["--method", "transvw", "--data", str(head_folder), *FAST, "--words", "6", "--instances", "3",
            "--epochs", "3", "--steps-per-epoch", "4", "--seed", "2", "--events"]
    whole = tmp_path / "whole"
    assert run_cli("pretrain", *args, "--output", str(whole), env=ONE_THREAD).returncode == 0
    killed = tmp_path / "killed"
    checkpoint = kill_at_first_checkpoint("pretrain", args, killed, ONE_THREAD)
    assert torch.load(checkpoint, weights_only=True)["epoch"] < 3, "the run finished before it could be killed"
    again = run_cli("pretrain", *args, "--output", str(killed), "--resume", env=ONE_THREAD)
    assert again.returncode == 0, again.stderr[-2000:]
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(checkpoint, weights_only=True)
    for part in ("model", "word_head"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert [h["word_loss"] for h in a["history"]] == [h["word_loss"] for h in b["history"]]
