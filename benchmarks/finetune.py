"""Fine-tuning check: does ``smartnet train --base-model`` adapt a model to a new domain within a CPU budget?

New synthetic cases come from a shifted domain: ``SMARTNetLib.synthetic.make_case`` with ``host="real"``
(bleeds inserted into the real normal head CT of Debian's ``invesalius-examples``: real anatomy, skull
base and scanner texture) only, whereas the bundled ``smartnet-default`` (recipe ``default``: seed 2024,
``host="mixed"``) saw about 70% procedural heads. ``--size full`` adds a scanner shift (clinical grids,
0.4-1 mm pixels and thin slices, instead of the recipe's ``small``), at a higher cost in time. Seeds are
700000 + i for training and 701000 + j for the held-out cases, distinct from the recipe's
(2024 * 1000003 + i) and from the evaluation benchmark's (900000 + i). Held-out cases are all positive (one
subtype each, in turn), so that every one of them counts in the Dice. Without ``invesalius-examples``
``make_case`` falls back to procedural heads: the result records it (``hosts``).

    python benchmarks/finetune.py [--base-model smartnet-default] [--n-train 10] [--n-test 4]

Measures the held-out Dice (any hemorrhage, and per subtype) with ``SMARTNetLib.analysis.inference.Analyzer``
before (base model) and after fine-tuning, writes ``benchmarks/results/finetune.json`` (before, after,
seconds, command) and exits with status 1 when the Dice did not improve (2 on a usage error).
Default settings are sized for a 10-minute budget on 2 CPU cores (``--threads 2``, ``--budget-s 600``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from SMARTNetLib.analysis.inference import Analyzer
from SMARTNetLib.analysis.metrics import dice
from SMARTNetLib.contracts.classes import SUBTYPE_NAMES, SUBTYPES
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.store import load_model, resolve_model

TRAIN_SEED = 700000
TEST_SEED = 701000
RESULTS = Path(__file__).resolve().parent / "results" / "finetune.json"


def make_cases(folder: Path, seeds: list[int], host: str, size: str, positive: bool,
               subtype: str | None = None) -> list[dict]:
    """Write ``make_case`` CTs and labels into ``folder``; ``positive``: one subtype each, in turn (``subtype``
    when given)."""
    from SMARTNetLib.synthetic import make_case

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for n, seed in enumerate(seeds):
        subtypes = [subtype or SUBTYPE_NAMES[n % len(SUBTYPE_NAMES)]] if positive or subtype else None
        ct, label, info = make_case(seed, size=size, host=host, subtypes=subtypes)
        for image, kind in ((ct, "ct"), (label, "label")):
            sitk.WriteImage(image, str(folder / f"case_{seed}_{kind}.nii.gz"), useCompression=True)
        entries.append({"image": f"case_{seed}_ct.nii.gz", "label": f"case_{seed}_label.nii.gz", "seed": seed,
                        "host": info["host"], "subtypes": info["subtypes"]})
    return entries


def held_out_dice(model_dir: Path, folder: Path, cases: list[dict]) -> dict:
    """Mean Dice over the held-out cases: any hemorrhage, and with the right subtype."""
    model, card = load_model(model_dir)
    analyzer = Analyzer(model, card, torch.device("cpu"))
    rows = []
    for case in cases:
        ct = sitk.ReadImage(str(folder / case["image"]))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / case["label"])))
        analysis = analyzer.analyze(ct, explain="none")
        pred = sitk.GetArrayFromImage(analysis.labels)
        row = {"seed": case["seed"], "subtypes": case["subtypes"], "probability": round(analysis.ich_probability, 4),
               "dice_any": round(dice(truth > 0, pred > 0), 4)}
        if len(card.classes) > 1:  # a subtype model: Dice of each true subtype with the same predicted subtype
            present = [c for c in SUBTYPES if (truth == c.label_value).any()]
            row["dice_subtype"] = round(float(np.mean([dice(truth == c.label_value, pred == c.label_value)
                                                       for c in present])), 4)
        rows.append(row)
    summary = {"dice_any": round(float(np.mean([r["dice_any"] for r in rows])), 4), "cases": rows}
    if all("dice_subtype" in r for r in rows):
        summary["dice_subtype"] = round(float(np.mean([r["dice_subtype"] for r in rows])), 4)
    return summary


def write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", default="smartnet-default", help="model name or folder to fine-tune")
    parser.add_argument("--n-train", type=int, default=10, help="new training cases (the trainer holds out 20%%)")
    parser.add_argument("--n-test", type=int, default=4, help="held-out cases (all positive)")
    parser.add_argument("--host", choices=("real", "procedural", "mixed"), default="real",
                        help="domain of the new cases (default: real anatomy, a shift from the bundled model's)")
    parser.add_argument("--size", choices=("small", "full"), default="small", help="scanner grids of the new cases")
    parser.add_argument("--subtype", choices=SUBTYPE_NAMES,
                        help="every new case (training and held out) has a bleed of this subtype, and success is "
                             "judged on the subtype Dice: the annotator's loop of correcting the subtype of a "
                             "site's bleeds (default: random subtypes, judged on the any-hemorrhage Dice)")
    parser.add_argument("--epochs", type=int, default=6, help="upstream fine-tuning epochs")
    parser.add_argument("--downstream-epochs", type=int, default=2, help="downstream fine-tuning epochs")
    parser.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate")
    parser.add_argument("--val-split", type=float, default=0.2,
                        help="share of the new training cases the trainer holds out to pick its best epoch (0: "
                             "train on all of them and keep the epoch of lowest training loss)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (OMP_NUM_THREADS of the trainer)")
    parser.add_argument("--budget-s", type=float, default=600.0, help="time limit of the fine-tuning run")
    parser.add_argument("--workdir", type=Path, help="folder for the cases and the fine-tuned model (default: temp)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="result JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    try:
        base = resolve_model(args.base_model)
        base_card = ModelCard.load(base)
    except SmartNetError as err:
        print(f"error: {err} (train the bundled model first: smartnet train --recipe default ...)", file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="smartnet-finetune-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "cases"
    train_seeds = [TRAIN_SEED + i for i in range(args.n_train)]
    test_seeds = [TEST_SEED + j for j in range(args.n_test)]
    print(f"making {args.n_train} + {args.n_test} {args.host} cases in {data}", flush=True)
    training = make_cases(data, train_seeds, args.host, args.size, positive=False, subtype=args.subtype)
    held_out = make_cases(data, test_seeds, args.host, args.size, positive=True, subtype=args.subtype)
    datalist = data / "datalist.json"
    datalist.write_text(json.dumps({"training": training, "synthetic": True}, indent=1))
    seconds["data"] = round(time.perf_counter() - clock, 1)

    mark = time.perf_counter()
    before = held_out_dice(base, data, held_out)
    seconds["before"] = round(time.perf_counter() - mark, 1)
    print(f"before: dice_any {before['dice_any']} dice_subtype {before.get('dice_subtype')}", flush=True)

    tuned = work / "finetuned"
    command = ["train", "--datalist", str(datalist), "--base-model", str(base), "--output", str(tuned),
               "--epochs", str(args.epochs), "--downstream-epochs", str(args.downstream_epochs), "--lr", str(args.lr),
               "--val-split", str(args.val_split), "--seed", "0", "--events"]
    mark = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    try:
        proc = subprocess.run([sys.executable, "-m", "SMARTNetLib.cli", *command], capture_output=True, text=True,
                              env=env, timeout=args.budget_s)
    except subprocess.TimeoutExpired:
        print(f"fine-tuning exceeded its budget of {args.budget_s:.0f} s", file=sys.stderr)
        return 1
    seconds["finetune"] = round(time.perf_counter() - mark, 1)
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
        return 1
    history = [json.loads(line) for line in proc.stdout.splitlines() if '"event": "metrics"' in line]

    mark = time.perf_counter()
    after = held_out_dice(tuned, data, held_out)
    seconds["after"] = round(time.perf_counter() - mark, 1)
    seconds["total"] = round(time.perf_counter() - clock, 1)
    judged = "dice_subtype" if args.subtype else "dice_any"
    improved = after[judged] > before[judged]
    result = {
        "base_model": {"name": base_card.name, "version": base_card.version, "path": str(base)},
        "data": {"host": args.host, "size": args.size, "hosts": sorted({c["host"] for c in training + held_out}),
                 "train_seeds": train_seeds, "test_seeds": test_seeds,
                 "test_subtypes": [c["subtypes"] for c in held_out]},
        "subtype": args.subtype, "judged_on": judged, "before": before, "after": after, "improved": improved,
        "dice_any_gain": round(after["dice_any"] - before["dice_any"], 4),
        "dice_subtype_gain": round(after["dice_subtype"] - before["dice_subtype"], 4)
        if "dice_subtype" in after and "dice_subtype" in before else None,
        "seconds": seconds, "threads": args.threads, "budget_s": args.budget_s,
        "command": shlex.join(["smartnet", *command]),
        "benchmark_command": shlex.join(["python", "benchmarks/finetune.py", *(argv if argv is not None
                                                                                 else sys.argv[1:])]),
        "training_history": [{k: m.get(k) for k in ("stage", "epoch", "train_loss", "val_dice", "seconds")}
                             for m in history],
    }
    write_json(result, args.output)
    print(f"after: dice_any {after['dice_any']} dice_subtype {after.get('dice_subtype')}; fine-tuning "
          f"{seconds['finetune']:.0f} s, total {seconds['total']:.0f} s; wrote {args.output}")
    return 0 if improved else 1


if __name__ == "__main__":
    sys.exit(main())
