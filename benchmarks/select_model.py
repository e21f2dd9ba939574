"""Choose between models on a selection set: fresh volumes of the training generators, never the held-out ones.

A new model is compared with the one it would replace on ``make_case(seed, size="full", host="diverse",
style="randomised")`` volumes (seeds 730000 + i, which no training, calibration, finding-classifier or test set
uses): the procedural, real-head and label-map-first sources, each reported alone too (a model trained on one
source but not another is favoured on that source, so the per-source rows show what the new data cost the old
sources). The held-out generator and the real-host set of ``evaluate_model.py`` are not looked at here: they
measure the model that was chosen.

    python benchmarks/select_model.py --models smartnet-default build/candidate [--n 30] [--cache DIR]

Writes ``benchmarks/results/selection.json`` (``--output``): per model and source, the figures of
``evaluate_model.set_metrics`` (AUC, sensitivity, specificity, false-positive volume, Dice, finding-level subtype
accuracy, volume error, pointing game, calibration error), and each volume's row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_model import cached, evaluate_case, set_metrics  # noqa: E402

from SMARTNetLib.analysis.inference import Analyzer, resolve_device  # noqa: E402
from SMARTNetLib.contracts.files import write_json_atomic  # noqa: E402
from SMARTNetLib.model.store import load_model, resolve_model  # noqa: E402
from SMARTNetLib.synthetic import make_case  # noqa: E402

SHOWN = ("auc_any", "specificity", "sensitivity", "false_positive_ml_median_negatives", "dice_positive_mean",
         "finding_subtype_accuracy", "volume_abs_error_ml_median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="model names or folders")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=730000)
    parser.add_argument("--cache", type=Path, help="folder keeping the generated volumes between runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "selection.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = resolve_device(args.device)
    start = time.time()
    cases = [cached(args.cache, f"select-{args.seed + i}",
                    lambda s=args.seed + i: make_case(s, size="full", host="diverse", style="randomised"))
             for i in range(args.n)]
    print(f"[{time.time() - start:6.1f}s] {args.n} selection volumes", flush=True)
    models = {}
    for name in args.models:
        model, card = load_model(resolve_model(name), device)
        analyzer = Analyzer(model, card, device)
        rows = [evaluate_case(analyzer, f"seed {args.seed + i} {info['host']}", ct, label, info, False)
                for i, (ct, label, info) in enumerate(cases)]
        threshold = float(card.thresholds.get("classification", 0.5))
        sources = {"all": rows, **{h: [r for r in rows if r["host"] == h] for h in sorted({r["host"] for r in rows})}}
        models[name] = {"version": card.version,
                        "sources": {h: set_metrics(r, threshold) for h, r in sources.items()},
                        "cases": rows}  # per volume, as evaluate_model.py keeps them: for analyses after the fact
        for source, figures in models[name]["sources"].items():
            print(f"[{time.time() - start:6.1f}s] {name} {card.version} {source} ({figures['cases']}): "
                  + ", ".join(f"{k} {figures.get(k)}" for k in SHOWN), flush=True)
    result = {"benchmark": "select-model", "generator": "SMARTNetLib.synthetic.make_case(size='full', "
              "host='diverse', style='randomised')", "seeds": [args.seed, args.seed + args.n - 1], "models": models,
              "command": "python benchmarks/select_model.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - start, 1)}
    write_json_atomic(args.output, result)


if __name__ == "__main__":
    main()
