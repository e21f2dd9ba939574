"""Measure a model on a held-out synthetic test set and on real CTs without hemorrhage.

The test set is made with ``SMARTNetLib.synthetic.make_case`` from seeds that training never uses
(``--seed``, default 900000 + i), full-size scanner geometry, procedural and real-anatomy hosts, about
40% negatives. Reported (targets of the bundled model in brackets):
- volume-level any-ICH AUC [>= 0.97] and per-subtype AUC;
- Dice over positive volumes [>= 0.75] (any hemorrhage), and per subtype over volumes that have it;
- median absolute volume error over positive volumes [<= 2 mL];
- the pointing game: Grad-CAM peak inside the hemorrhage or within 10 mm of it [>= 90% of positives], and
  the same for HiResCAM (``--explain hirescam``);
- the real normal head CT of Debian's invesalius-examples [probability < 0.5, < 1 mL];
- slicerio's real chest CT [no hemorrhage, or a "not a head CT" warning].

    python benchmarks/evaluate_model.py --model smartnet-default --n 120 [--update-card]

Writes ``benchmarks/results/evaluation-<model>.json``; ``--update-card`` also stores the metrics, the
command and the date in the model's card.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from SMARTNetLib.classes import SUBTYPES
from SMARTNetLib.evaluation import dice, pointing_hit, roc_auc
from SMARTNetLib.inference import Analyzer, resolve_device
from SMARTNetLib.model_card import ModelCard
from SMARTNetLib.models import load_model, resolve_model


def evaluate_synthetic(analyzer: Analyzer, n: int, seed: int, log) -> dict:
    from SMARTNetLib.synthetic import make_case

    rows = []
    for i in range(n):
        host = "real" if i % 3 == 2 else "procedural"
        ct, label, info = make_case(seed + i, size="full", host=host)
        analysis = analyzer.analyze(ct, explain="gradcam")
        truth = sitk.GetArrayFromImage(label)
        pred = sitk.GetArrayFromImage(analysis.labels)
        ml = float(np.prod(ct.GetSpacing())) / 1000
        row = {"seed": seed + i, "host": info["host"], "size": list(ct.GetSize()),
               "spacing": [round(s, 3) for s in ct.GetSpacing()], "positive": bool(truth.any()),
               "probability": analysis.ich_probability,
               "true_ml": round(float((truth > 0).sum() * ml), 3), "pred_ml": round(analysis.total_volume_ml, 3),
               "subtypes": {}}
        for cls in SUBTYPES:
            t, p = truth == cls.label_value, pred == cls.label_value
            row["subtypes"][cls.name] = {"present": bool(t.any()), "probability": analysis.probabilities[cls.name],
                                         "dice": round(dice(t, p), 4) if t.any() else None}
        if row["positive"]:
            row["dice"] = round(dice(truth > 0, pred > 0), 4)
            heat = next(iter(analysis.activations.values()))
            row["pointing_hit"] = pointing_hit(heat, truth > 0)
            heat = next(iter(analyzer.analyze(ct, explain="hirescam").activations.values()))
            row["pointing_hit_hirescam"] = pointing_hit(heat, truth > 0)
        rows.append(row)
        log(f"case {i + 1}/{n} seed {seed + i} {info['host']}: positive={row['positive']} "
            f"p={row['probability']:.3f} dice={row.get('dice')} ml {row['true_ml']:.1f}->{row['pred_ml']:.1f}")
    pos = [r for r in rows if r["positive"]]
    metrics = {
        "cases": n, "positives": len(pos), "negatives": n - len(pos),
        "auc_any": roc_auc([int(r["positive"]) for r in rows], [r["probability"] for r in rows]),
        "auc_subtypes": {c.name: roc_auc([int(r["subtypes"][c.name]["present"]) for r in rows],
                                     [r["subtypes"][c.name]["probability"] for r in rows]) for c in SUBTYPES},
        "dice_positive_mean": round(float(np.mean([r["dice"] for r in pos])), 4) if pos else None,
        "dice_subtypes_mean": {c.name: _mean([r["subtypes"][c.name]["dice"] for r in rows
                                              if r["subtypes"][c.name]["present"]]) for c in SUBTYPES},
        "volume_abs_error_ml_median": round(float(np.median([abs(r["pred_ml"] - r["true_ml"]) for r in pos])), 3)
        if pos else None,
        "pointing_game": round(float(np.mean([r["pointing_hit"] for r in pos])), 4) if pos else None,
        "pointing_game_hirescam": round(float(np.mean([r["pointing_hit_hirescam"] for r in pos])), 4)
        if pos else None,
        "false_positive_ml_median_negatives": _median([r["pred_ml"] for r in rows if not r["positive"]]),
    }
    return {"metrics": metrics, "cases": rows}


def evaluate_real(analyzer: Analyzer, log) -> dict:
    """The real normal head (no bleed) and the real chest CT."""
    from SMARTNetLib.synthetic import load_real_head
    from SMARTNetLib.volume import read_ct

    out = {}
    head = load_real_head()
    if head is None:
        out["normal_head"] = {"skipped": "Debian package invesalius-examples is not installed"}
    else:
        a = analyzer.analyze(head, explain="none")
        out["normal_head"] = {"probability": round(a.ich_probability, 4), "volume_ml": round(a.total_volume_ml, 3),
                              "passes": a.ich_probability < 0.5 and a.total_volume_ml < 1.0}
    import slicerio

    chest_path = Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"
    a = analyzer.analyze(read_ct(chest_path), explain="none")
    out["chest_ct"] = {"probability": round(a.ich_probability, 4), "volume_ml": round(a.total_volume_ml, 3),
                       "warnings": a.warnings,
                       "passes": bool(a.warnings) or (a.ich_probability < 0.5 and a.total_volume_ml < 1.0)}
    log(f"real CTs: {out}")
    return out


def _mean(values: list) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _median(values: list) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smartnet-default")
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--seed", type=int, default=900000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--update-card", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    folder = resolve_model(args.model)
    device = resolve_device(args.device)
    model, card = load_model(folder, device)
    analyzer = Analyzer(model, card, device)
    start = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - start:7.1f}s] {message}", flush=True)

    synthetic = evaluate_synthetic(analyzer, args.n, args.seed, log)
    real = evaluate_real(analyzer, log)
    command = "python benchmarks/evaluate_model.py " + " ".join(sys.argv[1:])
    result = {"model": {"name": card.name, "version": card.version}, "command": command,
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - start, 1),
              "test_set": {"generator": "SMARTNetLib.synthetic.make_case", "seeds": [args.seed, args.seed + args.n - 1],
                           "size": "full", "hosts": "procedural, real (every third case)"},
              "synthetic": synthetic["metrics"], "real": real, "cases": synthetic["cases"]}
    output = args.output or Path(__file__).parent / "results" / f"evaluation-{card.name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    summary = {**synthetic["metrics"], "normal_head": real["normal_head"], "chest_ct": real["chest_ct"]}
    print(json.dumps(summary, indent=2))
    if args.update_card:
        card = ModelCard.load(folder)
        card.metrics["test"] = {**{k: v for k, v in result.items() if k not in ("cases", "model")},
                                "output": str(output.name)}
        card.save(folder)


if __name__ == "__main__":
    main()
