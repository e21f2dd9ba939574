"""Fit a model folder's case probability (:class:`SMARTNetLib.model.finding_classifier.CaseProbability`).

The network's volume classifier calls a scan positive from the whole volume; the finding classifier then removes
findings that are not bleeds. Where the two disagree (a network sure of blood in a scan whose every finding was
removed), the scan's probability should follow the findings too. Per output (``any`` and each class) this fits a
logistic regression over :data:`CASE_FEATURES` (the network's calibrated logit; the kept findings' mL, their
largest probability, their probability-weighted mL; the removed findings' mL) on ``make_case(seed, size="full",
host=HOST, style="randomised")`` volumes from seeds that the model's network, calibration and finding classifier
never saw (``--seed``; 810000+ with ``--host diverse`` are unused by release 2.1.0, whose finding classifier saw
``host="mixed"`` volumes of those seeds, other volumes). Which features (the network's alone, the findings' alone,
or both) and the regularisation come from 5-fold cross-validated log-loss on these volumes alone; the held-out
generator and the selection set are never looked at. Writes ``findings.case_probability`` into the card.
``--feature-sets`` narrows the choice (``both`` keeps the network's logit in every output) and ``--outputs`` fits
some outputs only, the others keeping the network's probability. Release 2.6.0 fits the five subtypes with
``--feature-sets both``: fitted for ``any`` too (the findings alone, or with the network's logit), the training
generator's test AUC fell by more than 0.01 (README, "The bundled model"). With ``--outputs``, the card's other
fitted outputs are kept; each output records the command that fitted it. ``--sources`` skips the other sources'
seeds before they are made; ``--plain N`` adds N volumes of the releases' plain style (the in-generator test set's
style, seeds ``--plain-seed`` on). Feature sets: ``network``, ``findings`` (the kept findings), ``both`` (the two:
release 2.6.0's) and ``all`` (``both`` and the removed findings' mL).

    python scripts/fit_case_probability.py MODEL_DIR [--n 300] [--seed 810000] [--host diverse] [--cache DIR]
        [--feature-sets all both findings network] [--outputs any epidural ...] [--sources procedural real]
        [--plain 100] [--plain-seed 820000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from evaluate_model import cached  # noqa: E402  (one cache format for generated volumes)

from SMARTNetLib.analysis.inference import Analyzer, resolve_device  # noqa: E402
from SMARTNetLib.analysis.metrics import calibration_error  # noqa: E402
from SMARTNetLib.contracts.model_card import ModelCard  # noqa: E402
from SMARTNetLib.model.finding_classifier import CASE_FEATURES, NamedFindings, case_features  # noqa: E402
from SMARTNetLib.model.store import load_model  # noqa: E402
from SMARTNetLib.synthetic import make_case  # noqa: E402
from SMARTNetLib.synthetic.dataset import case_source  # noqa: E402

# "both" is release 2.6.0's: the network's logit and the kept findings; "all" adds the removed findings' mL
FEATURE_SETS = {"network": CASE_FEATURES[:1], "findings": CASE_FEATURES[1:4], "both": CASE_FEATURES[:4],
                "all": CASE_FEATURES}
STRENGTHS = (0.1, 1.0, 10.0)  # scikit-learn's C: inverse regularisation


def case_record(analyzer: Analyzer, ct: sitk.Image | None, label: sitk.Image | None, store: Path | None) -> dict:
    """The network's probabilities, the named findings and the truth of one case (kept in ``store``, ``.npz``)."""
    if store is not None and store.is_file():
        with np.load(store) as saved:
            return dict(saved)
    analysis = analyzer.analyze(ct, explain="none")
    truth = sitk.GetArrayViewFromImage(label)
    named = analysis.named_findings or NamedFindings.none()
    record = {"network": np.array([analysis.network_probabilities[n] for n in analyzer.card.output_names]),
              "probabilities": named.probabilities, "ml": named.ml, "kept": named.kept,
              "present": np.array([(truth == c.label_value).any() for c in analyzer.classes])}
    if store is not None:
        tmp = store.with_name(f".{store.stem}.tmp.npz")
        np.savez_compressed(tmp, **record)
        tmp.replace(store)
    return record


def cached_host(cache: Path | None, key: str) -> str | None:
    """Which source ``make_case`` drew for a cached volume (its info file), None when it is not cached."""
    info = cache / f"{key}.json" if cache else None
    return json.loads(info.read_text())["host"] if info is not None and info.is_file() else None


