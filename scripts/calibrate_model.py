"""Calibrate a model folder on calibration volumes of the TRAINING generator: temperature scaling of the volume
classifier and the input-familiarity threshold. Both are stored in the card (``calibration``, ``familiarity``).

The calibration volumes are ``make_case(seed, size="full", style="randomised")`` (every third on the real head, the
rest procedural; ``--host diverse``: the three-generator mix that later training data uses) from seeds that neither
training (2024, 2026 data sets) nor the tests (900000+, 5000000+, 6000000+) use. The held-out generator is
never looked at here: it measures the result.

- Temperature T minimises the any-ICH negative log-likelihood (probabilities become sigmoid(logit / T)).
- The familiarity threshold is the largest reconstruction error of the calibration volumes times ``--margin``.

    python scripts/calibrate_model.py MODEL_DIR [--n 40] [--seed 700000] [--margin 1.15] [--host diverse]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from SMARTNetLib.analysis.inference import Analyzer, resolve_device
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.store import load_model
from SMARTNetLib.synthetic import make_case


def nll(logits: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    p = 1 / (1 + np.exp(-logits / temperature))
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=700000)
    parser.add_argument("--margin", type=float, default=1.15)
    parser.add_argument("--host", choices=("diverse",), help="make_case's host for every volume (default: real "
                        "and procedural, 1 in 3 real)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = resolve_device(args.device)
    model, card = load_model(args.model, device)
    card.calibration, card.familiarity = {}, {}  # measure the raw logits and errors
    analyzer = Analyzer(model, card, device)
    logits, truth, errors = [], [], []
    start = time.time()
    for i in range(args.n):
        host = args.host or ("real" if i % 3 == 2 else "procedural")
        ct, label, info = make_case(args.seed + i, size="full", host=host, style="randomised")
        a = analyzer.analyze(ct, explain="none")
        p = float(np.clip(a.ich_probability, 1e-6, 1 - 1e-6))
        logits.append(np.log(p / (1 - p)))
        truth.append(float(bool(info["subtypes"])))
        errors.append(a.familiarity)
        print(f"[{time.time() - start:6.1f}s] {i + 1}/{args.n} positive={bool(info['subtypes'])} p={p:.3f} "
              f"rec_error={a.familiarity:.4f}", flush=True)
    x, t = np.array(logits), np.array(truth)
    fit = minimize_scalar(lambda log_t: nll(x, t, float(np.exp(log_t))), bounds=(np.log(0.2), np.log(10)),
                          method="bounded")
    temperature = float(np.exp(fit.x))
    command = "python scripts/calibrate_model.py " + " ".join(sys.argv[1:])
    generator = "SMARTNetLib.synthetic.make_case(style='randomised', size='full'" + (
        f", host='{args.host}')" if args.host else ")")
    data = {"generator": generator,
            "seeds": [args.seed, args.seed + args.n - 1], "positives": int(t.sum()), "negatives": int(len(t) - t.sum())}
    saved = ModelCard.load(args.model)
    saved.calibration = {"temperature": round(temperature, 4), "nll_before": round(nll(x, t, 1.0), 4),
                         "nll_after": round(nll(x, t, temperature), 4), "data": data, "command": command,
                         "date": time.strftime("%Y-%m-%d")}
    e = np.array(errors)
    saved.familiarity = {"method": "mean L1 reconstruction error of the reconstruction head over head slices",
                         "threshold": round(float(e.max() * args.margin), 4),
                         "reference": {"n": len(e), "median": round(float(np.median(e)), 4),
                                       "p95": round(float(np.percentile(e, 95)), 4), "max": round(float(e.max()), 4)},
                         "margin": args.margin, "data": data, "command": command}
    saved.save(args.model)
    print(json.dumps({"calibration": saved.calibration, "familiarity": saved.familiarity}, indent=2))


if __name__ == "__main__":
    main()
