"""Measure a model on data its training never touched: the training generator's held-out seeds, a second
generator written apart from the training one, the real head with inserted bleeds, and the real normal head.

Sets (targets of the bundled model in brackets; the held-out-generator and real sets are the ones that count):
- ``in_generator``: ``SMARTNetLib.synthetic.make_case`` (plain style, the releases' test set) from seeds that
  training never uses (``--seed``, default 900000 + i), full-size grids, procedural and real-anatomy hosts;
- ``heldout_generator``: ``SMARTNetLib.synthetic.heldout.make_heldout_case`` (seeds 5000000 + i): its own
  anatomy, texture, noise, kernel, bleed shapes and HU; never used for training, model selection or thresholds;
- ``real_host``: held-out bleeds painted into the real InVesalius head by the held-out generator's own insertion
  method (seeds 6000000 + i);
- ``real_normal``: the real normal head as given, rotated, resampled and cropped [p < 0.2 and < 0.5 mL each];
- slicerio's real chest CT [no hemorrhage, or a "not a head CT" warning].

Per set: AUC; sensitivity and specificity at the card's classification threshold; negatives' false-positive
volume (median, 90th percentile); Dice over positives and per subtype; bleeds >= 1 mL found; a finding-level
subtype confusion matrix and accuracy (true components of 0.5 mL or more; accuracy over those found); median
absolute volume error; the pointing game (Grad-CAM peak within 10 mm of the bleed); expected calibration error
and a reliability-diagram PNG. Last, the input-familiarity score on probes that are not head CT of the kind
the model knows, against every head CT above (ROC AUC).

    python benchmarks/evaluate_model.py --model smartnet-default [--n 60 --n-heldout 40 --n-real-host 12]
        [--cache build/eval-cache] [--update-card]

Writes ``benchmarks/results/evaluation-<model>.json`` and ``benchmarks/results/reliability-<model>.png``;
``--update-card`` also stores the metrics, the command and the date in the model's card.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from SMARTNetLib.analysis.inference import Analyzer, resolve_device
from SMARTNetLib.analysis.metrics import calibration_error, dice, finding_subtypes, pointing_hit, roc_auc
from SMARTNetLib.contracts.classes import SUBTYPES
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.store import load_model, resolve_model

Case = tuple[str, sitk.Image, sitk.Image | None, dict]
FINDING_MIN_ML = 0.5  # true connected components smaller than this (scattered sulcal blood) are not findings


def cached(cache: Path | None, key: str, make: Callable[[], tuple | None]) -> tuple | None:
    """``make()`` -> (ct, label, info), stored under ``cache/key`` so that two models see the same volumes."""
    if cache is None:
        return make()
    ct_path, label_path, info_path = (cache / f"{key}{s}" for s in ("_ct.nrrd", "_label.nrrd", ".json"))
    if info_path.is_file():
        return sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(label_path)), json.loads(info_path.read_text())
    made = make()
    if made is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(made[0], str(ct_path), useCompression=True)
    sitk.WriteImage(made[1], str(label_path), useCompression=True)
    info_path.write_text(json.dumps(made[2]))
    return made


def in_generator_cases(n: int, seed: int, cache: Path | None) -> Iterator[Case]:
    from SMARTNetLib.synthetic import make_case

    for i in range(n):
        host = "real" if i % 3 == 2 else "procedural"
        ct, label, info = cached(cache, f"ingen-{seed + i}",
                                 lambda i=i, h=host: make_case(seed + i, size="full", host=h))
        yield f"seed {seed + i} {info['host']}", ct, label, info


def heldout_cases(n: int, seed: int, cache: Path | None) -> Iterator[Case]:
    from SMARTNetLib.synthetic.heldout import make_heldout_case

    for i in range(n):
        ct, label, info = cached(cache, f"heldout-{seed + i}", lambda i=i: make_heldout_case(seed + i))
        yield f"seed {seed + i}", ct, label, info


def real_host_cases(n: int, seed: int, cache: Path | None) -> Iterator[Case]:
    from SMARTNetLib.synthetic.heldout import insert_into_real_head

    for i in range(n):
        made = cached(cache, f"realhost-{seed + i}", lambda i=i: insert_into_real_head(seed + i))
        if made is None:
            return
        yield f"seed {seed + i}", *made


def real_normal_cases() -> Iterator[Case]:
    from SMARTNetLib.synthetic.heldout import real_head_variants

    for name, image in real_head_variants():
        label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        label.CopyInformation(image)
        yield name, image, label, {"host": "real-normal"}


def evaluate_case(analyzer: Analyzer, name: str, ct: sitk.Image, label: sitk.Image, info: dict,
                  hirescam: bool) -> dict:
    analysis = analyzer.analyze(ct, explain="gradcam")
    truth = sitk.GetArrayFromImage(label)
    pred = sitk.GetArrayFromImage(analysis.labels)
    ml = float(np.prod(ct.GetSpacing())) / 1000
    row = {"case": name, "host": info.get("host"), "size": list(ct.GetSize()),
           "spacing": [round(s, 3) for s in ct.GetSpacing()], "positive": bool(truth.any()),
           "probability": analysis.ich_probability,
           "true_ml": round(float((truth > 0).sum() * ml), 3), "pred_ml": round(analysis.total_volume_ml, 3),
           "warnings": analysis.warnings, "familiarity": analysis.familiarity,
           "familiarity_warning": any("unlike the model's training data" in w for w in analysis.warnings),
           "subtypes": {}}
    for cls in SUBTYPES:
        t, p = truth == cls.label_value, pred == cls.label_value
        row["subtypes"][cls.name] = {"present": bool(t.any()), "probability": analysis.probabilities[cls.name],
                                     "dice": round(dice(t, p), 4) if t.any() else None}
    if row["positive"]:
        row["dice"] = round(dice(truth > 0, pred > 0), 4)
        row["findings"] = finding_subtypes(truth, pred, ml, FINDING_MIN_ML)
        row["pointing_hit"] = pointing_hit(next(iter(analysis.activations.values())), truth > 0)
        if hirescam:
            heat = next(iter(analyzer.analyze(ct, explain="hirescam").activations.values()))
            row["pointing_hit_hirescam"] = pointing_hit(heat, truth > 0)
    return row


def set_metrics(rows: list[dict], threshold: float) -> dict:
    """The per-set figures of the module docstring."""
    pos = [r for r in rows if r["positive"]]
    neg = [r for r in rows if not r["positive"]]
    truth = [int(r["positive"]) for r in rows]
    probs = [r["probability"] for r in rows]
    ece, reliability = calibration_error(truth, probs)
    findings = [f for r in pos for f in r["findings"]]
    found = [f for f in findings if f["found"]]
    names = ["missed"] + [c.name for c in SUBTYPES]
    confusion = {c.name: {names[v]: sum(f["true"] == c.label_value and f["predicted"] == v for f in findings)
                          for v in range(6)} for c in SUBTYPES}
    fp = [r["pred_ml"] for r in neg]
    big = [r for r in pos if r["true_ml"] >= 1.0]
    out = {
        "cases": len(rows), "positives": len(pos), "negatives": len(neg),
        "auc_any": roc_auc(truth, probs),
        "auc_subtypes": {c.name: roc_auc([int(r["subtypes"][c.name]["present"]) for r in rows],
                                         [r["subtypes"][c.name]["probability"] for r in rows]) for c in SUBTYPES},
        "sensitivity": _ratio(sum(r["probability"] >= threshold for r in pos), len(pos)),
        "specificity": _ratio(sum(r["probability"] < threshold for r in neg), len(neg)),
        "false_positive_ml_median_negatives": _percentile(fp, 50),
        "false_positive_ml_p90_negatives": _percentile(fp, 90),
        "dice_positive_mean": _mean([r["dice"] for r in pos]),
        "dice_subtypes_mean": {c.name: _mean([r["subtypes"][c.name]["dice"] for r in rows
                                              if r["subtypes"][c.name]["present"]]) for c in SUBTYPES},
        "bleeds_1ml_found": _ratio(sum(r["pred_ml"] > 0 and r["dice"] > 0 for r in big), len(big)),
        "findings": len(findings), "findings_found": len(found),
        "finding_subtype_accuracy": _ratio(sum(f["true"] == f["predicted"] for f in found), len(found)),
        "finding_subtype_confusion": confusion,
        "volume_abs_error_ml_median": _percentile([abs(r["pred_ml"] - r["true_ml"]) for r in pos], 50),
        "pointing_game": _mean([float(r["pointing_hit"]) for r in pos]),
        "calibration_error": ece, "reliability": reliability,
        "warned": sum(bool(r["warnings"]) for r in rows),
        "familiarity_warnings": _ratio(sum(r["familiarity_warning"] for r in rows), len(rows)),
    }
    if pos and "pointing_hit_hirescam" in pos[0]:
        out["pointing_game_hirescam"] = _mean([float(r["pointing_hit_hirescam"]) for r in pos])
    return out


def chest_ct(analyzer: Analyzer) -> dict:
    import slicerio

    from SMARTNetLib.io.volume import read_ct

    a = analyzer.analyze(read_ct(Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"), explain="none")
    passes = bool(a.warnings) or (a.ich_probability < 0.5 and a.total_volume_ml < 1.0)
    return {"probability": round(a.ich_probability, 4), "volume_ml": round(a.total_volume_ml, 3),
            "warnings": a.warnings, "familiarity": a.familiarity, "passes": passes}


def reliability_png(sets: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for name, m in sets.items():
        table = m["metrics"].get("reliability") or []
        if table:
            ax.plot([b["mean_probability"] for b in table], [b["observed"] for b in table], marker="o",
                    label=f"{name} (ECE {m['metrics']['calibration_error']:.3f})")
    ax.set(xlabel="predicted ICH probability", ylabel="observed frequency of ICH", xlim=(0, 1), ylim=(0, 1),
           title=title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _mean(values: list) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _percentile(values: list, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smartnet-default")
    parser.add_argument("--n", type=int, default=60, help="in-generator cases")
    parser.add_argument("--seed", type=int, default=900000)
    parser.add_argument("--n-heldout", type=int, default=40, help="held-out-generator cases")
    parser.add_argument("--n-real-host", type=int, default=12, help="real-head cases with held-out bleeds")
    parser.add_argument("--hirescam", action="store_true", help="also the pointing game of HiResCAM (in-generator)")
    parser.add_argument("--cache", type=Path, help="folder keeping the generated test volumes between runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--update-card", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    folder = resolve_model(args.model)
    device = resolve_device(args.device)
    model, card = load_model(folder, device)
    analyzer = Analyzer(model, card, device)
    threshold = float(card.thresholds.get("classification", 0.5))
    start = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - start:7.1f}s] {message}", flush=True)

    sources = {
        "in_generator": (in_generator_cases(args.n, args.seed, args.cache), args.hirescam),
        "heldout_generator": (heldout_cases(args.n_heldout, 5_000_000, args.cache), False),
        "real_host": (real_host_cases(args.n_real_host, 6_000_000, args.cache), False),
        "real_normal": (real_normal_cases(), False),
    }
    sets: dict[str, dict] = {}
    for set_name, (cases, hirescam) in sources.items():
        rows = []
        for name, ct, label, info in cases:
            row = evaluate_case(analyzer, name, ct, label, info, hirescam)
            rows.append(row)
            log(f"{set_name} {name}: positive={row['positive']} p={row['probability']:.3f} "
                f"dice={row.get('dice')} ml {row['true_ml']:.1f}->{row['pred_ml']:.1f}")
        sets[set_name] = {"metrics": set_metrics(rows, threshold), "cases": rows}
    normal = sets["real_normal"]["cases"]
    sets["real_normal"]["metrics"]["passes"] = bool(normal) and all(
        r["probability"] < 0.2 and r["pred_ml"] < 0.5 for r in normal)
    chest = chest_ct(analyzer)
    log(f"chest CT: {chest}")
    probes = []
    from SMARTNetLib.synthetic.heldout import probe_volumes

    for name, image in probe_volumes():
        a = analyzer.analyze(image, explain="none")
        probes.append({"case": name, "probability": round(a.ich_probability, 4), "pred_ml": round(a.total_volume_ml, 3),
                       "familiarity": a.familiarity, "warnings": a.warnings})
        log(f"probe {name}: p={a.ich_probability:.3f} familiarity={a.familiarity:.4f} warnings={len(a.warnings)}")
    probes.append({"case": "chest CT (slicerio)", **{k: chest[k] for k in ("probability", "warnings")},
                   "familiarity": chest["familiarity"]})
    heads = [r["familiarity"] for v in sets.values() for r in v["cases"]]
    familiarity = {"probes": probes,
                   "auc_probes_vs_head_ct": roc_auc([0] * len(heads) + [1] * len(probes),
                                                    heads + [p["familiarity"] for p in probes]),
                   "probes_warned": _ratio(sum(any("unlike the model's training data" in w for w in p["warnings"])
                                               or any("does not look like a head CT" in w for w in p["warnings"])
                                               for p in probes), len(probes)),
                   "threshold": card.familiarity.get("threshold")}
    log(f"familiarity: AUC {familiarity['auc_probes_vs_head_ct']}, probes warned {familiarity['probes_warned']}")
    command = "python benchmarks/evaluate_model.py " + " ".join(sys.argv[1:])
    results = Path(__file__).parent / "results"
    output = args.output or results / f"evaluation-{card.name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    png = output.with_name(f"reliability-{card.name}.png")
    reliability_png({k: v for k, v in sets.items() if k != "real_normal"}, png, f"{card.name} {card.version}")
    result = {"model": {"name": card.name, "version": card.version}, "command": command,
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - start, 1),
              "threshold": threshold,
              "sets": {k: {"metrics": v["metrics"]} for k, v in sets.items()}, "chest_ct": chest,
              "familiarity": familiarity,
              "reliability_diagram": png.name, "cases": {k: v["cases"] for k, v in sets.items()}}
    output.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: {m: v["metrics"][m] for m in v["metrics"] if m not in ("reliability", "finding_subtype_confusion")}
               for k, v in sets.items()}
    print(json.dumps({**summary, "chest_ct": chest, "familiarity": familiarity}, indent=2))
    if args.update_card:
        card = ModelCard.load(folder)
        card.metrics["test"] = {**{k: v for k, v in result.items() if k not in ("cases", "model")},
                                "output": output.name}
        card.save(folder)


if __name__ == "__main__":
    main()