def fit_output(x: np.ndarray, y: np.ndarray, network: np.ndarray, feature_sets: list[str]) -> dict:
    """The feature set (of ``feature_sets``) and strength with the least cross-validated log-loss, refitted on
    all cases."""
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    trials = []
    for name in feature_sets:
        features = FEATURE_SETS[name]
        columns = [CASE_FEATURES.index(f) for f in features]
        for strength in STRENGTHS:
            predicted = cross_val_predict(LogisticRegression(C=strength), x[:, columns], y, cv=folds,
                                          method="predict_proba")[:, 1]
            trials.append((log_loss(y, predicted), name, strength, columns, predicted))
    loss, name, strength, columns, predicted = min(trials, key=lambda t: t[0])
    fit = LogisticRegression(C=strength).fit(x[:, columns], y)
    return {"features": [CASE_FEATURES[c] for c in columns], "weights": [round(float(w), 5) for w in fit.coef_[0]],
            "bias": round(float(fit.intercept_[0]), 5), "strength": strength, "feature_set": name,
            "cross_validation": {"log_loss": round(loss, 4), "log_loss_network": round(log_loss(y, network), 4),
                                 "auc": round(roc_auc_score(y, predicted), 4),
                                 "auc_network": round(roc_auc_score(y, network), 4),
                                 "calibration_error": round(calibration_error(y.astype(int).tolist(),
                                                                              predicted.tolist())[0], 4),
                                 "calibration_error_network": round(calibration_error(y.astype(int).tolist(),
                                                                                      network.tolist())[0], 4)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=810000)
    parser.add_argument("--host", default="diverse", choices=("mixed", "diverse"))
    parser.add_argument("--cache", type=Path, help="folder keeping the generated volumes between runs")
    parser.add_argument("--feature-sets", nargs="+", choices=sorted(FEATURE_SETS), default=sorted(FEATURE_SETS),
                        help="feature sets to choose from (both: the network's logit is always kept)")
    parser.add_argument("--outputs", nargs="+", help="the outputs to fit (default: any and every class); the "
                        "others keep the network's probability")
    parser.add_argument("--sources", nargs="+", choices=("procedural", "real", "labelmap"),
                        help="fit on the cases of these sources only (default: all)")
    parser.add_argument("--plain", type=int, default=0, help="also this many volumes of the releases' plain style "
                        "(the in-generator test set's: make_case(host='mixed', style='plain'))")
    parser.add_argument("--plain-seed", type=int, default=820000)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    start = time.time()
    model, card = load_model(args.model, resolve_device(args.device))
    if model.finding_classifier is None:
        sys.exit(f"{args.model}: the card has no finding classifier (scripts/train_finding_classifier.py first)")
    analyzer = Analyzer(model, card, resolve_device(args.device))
    names = args.outputs or list(card.output_names)
    if set(names) - set(card.output_names):
        sys.exit(f"{args.model}: no output {sorted(set(names) - set(card.output_names))} (outputs: "
                 f"{', '.join(card.output_names)})")
    records, hosts = [], []
    wanted = [(args.seed + i, f"fc-{args.seed + i}" if args.host == "mixed" else f"fc-{args.host}-{args.seed + i}",
               args.host, "randomised") for i in range(args.n)]  # the keys: train_finding_classifier's
    wanted += [(args.plain_seed + i, f"plain-{args.plain_seed + i}", "mixed", "plain") for i in range(args.plain)]
    for number, (seed, key, host_of, style) in enumerate(wanted, 1):
        if args.sources and style == "randomised" and case_source(seed, host_of) not in args.sources \
                and case_source(seed, host_of) != "real":  # a real head that is not installed becomes procedural
            continue  # not made at all: another source
        store = args.cache / f"case-{key}-{card.name}-{card.version}.npz" if args.cache else None
        ct = label = None
        host = cached_host(args.cache, key)
        if store is None or not store.is_file() or host is None:
            ct, label, info = cached(args.cache, key,
                                     lambda s=seed, h=host_of, y=style: make_case(s, size="full", host=h, style=y))
            host = info["host"]
        if args.sources and style == "randomised" and host not in args.sources:
            continue
        records.append(case_record(analyzer, ct, label, store))
        hosts.append(host)
        print(f"[{time.time() - start:6.1f}s] case {number}/{len(wanted)} ({style}, {host}): network p "
              f"{records[-1]['network'][0]:.3f}, {int(records[-1]['kept'].sum())} findings kept", flush=True)
    if args.sources:
        print(f"{len(records)} cases: {', '.join(args.sources)}"
              + (f", {args.plain} of the plain style" if args.plain else ""), flush=True)
    outputs = {}
    for name in names:
        index = card.output_names.index(name)
        output = 0 if name == "any" else list(card.classes).index(name) + 1
        x = np.stack([case_features(r["network"][index], NamedFindings(r["probabilities"], r["ml"], r["kept"]),
                                    output) for r in records])
        y = np.array([bool(r["present"].any() if output == 0 else r["present"][output - 1]) for r in records])
        outputs[name] = fit_output(x, y, np.array([r["network"][index] for r in records]), args.feature_sets)
        print(f"{name}: {outputs[name]}", flush=True)
    command = "python scripts/fit_case_probability.py " + " ".join(sys.argv[1:])
    data = {"generator": f"SMARTNetLib.synthetic.make_case(style='randomised', size='full', host='{args.host}')",
            "seeds": [args.seed, args.seed + args.n - 1], "sources": args.sources or "all", "cases": len(records),
            "positives": int(sum(r["present"].any() for r in records))}
    if args.plain:
        data["plain"] = {"generator": "SMARTNetLib.synthetic.make_case(style='plain', size='full', host='mixed')",
                         "seeds": [args.plain_seed, args.plain_seed + args.plain - 1]}
    for fit in outputs.values():
        fit["command"], fit["data"] = command, data
    saved = ModelCard.load(args.model)
    earlier = saved.findings.get("case_probability") or {}
    if args.outputs and earlier.get("outputs"):  # some outputs refitted: the others stay as they were
        outputs = {**earlier["outputs"], **outputs}
        commands = earlier.get("commands", [earlier.get("command")]) + [command]
        data = earlier.get("data", data)  # the first fit's; each output has its own
    else:
        commands = [command]
    saved.findings["case_probability"] = {
        "method": "per output, logistic regression over the network's calibrated logit and the kept findings "
                  "(finding_classifier.CaseProbability); features and strength by 5-fold cross-validated log-loss",
        "features": list(CASE_FEATURES), "outputs": outputs, "data": data, "command": commands[0],
        "commands": commands, "date": time.strftime("%Y-%m-%d")}
    saved.save(args.model)
    print(f"[{time.time() - start:6.1f}s] saved the case probability in {args.model / 'model.json'}")


if __name__ == "__main__":
    main()
