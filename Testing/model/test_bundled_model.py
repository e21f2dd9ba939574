"""The bundled model and ``smartnet demo``: what a newcomer gets right after set-up, offline."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import events_of, run_cli
from SMARTNetLib.analysis.metrics import dice
from SMARTNetLib.commands.demo import SAMPLE_CT, SAMPLE_TRUTH
from SMARTNetLib.contracts.locations import BUNDLED_DIR, DEFAULT_MODEL
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.contracts.report import REPORT_SCHEMA
from SMARTNetLib.model.store import list_models

FOLDER = BUNDLED_DIR / DEFAULT_MODEL
GUARD_FP_ML = 2.0  # a negative's false-positive volume in the guard (the target's 90th percentile)


def test_bundled_model_card_is_plain_about_its_data():
    card = ModelCard.load(FOLDER)
    assert card.synthetic_only and "SYNTHETIC data only" in card.description
    assert "Not for clinical use" in card.description
    assert (FOLDER / "model.pt").stat().st_size <= 25 * 2**20
    steps = [card.provenance]
    while "base_model" in steps[-1]:
        steps.append(steps[-1]["base_model"])
    # scripts/train_bundled_model.sh: the recipe, 30 more 2D epochs, the volume operators (1.3.0), then 2D and
    # volume-operator fine-tuning on the randomised-style data (2.0.0)
    commands = [step["command"] for step in steps[:5]]
    assert commands[4].startswith("smartnet train --recipe default")
    assert "--stage upstream --epochs 30" in commands[3] and "--operator-inputs segmentation-3d" in commands[2]
    assert "--stage upstream" in commands[1] and "--stage downstream" in commands[0]
    assert steps[0]["data"]["sources"]["style"] == steps[1]["data"]["sources"]["style"] == "randomised"
    assert card.architecture.operator_inputs == "segmentation-3d"
    assert card.version == "2.6.0" and 0.2 < card.temperature < 10
    # 2.1.0: the finding classifier, trained and chosen on the training generator only (scripts/
    # train_finding_classifier.py), its validation figures and command in the card
    findings = card.findings
    assert (FOLDER / findings["file"]).stat().st_size < 1 << 20
    assert findings["command"].startswith("python scripts/train_finding_classifier.py")
    assert "randomised" in findings["data"]["generator"] and findings["data"]["seeds"][0] >= 800000
    validation = findings["validation"]
    assert validation["finding_classifier"]["false_positive_ml"] < validation["network_labels"]["false_positive_ml"]
    # 2.6.0: the subtypes' probabilities also from the named findings (scripts/fit_case_probability.py), fitted on
    # volumes of the training sources that neither the network nor the finding classifier saw; "any" is the network's
    case = findings["case_probability"]
    assert case["command"].startswith("python scripts/fit_case_probability.py") and case["data"]["cases"] >= 300
    assert set(case["outputs"]) == set(card.classes)
    for fitted in case["outputs"].values():
        assert "network_logit" in fitted["features"]
        validation = fitted["cross_validation"]
        assert validation["log_loss"] < validation["log_loss_network"] and validation["auc"] > validation["auc_network"]
    test = card.metrics["test"]
    assert test["command"].startswith("python benchmarks/evaluate_model.py")
    assert {"in_generator", "heldout_generator", "real_host", "real_normal"} <= set(test["sets"])
    assert test["sets"]["heldout_generator"]["metrics"]["cases"] >= 30
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
    jsonschema.validate(report, json.loads(REPORT_SCHEMA.read_text(encoding="utf-8")))  # clinical measures included
    assert report["clinical"]["midline_shift"]["measurable"] and report["clinical"]["location_intraparenchymal"]
    assert report["ich_probability"] > 0.5  # the sample has a 32 mL subdural and a 24 mL intraparenchymal bleed
    # 2.6.0's case probability reads the named findings: intraparenchymal 0.88 (the network's own 0.37)
    subtypes = {name: finding["probability"] for name, finding in report["findings"].items()}
    assert subtypes["intraparenchymal"] > 0.5 and subtypes["intraparenchymal"] == max(subtypes.values()), subtypes
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

    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.analysis.metrics import pointing_hit
    from SMARTNetLib.model.store import load_model
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


def _analyzer():
    import torch

    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.model.store import load_model

    model, card = load_model(FOLDER)
    return Analyzer(model, card, torch.device("cpu")), card


def test_guard_on_both_generators():
    """A small guard of the measured level on fixed seeds of the training generator's test range AND of the
    held-out generator (independent code, never trained on). The full measurement is
    ``benchmarks/evaluate_model.py`` (card: ``metrics.test``).

    Measured on these cases (releases 2.1.0 and 2.6.0, whose case probability changes the subtypes' probabilities
    only): every held-out positive detected; the training generator's negatives
    clean; of its positives, the 26 mL thin subdural is missed (p 0.06: in-generator sensitivity is 0.83) and the
    intraparenchymal bleed is detected (p 0.83) but its finding is removed by the finding classifier (0 mL). The
    held-out negatives are NOT clean: p 0.39-0.61 (held-out specificity 0.30), but since 2.1.0 they keep 0-3.2 mL
    of segmented "blood" (2.0.0: 9-21 mL; held-out median false-positive volume 3.1 mL, 2.0.0: 14.7 mL). The
    last assertion guards that progress, it does not claim the target."""
    from SMARTNetLib.synthetic import make_case
    from SMARTNetLib.synthetic.heldout import make_heldout_case

    analyzer, card = _analyzer()
    threshold = card.thresholds["classification"]
    train_subtypes = (["subdural"], ["intraparenchymal"], ["subarachnoid", "subdural"], [], [])
    cases = {"training generator": [make_case(890000 + i, size="small", subtypes=s)[:2] for i, s in
                                    enumerate(train_subtypes)],
             "held-out generator": [make_heldout_case(5_900_000 + i, subtypes=s)[:2] for i, s in
                                    enumerate((["subdural"], ["intraparenchymal", "intraventricular"], [], [], []))]}
    rows = {}
    for generator, pairs in cases.items():
        rows[generator] = []
        for ct, label in pairs:
            a = analyzer.analyze(ct, explain="none")
            rows[generator].append((bool(sitk.GetArrayViewFromImage(label).any()), a.ich_probability,
                                    a.total_volume_ml))
    train, held = rows["training generator"], rows["held-out generator"]
    assert sum(p >= threshold for positive, p, _ in train if positive) >= 2, rows
    assert all(p < threshold and ml < GUARD_FP_ML for positive, p, ml in train if not positive), rows
    assert all(p >= threshold for positive, p, _ in held if positive), rows
    assert np.median([ml for positive, _, ml in held if not positive]) < 2.0, rows


def test_familiarity_warns_on_mr_like_and_chest_but_not_on_head_cts():
    """The input-familiarity check (reconstruction error above the card's threshold) on the benchmark's probes.

    Measured (release 2.0.0, threshold 0.071): the MR-like real head 0.100 and the chest CT 0.077 warn, head CTs
    of every set stay below (the real normal head 0.03-0.07). Not caught: heavy noise (0.059), an 8 mm blur
    (0.044), and the same MR-like mapping of a held-out head without blur and noise (0.05-0.07)."""
    import slicerio

    from SMARTNetLib.io.volume import read_ct
    from SMARTNetLib.synthetic import load_real_head
    from SMARTNetLib.synthetic.heldout import make_heldout_case, probe_volumes

    if load_real_head() is None:
        pytest.skip("Debian package invesalius-examples is not installed")
    analyzer, card = _analyzer()
    assert card.familiarity["threshold"] > 0 and card.familiarity["command"].startswith("python scripts/calibrate")
    mr = dict(probe_volumes())["MR-like contrast (real head, T1-like values)"]
    chest = read_ct(Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd")
    inputs = {"real head": load_real_head(), "held-out head": make_heldout_case(5_900_010, subtypes=[])[0],
              "mr": mr, "chest": chest}
    warned = {name: [w for w in analyzer.analyze(image, explain="none").warnings if "unlike the model's" in w]
              for name, image in inputs.items()}
    assert not warned["real head"] and not warned["held-out head"] and warned["mr"] and warned["chest"], warned
