"""The bundled model and ``smartnet demo``: what a newcomer gets right after set-up, offline."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from conftest import events_of, run_cli
from SMARTNetLib.commands.demo import SAMPLE_CT, SAMPLE_TRUTH
from SMARTNetLib.evaluation import dice
from SMARTNetLib.model_card import ModelCard
from SMARTNetLib.models import BUNDLED_DIR, DEFAULT_MODEL, list_models

FOLDER = BUNDLED_DIR / DEFAULT_MODEL


def test_bundled_model_card_is_plain_about_its_data():
    card = ModelCard.load(FOLDER)
    assert card.synthetic_only and "SYNTHETIC data only" in card.description
    assert "Not for clinical use" in card.description
    assert (FOLDER / "model.pt").stat().st_size <= 25 * 2**20
    steps = card.provenance, card.provenance["base_model"], card.provenance["base_model"]["base_model"]
    # scripts/train_bundled_model.sh: the recipe, 30 more 2D epochs, then the volume operators
    assert steps[2]["command"].startswith("smartnet train --recipe default")
    assert "--stage upstream --epochs 30" in steps[1]["command"]
    assert card.architecture.operator_inputs == "segmentation-3d" and "--operator-inputs segmentation-3d" in \
        steps[0]["command"]
    test = card.metrics["test"]
    assert test["command"].startswith("python benchmarks/evaluate_model.py") and test["synthetic"]["cases"] >= 100
    assert any(m.name == DEFAULT_MODEL and m.bundled for m in list_models())


def test_demo_analyzes_the_bundled_sample(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--output-dir", str(out), "--events", env={"SMARTNET_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    result = events_of(proc)[-1]
    assert result["event"] == "result" and result["sample"] == str(SAMPLE_CT)
    names = {p.name for p in out.iterdir()}
    assert names >= {"segmentation.seg.nrrd", "report.json", "activation.nrrd", "labels.nii.gz", "report.png",
                     "report.html"}
    report = json.loads((out / "report.json").read_text())
    assert report["ich_probability"] > 0.5  # the sample has a 32 mL subdural and a 24 mL intraparenchymal bleed
    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz"))) > 0
    assert dice(predicted, sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_TRUTH))) > 0) > 0.2  # found where it is
    text = run_cli("demo", "--output-dir", str(tmp_path / "demo2"), "--no-report")
    assert text.returncode == 0 and "trained on synthetic data only" in text.stdout
    assert "ICH probability" in text.stdout and str((tmp_path / "demo2").resolve()) in text.stdout


def test_pointing_game_on_synthetic_positives():
    """Grad-CAM's peak lies inside the bleed or within 10 mm of it (held-out seeds, small cases).

    The issue's target is 90%; the released model reaches 93% on the 100-volume test set
    (``metrics.test.synthetic.pointing_game`` in its card), where the 90% is judged, and 10 of these 10 small
    cases (release 1.1.0: 6, 1.2.0: 10). This guards the measured level here, far above the chance of a peak
    anywhere in the head landing near the bleed."""
    import torch

    from SMARTNetLib.evaluation import pointing_hit
    from SMARTNetLib.inference import Analyzer
    from SMARTNetLib.models import load_model
    from SMARTNetLib.synthetic import make_case

    model, card = load_model(FOLDER)
    analyzer = Analyzer(model, card, torch.device("cpu"))
    hits = []
    for seed in range(880000, 880010):
        ct, label, _ = make_case(seed, size="small", subtypes=["intraparenchymal", "subdural"])
        truth = sitk.GetArrayFromImage(label) > 0
        analysis = analyzer.analyze(ct, explain="gradcam")
        hits.append(pointing_hit(analysis.activations["any"], truth))
    assert np.mean(hits) >= 0.8, hits
