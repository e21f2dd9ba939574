"""Train a model folder's finding classifier (:mod:`SMARTNetLib.model.finding_classifier`) on the TRAINING generator.

The model analyses ``make_case(seed, size="full", host=HOST, style="randomised")`` volumes (``--host``, default
``mixed``: the generators release 2.1.0 was trained on; ``diverse`` adds the label-map-first heads) from seeds that
neither its training (data sets 2024 and 2026), its calibration (700000+) nor the tests (900000+, 5000000+,
6000000+) use. Each connected finding of its label map is measured and given the truth it overlaps: a subtype
(the most common true label inside it) or background (a false positive). The last ``--val-fraction`` of the
cases is the validation split: it picks the number of epochs (the fewest that reach the best finding-level
subtype accuracy of all trials) and then ``drop_probability`` (the background probability above which a finding
is removed: the value, of those tried, with the least false-positive plus missed volume in mL), and gives the
figures stored in the card. The held-out generator is never looked at here.

    python scripts/train_finding_classifier.py MODEL_DIR [--n 300] [--seed 810000] [--host mixed] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from evaluate_model import cached  # noqa: E402  (one cache format for generated volumes)

from SMARTNetLib.analysis.inference import Analyzer, resolve_device  # noqa: E402
from SMARTNetLib.analysis.metrics import finding_subtypes  # noqa: E402
from SMARTNetLib.contracts.classes import SUBTYPES  # noqa: E402
from SMARTNetLib.contracts.model_card import ModelCard  # noqa: E402
from SMARTNetLib.io.volume import to_canonical  # noqa: E402
from SMARTNetLib.model.finding_classifier import (  # noqa: E402
    FEATURE_NAMES,
    FINDINGS_FILE,
    FindingClassifier,
    FindingNet,
    component_features,
    find_components,
)
from SMARTNetLib.model.store import load_model  # noqa: E402
from SMARTNetLib.synthetic import make_case  # noqa: E402

BLEED_OVERLAP = 0.25  # a finding is a bleed when this fraction of it, or 0.5 mL of it, is true blood
DROP_CHOICES = (0.5, 0.7, 0.9, 1.01)
VALUES = np.array([c.label_value for c in SUBTYPES])


class Recorder:
    """Stands in for the finding classifier during analysis: keeps what it would read, changes nothing."""

    def relabel(self, hu, labels, confidence, spacing_zyx, values):
        self.seen = (np.array(hu), labels.copy(), confidence.copy(), tuple(spacing_zyx))
        return labels


def case_findings(analyzer: Analyzer, ct: sitk.Image, label: sitk.Image, store: Path | None = None) -> dict:
    """Features and truth of every finding of one analysed case, plus what the evaluation needs (kept in
    ``store``, an ``.npz`` file, when given)."""
    if store is not None and store.is_file():
        with np.load(store) as saved:
            case = dict(saved)
        case["components"] = find_components(case["labels"])[0]
        case["voxel_ml"] = float(case["voxel_ml"])
        return case
    recorder = Recorder()
    analyzer.model.finding_classifier = recorder
    analyzer.analyze(ct, explain="none")
    hu, labels, confidence, spacing = recorder.seen
    truth = sitk.GetArrayFromImage(to_canonical(label))
    components, count = find_components(labels)
    features = component_features(hu, labels, confidence, spacing, components, count)
    voxel_ml = float(np.prod(spacing)) / 1000
    target = np.zeros(count, dtype=np.int64)
    ml = np.zeros(count, dtype=np.float32)
    for c in range(count):
        inside = truth[components == c + 1]
        blood = inside[inside > 0]
        ml[c] = inside.size * voxel_ml
        if blood.size and (blood.size >= BLEED_OVERLAP * inside.size or blood.size * voxel_ml >= 0.5):
            target[c] = int(np.argmax(np.bincount(blood, minlength=6)[1:])) + 1
    case = {"features": features, "target": target, "ml": ml, "labels": labels, "truth": truth,
            "voxel_ml": voxel_ml}
    if store is not None:
        tmp = store.with_name(f".{store.stem}.tmp.npz")
        np.savez_compressed(tmp, **case)
        tmp.replace(store)
    return {**case, "components": components}


def train(features: np.ndarray, target: np.ndarray, ml: np.ndarray, epochs: int, seed: int,
          hidden: int = 64) -> FindingNet:
    """Weighted cross-entropy (classes balanced, findings weighted by the square root of their volume)."""
    torch.manual_seed(seed)
    net = FindingNet(hidden=hidden)
    x, y = torch.from_numpy(features), torch.from_numpy(target)
    net.mean.copy_(x.mean(0))
    net.std.copy_(x.std(0).clamp(min=1e-3))
    counts = np.bincount(target, minlength=6).astype(float)
    class_weight = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / 6, 0.0) ** 0.5
    weight = torch.from_numpy((class_weight[target] * np.sqrt(np.clip(ml, 0.05, 20.0))).astype(np.float32))
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(y))
        for batch in order.split(128):
            loss = (torch.nn.functional.cross_entropy(net(x[batch]), y[batch], reduction="none")
                    * weight[batch]).sum() / weight[batch].sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net.eval()


def apply(cases: list[dict], classifier: FindingClassifier | None) -> list[np.ndarray]:
    """Each case's label map relabelled by ``classifier`` (None: the network's own labels)."""
    out = []
    for case in cases:
        if classifier is None or not len(case["features"]):
            out.append(case["labels"])
            continue
        out.append(classifier.relabel_components(case["components"], case["features"], VALUES))
    return out


def measure(cases: list[dict], labelled: list[np.ndarray]) -> dict:
    """Finding-level subtype accuracy (true findings of 0.5 mL or more), false-positive and missed mL."""
    found, right, fp_ml, missed_ml = 0, 0, 0.0, 0.0
    for case, labels in zip(cases, labelled):
        for f in finding_subtypes(case["truth"], labels, case["voxel_ml"], 0.5):
            found += f["found"]
            right += f["found"] and f["true"] == f["predicted"]
        fp_ml += float(((labels > 0) & (case["truth"] == 0)).sum() * case["voxel_ml"])
        missed_ml += float(((labels == 0) & (case["truth"] > 0)).sum() * case["voxel_ml"])
    return {"finding_subtype_accuracy": round(right / found, 4) if found else None, "findings_found": found,
            "false_positive_ml": round(fp_ml, 2), "missed_ml": round(missed_ml, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=810000)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--host", default="mixed", choices=("mixed", "diverse"),
                        help="the training generators' hosts (make_case's host)")
    parser.add_argument("--cache", type=Path, help="folder keeping the generated volumes between runs")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    start = time.time()
    device = resolve_device(args.device)
    model, card = load_model(args.model, device)
    analyzer = Analyzer(model, card, device)
    cases = []
    split = int(round(args.n * (1 - args.val_fraction)))
    for i in range(args.n):
        seed = args.seed + i
        key = f"fc-{seed}" if args.host == "mixed" else f"fc-{args.host}-{seed}"
        store = args.cache / f"{key}-{card.name}-{card.version}.npz" if args.cache else None
        if store is not None and store.is_file():
            ct = label = None
        else:
            ct, label, _ = cached(args.cache, key,
                                  lambda s=seed: make_case(s, size="full", host=args.host, style="randomised"))
        case = case_findings(analyzer, ct, label, store)
        if i < split:  # training cases: the features are enough (the volumes would fill the memory)
            case = {k: case[k] for k in ("features", "target", "ml")}
        cases.append(case)
        print(f"[{time.time() - start:6.1f}s] case {i + 1}/{args.n}: {len(cases[-1]['target'])} findings, "
              f"{int((cases[-1]['target'] > 0).sum())} bleeds", flush=True)
    fit, val = cases[:split], cases[split:]
    stack = {k: np.concatenate([c[k] for c in fit]) for k in ("features", "target", "ml")}
    baseline = measure(val, apply(val, None))
    print(f"validation, the network's own labels: {baseline}", flush=True)
    trials = []
    for epochs in args.epochs:
        net = train(stack["features"], stack["target"], stack["ml"], epochs, seed=0)
        for drop in DROP_CHOICES:
            result = measure(val, apply(val, FindingClassifier(net, drop)))
            trials.append({"epochs": epochs, "drop_probability": drop, **result, "net": net})
            print(f"validation, {epochs} epochs, drop above {drop}: {result}", flush=True)
    accuracy = max(t["finding_subtype_accuracy"] or 0 for t in trials)
    best_epochs = min((t for t in trials if (t["finding_subtype_accuracy"] or 0) == accuracy),
                      key=lambda t: t["epochs"])["epochs"]
    chosen = min((t for t in trials if t["epochs"] == best_epochs),
                 key=lambda t: t["false_positive_ml"] + t["missed_ml"])
    command = "python scripts/train_finding_classifier.py " + " ".join(sys.argv[1:])
    saved = ModelCard.load(args.model)
    torch.save(chosen["net"].state_dict(), args.model / FINDINGS_FILE)
    saved.findings = {
        "file": FINDINGS_FILE, "method": "MLP over anatomical features of each connected finding "
        "(finding_classifier.py): one subtype per finding, or removed as not a bleed",
        "features": list(FEATURE_NAMES), "hidden": 64, "epochs": best_epochs,
        "drop_probability": chosen["drop_probability"],
        "data": {"generator": f"SMARTNetLib.synthetic.make_case(style='randomised', size='full', host='{args.host}')",
                 "seeds": [args.seed, args.seed + args.n - 1], "validation_seeds": [args.seed + split,
                                                                                     args.seed + args.n - 1],
                 "findings": int(len(stack["target"])), "bleed_findings": int((stack["target"] > 0).sum())},
        "validation": {"network_labels": baseline,
                       "finding_classifier": {k: v for k, v in chosen.items() if k != "net"}},
        "command": command, "date": time.strftime("%Y-%m-%d")}
    saved.save(args.model)
    print(f"[{time.time() - start:6.1f}s] saved {args.model / FINDINGS_FILE}: {saved.findings['validation']}")


if __name__ == "__main__":
    main()
