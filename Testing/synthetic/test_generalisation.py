"""What keeps the model honest off its training generator: the randomised training style, the held-out generator
(independent code), and one preprocessing for training and inference."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from SMARTNetLib.synthetic import heldout, make_case, randomisation
from SMARTNetLib.synthetic.real_head import load_real_head

SYNTHETIC = Path(heldout.__file__).parent


def test_randomised_style_keeps_anatomy_and_labels_and_changes_the_look():
    ct_plain, lab_plain, info_plain = make_case(31, subtypes=["subdural"], style="plain")
    ct_rand, lab_rand, info_rand = make_case(31, subtypes=["subdural"], style="randomised")
    # the same seed gives the same bleeds (randomisation draws from its own stream); mimics are never labelled
    assert np.array_equal(sitk.GetArrayFromImage(lab_plain), sitk.GetArrayFromImage(lab_rand))
    assert info_plain["volume_ml"] == info_rand["volume_ml"] and "randomised" in info_rand
    difference = np.abs(sitk.GetArrayFromImage(ct_plain).astype(float) - sitk.GetArrayFromImage(ct_rand))
    assert difference.mean() > 1.0  # noise, kernel, offset at least
    with pytest.raises(ValueError, match="style"):
        make_case(31, style="fancy")


def test_mimics_are_dense_and_unlabelled():
    """A negative with every mimic: dense (blood-like or calcified) voxels inside the head, and no label."""
    found = set()
    for seed in range(20):
        ct, label, info = make_case(600 + seed, subtypes=[], style="randomised")
        assert not sitk.GetArrayViewFromImage(label).any()
        found.update(info["randomised"]["mimics"])
    assert {"falx", "tentorium", "superior_sagittal_sinus", "transverse_sinus", "straight_sinus"} <= found
    mimic = randomisation.Mimic("superior_sagittal_sinus", 70.0, {"width": 5.0, "height": 8.0, "z_low": 0.0})
    p = np.array([[0.0, 0.0, 40.0], [20.0, 0.0, 40.0]], np.float32).T  # on the midline and 20 mm lateral
    fields = {"depth": np.array([2.0, 2.0], np.float32), "cavity": np.ones(2, np.float32)}
    hu = np.array([30.0, 30.0], np.float32)
    mimic.paint(p, fields, hu, np.zeros(3, np.float32), 0.0, 1.0)
    assert hu[0] > 55 and hu[1] == 30.0


def test_heldout_generator_shares_no_code_with_the_training_generator():
    """The held-out generator imports nothing of the training generator's (only the real head's loader)."""
    tree = ast.parse((SYNTHETIC / "heldout.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    training = {"phantom", "bleeds", "scanner", "noise", "randomisation", "dataset"}
    assert not {m.lstrip(".").split(".")[-1] for m in imported} & training, imported


def test_heldout_case_is_a_head_ct_with_its_labels():
    ct, label, info = heldout.make_heldout_case(12, subtypes=["subdural", "intraparenchymal"])
    arr, lab = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(label)
    assert ct.GetSize() == label.GetSize() and ct.GetSpacing()[2] >= 2.5
    assert arr.min() <= -1000 and arr.max() > 1000  # air and bone
    assert set(np.unique(lab)) == {0, 2, 5} and info["subtypes"] == ["intraparenchymal", "subdural"]
    brain = arr[(lab == 0) & (arr > 0) & (arr < 100)]
    assert 15 < np.median(brain) < 45
    blood = arr[lab == 5]
    assert 35 < np.median(blood) < 85
    negative, neg_label, _ = heldout.make_heldout_case(13, subtypes=[])
    assert not sitk.GetArrayViewFromImage(neg_label).any()


@pytest.mark.skipif(load_real_head() is None, reason="Debian package invesalius-examples is not installed")
def test_real_head_insertion_and_variants():
    ct, label, info = heldout.insert_into_real_head(3, ["subdural"])
    assert info["host"] == "real-inserted" and info["subtypes"] == ["subdural"]
    assert sitk.GetArrayViewFromImage(label).sum() > 0
    names = [name for name, _ in heldout.real_head_variants()]
    assert "native" in names and sum(n.startswith("rotated") for n in names) >= 4 and len(names) >= 9


def test_training_input_equals_the_analyzers_for_the_same_slice(tiny_model):
    """One preprocessing: the training sampler's tensor for a slice is the analyzer's, bit for bit."""
    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.analysis.preprocessing import slab_groups, slice_channels
    from SMARTNetLib.io.volume import to_canonical
    from SMARTNetLib.model.store import load_model
    from SMARTNetLib.training.dataset import preload, slice_batch, window

    model, card = load_model(tiny_model)
    ct, label, _ = make_case(44, subtypes=["intraparenchymal"], style="randomised")
    prep, size = card.preprocessing, card.architecture.image_size
    volume = preload(ct, sitk.GetArrayFromImage(label), size, "case", prep.slab_mm)
    analyzer = Analyzer(model, card, torch.device("cpu"))
    canonical = to_canonical(ct)
    windowed, _ = analyzer._prepare(canonical, slab_groups(canonical.GetDepth(), canonical.GetSpacing()[2],
                                                           prep.slab_mm))
    for s in (0, volume.hu.shape[0] // 2, volume.hu.shape[0] - 1):
        hu, _ = slice_batch([volume], [(0, s)], prep.context_slices, augment=None)
        trained = window(hu, prep)
        analyzed = slice_channels(windowed, torch.tensor([s]), prep.context_slices)
        assert torch.equal(trained, analyzed), s


def test_synth_cli_randomised_with_workers_equals_one_process(tmp_path):
    """`smartnet synth --style randomised --workers 2` writes the same data set as one process would."""
    import json

    from conftest import run_cli
    from SMARTNetLib.synthetic import write_dataset

    proc = run_cli("synth", "--n", "3", "--seed", "5", "--style", "randomised", "--workers", "2",
                   "--output-dir", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr
    write_dataset(tmp_path / "one", 3, seed=5, style="randomised")
    two = json.loads((tmp_path / "two" / "datalist.json").read_text())
    one = json.loads((tmp_path / "one" / "datalist.json").read_text())
    assert two == one and two["style"] == "randomised"
    for entry in one["training"] + one["validation"]:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "one" / entry["image"])))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "two" / entry["image"])))
        assert np.array_equal(a, b)


def test_card_temperature_and_familiarity_threshold_are_applied(tiny_model):
    """Probabilities are sigmoid(logit / T) with the card's temperature; the familiarity warning follows the
    card's threshold."""
    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.model.store import load_model

    model, card = load_model(tiny_model)
    ct, _, _ = make_case(45, subtypes=["subdural"])
    plain = Analyzer(model, card, torch.device("cpu")).analyze(ct, explain="none")
    card.calibration, card.familiarity = {"temperature": 2.0}, {"threshold": plain.familiarity / 2}
    scaled = Analyzer(model, card, torch.device("cpu")).analyze(ct, explain="none")

    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    assert logit(scaled.ich_probability) == pytest.approx(logit(plain.ich_probability) / 2, rel=1e-4, abs=1e-5)
    assert scaled.familiarity == plain.familiarity > 0
    assert not any("unlike" in w for w in plain.warnings)
    assert any("unlike the model's training data" in w for w in scaled.warnings)
