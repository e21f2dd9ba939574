"""The finding classifier: anatomical features of known shapes, relabelling, the case probability, and its file in
a model folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.model.finding_classifier import (
    CASE_FEATURES,
    FEATURE_NAMES,
    FINDINGS_FILE,
    CaseProbability,
    FindingClassifier,
    FindingNet,
    NamedFindings,
    case_features,
    component_features,
    find_components,
)
from SMARTNetLib.model.store import load_model, save_model

SPACING = np.array([2.0, 1.0, 1.0])  # (z, y, x) mm


def skull_phantom() -> tuple[np.ndarray, np.ndarray]:
    """A 40x120x120 head: 1000 HU skull shell (inner radius 50 mm), 30 HU brain, -1000 HU air; a 60 HU
    subdural-like crescent against the inner table on the left and a 60 HU ball in the middle."""
    z, y, x = np.meshgrid(np.arange(40) * 2.0, np.arange(120.0), np.arange(120.0), indexing="ij")
    r = np.sqrt((x - 60) ** 2 + (y - 60) ** 2 + ((z - 40) * 0.8) ** 2)
    hu = np.where(r < 56, 1000, -1000).astype(np.int16)
    hu[r < 50] = 30
    labels = np.zeros(hu.shape, np.uint8)
    crescent = (r >= 45) & (r < 50) & (x > 80) & (np.abs(z - 40) < 16)
    ball = np.sqrt((x - 60) ** 2 + (y - 62) ** 2 + (z - 40) ** 2) < 6
    labels[crescent], labels[ball] = 5, 2
    hu[crescent | ball] = 60
    return hu, labels


def features_of(hu: np.ndarray, labels: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    components, count = find_components(labels)
    assert count == 2
    rows = component_features(hu, labels, np.full(hu.shape, 200, np.uint8), SPACING, components, count)
    named = [dict(zip(FEATURE_NAMES, row)) for row in rows]
    by_label = {int(labels[components == c + 1][0]): named[c] for c in range(count)}
    return by_label[5], by_label[2]


def test_features_tell_a_crescent_on_the_inner_table_from_a_deep_ball():
    crescent, ball = features_of(*skull_phantom())
    assert crescent["bone_distance_min_mm"] <= 1.5 and crescent["near_bone_fraction"] > 0.5
    assert ball["bone_distance_min_mm"] == pytest.approx(12.0)  # no bone within the 12 mm margin
    assert 2.0 <= crescent["thickness_max_mm"] <= 3.5  # half of the 5 mm thickness, on a 1-2 mm grid
    assert ball["thickness_max_mm"] >= 5.0  # half of the 12 mm diameter
    assert crescent["flatness"] < 0.35 < ball["flatness"]  # a thin shell against a round ball
    assert crescent["shell_bone"] > 0.2 and ball["shell_bone"] == 0 and ball["shell_brain"] == 1.0
    assert crescent["lateral_fraction"] > 0.6 and ball["lateral_fraction"] < 0.05
    assert ball["midline_mm"] < 1.0 and crescent["midline_mm"] > 30
    assert crescent["vote_5"] == 1.0 and ball["vote_2"] == 1.0 and ball["confidence_mean"] == pytest.approx(200 / 255)
    assert ball["hu_mean"] == pytest.approx(60) and ball["contrast_hu"] == pytest.approx(30)
    volume_ml = 4 / 3 * np.pi * 6**3 / 1000
    assert np.exp(ball["log_ml"]) == pytest.approx(volume_ml, rel=0.15)


def fixed_classifier(to_class: int, drop: float = 1.01, background: bool = False) -> FindingClassifier:
    """A classifier whose output does not depend on the features: ``to_class`` (1-5), or background."""
    net = FindingNet()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.net[-1].bias[0 if background else to_class] = 5.0
    return FindingClassifier(net.eval(), drop)


def test_relabel_gives_each_finding_one_class_and_drops_non_bleeds():
    hu, labels = skull_phantom()
    labels[labels == 5] = np.where(np.random.default_rng(0).random(int((labels == 5).sum())) < 0.5, 1, 5)
    values = np.array([1, 2, 3, 4, 5])
    relabelled = fixed_classifier(3).relabel(hu, labels, np.zeros_like(labels), SPACING, values)
    assert set(np.unique(relabelled)) == {0, 3} and ((relabelled > 0) == (labels > 0)).all()
    kept = fixed_classifier(3, drop=0.5, background=True).relabel(hu, labels, np.zeros_like(labels), SPACING, values)
    assert not kept.any()
    never = fixed_classifier(3, drop=1.01, background=True).relabel(hu, labels, np.zeros_like(labels), SPACING,
                                                                      values)
    assert ((never > 0) == (labels > 0)).all()  # the most likely subtype when dropping is off


def test_model_folder_keeps_the_classifier_and_analysis_uses_it(tiny_model, tmp_path):
    from conftest import head_phantom
    from SMARTNetLib.analysis.inference import Analyzer

    model, card = load_model(tiny_model)
    model.finding_classifier = fixed_classifier(4)
    card.findings = {"file": FINDINGS_FILE, "features": list(FEATURE_NAMES), "drop_probability": 1.01}
    card.thresholds = {**card.thresholds, "segmentation": 0.0}  # a random tiny model: label everything
    folder = save_model(model, card, tmp_path / "with-findings")
    assert (folder / FINDINGS_FILE).is_file()
    loaded, loaded_card = load_model(folder)
    assert loaded.finding_classifier is not None and loaded_card.findings["drop_probability"] == 1.01
    analysis = Analyzer(loaded, loaded_card, torch.device("cpu")).analyze(head_phantom()[0], explain="none")
    assert "findings" in analysis.timing
    assert analysis.findings["subarachnoid"]["volume_ml"] > 0
    assert sum(f["volume_ml"] for f in analysis.findings.values()) == analysis.findings["subarachnoid"]["volume_ml"]


def test_broken_or_foreign_classifier_files_are_one_line_errors(tiny_model, tmp_path):
    model, card = load_model(tiny_model)
    model.finding_classifier = fixed_classifier(1)
    card.findings = {"file": FINDINGS_FILE, "features": list(FEATURE_NAMES)}
    folder = save_model(model, card, tmp_path / "m")
    (folder / FINDINGS_FILE).write_bytes(b"not a state dict")
    with pytest.raises(SmartNetError, match="cannot load the finding classifier"):
        load_model(folder)
    card.findings = {"file": FINDINGS_FILE, "features": ["log_ml"]}
    card.save(folder)
    with pytest.raises(SmartNetError, match="other features"):
        load_model(folder)


def named_findings() -> NamedFindings:
    """Three findings: a kept 8 mL subdural (p 0.9), a kept 2 mL epidural (p 0.6), a removed 30 mL one."""
    probabilities = np.array([[0.1, 0.0, 0.0, 0.0, 0.0, 0.9],
                              [0.4, 0.6, 0.0, 0.0, 0.0, 0.0],
                              [0.8, 0.0, 0.1, 0.1, 0.0, 0.0]], np.float32)
    return NamedFindings(probabilities, np.array([8.0, 2.0, 30.0], np.float32), np.array([True, True, False]))


def test_case_features_read_the_kept_findings_only():
    named = named_findings()
    logit, ml, best, weighted, removed = case_features(0.8, named, 0)  # any hemorrhage
    assert logit == pytest.approx(np.log(4)) and ml == pytest.approx(np.log1p(10.0))
    assert best == pytest.approx(0.9) and weighted == pytest.approx(np.log1p(8 * 0.9 + 2 * 0.6))
    assert removed == pytest.approx(np.log1p(30.0))  # the removed finding counts here only
    _, ml, best, weighted, removed = case_features(0.5, named, 5)  # subdural: the 8 mL finding is named so
    assert ml == pytest.approx(np.log1p(8.0)) and best == pytest.approx(0.9)
    assert weighted == pytest.approx(np.log1p(8 * 0.9)) and removed == 0
    _, ml, best, weighted, removed = case_features(0.5, named, 2)  # the removed finding's 0.1 counts only as
    assert ml == 0 and best == 0 and weighted == 0  # removed, where IPH is its most likely subtype (a tie: first)
    assert removed == pytest.approx(np.log1p(30.0)) and case_features(0.5, named, 3)[4] == 0
    assert list(case_features(1.0, NamedFindings.none(), 0)[1:]) == [0, 0, 0, 0]
    assert np.isfinite(case_features(1.0, NamedFindings.none(), 0)[0])


def test_case_probability_replaces_the_fitted_outputs_only():
    classes = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    case = CaseProbability.from_settings({"features": list(CASE_FEATURES), "outputs": {
        "any": {"features": ["log_named_ml", "max_probability"], "weights": [1.5, 2.0], "bias": -4.0},
        "subdural": {"features": ["network_logit"], "weights": [0.5], "bias": 0.25}}})
    network = {"any": 0.95, **{c: 0.3 for c in classes}}
    out = case.apply(network, named_findings(), classes)
    z = -4.0 + 1.5 * np.log1p(10.0) + 2.0 * 0.9
    assert out["any"] == pytest.approx(1 / (1 + np.exp(-z)))
    assert out["subdural"] == pytest.approx(1 / (1 + np.exp(-(0.25 + 0.5 * np.log(0.3 / 0.7)))))
    assert {c: out[c] for c in classes[:4]} == {c: 0.3 for c in classes[:4]}
    nothing = case.apply(network, NamedFindings.none(), classes)["any"]  # sure network, no finding kept
    assert nothing == pytest.approx(1 / (1 + np.exp(4.0))) and nothing < 0.05
    with pytest.raises(ValueError, match="other features"):
        CaseProbability.from_settings({"features": ["log_ml"], "outputs": {}})
    with pytest.raises(ValueError, match="do not match"):
        CaseProbability.from_settings({"outputs": {"any": {"features": ["x"], "weights": [1.0], "bias": 0}}})


def test_subtypes_at_most_any_caps_every_subtype_and_leaves_any():
    classes = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
    outputs = {"subdural": {"features": ["max_probability"], "weights": [6.0], "bias": 0.0}}  # p(0.9 * 6) = 0.996
    network = {"any": 0.4, "epidural": 0.7, "intraparenchymal": 0.1, "intraventricular": 0.2, "subarachnoid": 0.3,
               "subdural": 0.2}
    plain = CaseProbability.from_settings({"outputs": outputs}).apply(network, named_findings(), classes)
    assert plain["subdural"] > 0.99 and plain["epidural"] == 0.7  # off by default: what 2.6.0's card says
    capped = CaseProbability.from_settings({"outputs": outputs, "subtypes_at_most_any": True}).apply(
        network, named_findings(), classes)
    assert capped["any"] == 0.4 and capped["subdural"] == 0.4 and capped["epidural"] == 0.4
    assert (capped["intraparenchymal"], capped["intraventricular"], capped["subarachnoid"]) == (0.1, 0.2, 0.3)


def test_analysis_reports_the_case_probability_and_keeps_the_networks(tiny_model, tmp_path):
    from conftest import head_phantom
    from SMARTNetLib.analysis.inference import Analyzer

    model, card = load_model(tiny_model)
    model.finding_classifier = fixed_classifier(4)
    case = {"features": list(CASE_FEATURES),
            "outputs": {"any": {"features": ["log_named_ml"], "weights": [0.0], "bias": -3.0},
                        "subarachnoid": {"features": ["max_probability"], "weights": [10.0], "bias": -5.0}}}
    card.findings = {"file": FINDINGS_FILE, "features": list(FEATURE_NAMES), "drop_probability": 1.01,
                     "case_probability": case}
    card.thresholds = {**card.thresholds, "segmentation": 0.0}  # a random tiny model: label everything
    folder = save_model(model, card, tmp_path / "with-case")
    loaded, loaded_card = load_model(folder)
    assert loaded.finding_classifier.case is not None
    analysis = Analyzer(loaded, loaded_card, torch.device("cpu")).analyze(head_phantom()[0], explain="gradcam")
    named = analysis.named_findings
    assert len(named.ml) >= 1 and named.kept.all()
    assert analysis.ich_probability == pytest.approx(1 / (1 + np.exp(3.0)))
    best = float(named.probabilities[:, 4].max())
    assert analysis.probabilities["subarachnoid"] == pytest.approx(1 / (1 + np.exp(-(10 * best - 5))), rel=1e-5)
    assert analysis.findings["subarachnoid"]["probability"] == round(analysis.probabilities["subarachnoid"], 4)
    assert analysis.network_probabilities["epidural"] == analysis.probabilities["epidural"]
    assert set(analysis.network_probabilities) == set(analysis.probabilities)
    card_file = folder / "model.json"
    broken = loaded_card.to_dict()
    broken["findings"]["case_probability"] = {"outputs": {"any": {"features": ["network_logit"]}}}
    card_file.write_text(json.dumps(broken))
    with pytest.raises(SmartNetError, match="invalid case_probability") as err:
        load_model(folder)
    assert "model.json" in str(err.value)
