"""scripts/fit_case_probability.py: the choice of features and strength by cross-validated log-loss, and the fit
that the card keeps applying as the engine applies it."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from conftest import ROOT
from SMARTNetLib.model.finding_classifier import CASE_FEATURES, CaseProbability, NamedFindings


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("fit_case_probability", ROOT / "scripts" / "fit_case_probability.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cases(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scans whose network probability is noise and whose kept findings' mL tells the truth (with some overlap)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    network = rng.uniform(0.05, 0.95, n)
    ml = np.where(y, rng.uniform(2, 40, n), rng.uniform(0, 4, n))
    best = np.where(ml > 0, rng.uniform(0.3, 1.0, n), 0.0)
    removed = rng.uniform(0, 3, n)  # no information
    x = np.stack([np.log(network / (1 - network)), np.log1p(ml), best, np.log1p(ml * best), np.log1p(removed)],
                 axis=1)
    return x, y, network


def test_fit_prefers_the_findings_when_the_network_knows_nothing(script):
    x, y, network = cases()
    fit = script.fit_output(x, y, network, ["network", "findings"])
    assert fit["feature_set"] == "findings" and fit["features"] == list(CASE_FEATURES[1:4])
    cv = fit["cross_validation"]
    assert cv["auc"] > 0.9 and cv["auc_network"] < 0.65 and cv["log_loss"] < cv["log_loss_network"]
    only_network = script.fit_output(x, y, network, ["network"])
    assert only_network["feature_set"] == "network" and only_network["cross_validation"]["auc"] < 0.65


def test_the_fit_applies_in_the_engine_as_scikit_learn_predicts_it(script):
    from sklearn.linear_model import LogisticRegression

    x, y, network = cases(seed=1)
    fit = script.fit_output(x, y, network, ["all"])
    assert fit["features"] == list(CASE_FEATURES)
    reference = LogisticRegression(C=fit["strength"]).fit(x, y)
    case = CaseProbability.from_settings({"features": list(CASE_FEATURES), "outputs": {"any": fit}})
    for row, p in zip(x[:5], network[:5]):
        ml, removed = float(np.expm1(row[1])), float(np.expm1(row[4]))  # one kept finding and one removed
        named = NamedFindings(np.array([[1 - row[2], row[2], 0, 0, 0, 0], [0.95, 0.05, 0, 0, 0, 0]], np.float32),
                              np.array([ml, removed], np.float32), np.array([True, False]))
        engine = case.apply({"any": float(p)}, named, ["epidural"])["any"]
        assert engine == pytest.approx(reference.predict_proba(row[None])[0, 1], abs=2e-3)
