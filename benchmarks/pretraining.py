"""Label efficiency of self-supervised pretraining: does a pretrained encoder need fewer labelled cases?

1. An unlabelled pool: ``make_case`` heads of the training generator in the randomised style (procedural heads
   and the real InVesalius head scaled and elastically warped, scanner changes), seeds 710000 + i; their label
   maps are thrown away.
2. Pretraining on the pool: Models Genesis (``smartnet pretrain --method genesis``) and TransVW
   (``--method transvw``), the same steps each.
3. Fine-tuning (``smartnet train``, upstream then downstream) with 5, 10 and 20 labelled cases (training
   generator, seeds 720000 + i, the first n of one list) from: scratch (random weights), each pretrained
   encoder, and the bundled model, with the same number of upstream steps for every size (``--upstream-steps``);
   ``--seeds`` repeats each with other training seeds; the bundled model as shipped is the reference (0 cases).
4. Measured on cases of the independent held-out generator (``synthetic/heldout.py``, seeds 5100000 + i, never
   used elsewhere): Dice over positives (any hemorrhage) and volume-level AUC, mean and spread over seeds.

    python benchmarks/pretraining.py [--pool 24] [--pretrain-steps 150] [--sizes 5 10 20] [--seeds 0 1]
                                     [--n-test 16] [--output benchmarks/results/pretraining.json]

Writes the JSON (every run, the summary table, the commands) atomically; ``--workdir`` keeps the cases and
models, and runs already done there are reused (the benchmark resumes after an interruption).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from SMARTNetLib.contracts.files import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "pretraining.json"
POOL_SEED, LABELLED_SEED, TEST_SEED = 710000, 720000, 5_100_000
INITS = ("scratch", "genesis", "transvw", "bundled")


def cases(folder: Path, seeds: list[int], make, labelled: bool) -> list[dict]:
    """Cases written once into ``folder`` (reused when present); ``make(seed) -> (ct, label, info)``."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed in seeds:
        ct_path, label_path = folder / f"case_{seed}_ct.nii.gz", folder / f"case_{seed}_label.nii.gz"
        if not ct_path.exists() or (labelled and not label_path.exists()):
            ct, label, _ = make(seed)
            if labelled:
                sitk.WriteImage(label, str(label_path), useCompression=True)
            sitk.WriteImage(ct, str(ct_path), useCompression=True)
        entries.append({"image": ct_path.name, **({"label": label_path.name} if labelled else {}), "seed": seed})
    return entries


def smartnet(args: list[str], threads: int, log: Path) -> dict:
    """Run the real CLI; the final result event, or SystemExit with the end of its output."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "SMARTNetLib.cli", *args, "--events"], capture_output=True,
                          text=True, env=env)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"smartnet {shlex.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def evaluate(model_dir: Path, folder: Path, tests: list[dict]) -> dict:
    """Dice over the positive held-out cases (any hemorrhage) and the volume-level AUC."""
    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.analysis.metrics import dice, roc_auc
    from SMARTNetLib.model.store import load_model

    model, card = load_model(model_dir)
    analyzer = Analyzer(model, card, torch.device("cpu"))
    truths, scores, dices = [], [], []
    for case in tests:
        ct = sitk.ReadImage(str(folder / case["image"]))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / case["label"]))) > 0
        analysis = analyzer.analyze(ct, explain="none")
        truths.append(int(truth.any()))
        scores.append(float(analysis.ich_probability))
        if truth.any():
            dices.append(dice(sitk.GetArrayFromImage(analysis.labels) > 0, truth))
    auc = roc_auc(truths, scores)
    return {"dice_any": round(float(np.mean(dices)), 4) if dices else None,
            "auc": None if auc is None else round(float(auc), 4), "positives": int(sum(truths)),
            "negatives": int(len(truths) - sum(truths))}


def summary(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds, per (init, labelled cases)."""
    table = []
    for init in INITS:
        for n in sorted({r["labelled"] for r in runs}):
            mine = [r for r in runs if r["init"] == init and r["labelled"] == n]
            if not mine:
                continue
            row = {"init": init, "labelled": n, "runs": len(mine)}
            for key in ("dice_any", "auc"):
                values = [r["result"][key] for r in mine if r["result"][key] is not None]
                row[key] = round(float(np.mean(values)), 4) if values else None
                row[f"{key}_sd"] = round(float(np.std(values)), 4) if len(values) > 1 else None
            table.append(row)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=24, help="unlabelled heads to pretrain on")
    parser.add_argument("--pretrain-steps", type=int, default=150, help="pretraining steps per method (batch 8)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20], help="labelled cases to fine-tune on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="fine-tuning seeds")
    parser.add_argument("--n-test", type=int, default=16, help="held-out-generator cases")
    parser.add_argument("--upstream-steps", type=int, default=160,
                        help="upstream fine-tuning steps (batches of 8 slices), the same for every size: epochs = "
                             "steps / cases, one step per case and epoch")
    parser.add_argument("--downstream-epochs", type=int, default=2, help="downstream fine-tuning epochs")
    parser.add_argument("--inits", nargs="+", choices=INITS, default=list(INITS), help="starting points to compare")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each run")
    parser.add_argument("--workdir", type=Path, help="cases, models and logs (default: a temp folder)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="result JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from SMARTNetLib.synthetic import make_case
    from SMARTNetLib.synthetic.heldout import make_heldout_case

    clock = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="smartnet-pretraining-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    print(f"cases in {work}", flush=True)
    cases(work / "pool", [POOL_SEED + i for i in range(args.pool)],
          lambda s: make_case(s, host="mixed", style="randomised"), labelled=False)
    labelled = cases(work / "labelled", [LABELLED_SEED + i for i in range(max(args.sizes))],
                     lambda s: make_case(s, host="mixed", style="randomised"), labelled=True)
    tests = cases(work / "test", [TEST_SEED + i for i in range(args.n_test)], make_heldout_case, labelled=True)
    seconds["data"] = round(time.perf_counter() - clock, 1)

    starts = {"scratch": None, "bundled": "smartnet-default"}
    commands = {}
    for method in ("genesis", "transvw"):
        if method not in args.inits:
            continue
        out = work / f"pretrained-{method}"
        command = ["pretrain", "--method", method, "--data", str(work / "pool"), "--output", str(out),
                   "--epochs", "3", "--steps-per-epoch", str(max(1, args.pretrain_steps // 3)), "--seed", "0"]
        commands[method] = shlex.join(["smartnet", *command])
        card = out / "model.json"
        record = json.loads(card.read_text()).get("metrics", {}).get("pretraining", {}) if card.exists() else {}
        done = record.get("epoch") == 3
        if not done:
            mark = time.perf_counter()
            smartnet(command + (["--resume"] if (out / "checkpoints" / "last.pt").exists() else []), args.threads,
                     work / f"pretrain-{method}.log")
            seconds[f"pretrain_{method}"] = round(time.perf_counter() - mark, 1)
        starts[method] = str(out)

    runs_file = work / "runs.json"
    runs: list[dict] = json.loads(runs_file.read_text()) if runs_file.exists() else []
    if "bundled" in args.inits and not any(r["init"] == "bundled" and r["labelled"] == 0 for r in runs):
        from SMARTNetLib.model.store import resolve_model

        runs.append({"init": "bundled", "labelled": 0, "seed": None, "train_seconds": 0.0,  # the reference
                     "result": evaluate(resolve_model("smartnet-default"), work / "test", tests), "command": None})
        runs_file.write_text(json.dumps(runs, indent=1))
    for n in sorted(args.sizes):
        datalist = work / f"labelled-{n}.json"
        datalist.write_text(json.dumps({"training": [{**c, "image": f"labelled/{c['image']}",
                                                      "label": f"labelled/{c['label']}"} for c in labelled[:n]],
                                        "synthetic": True}))
        for init in args.inits:
            for seed in args.seeds:
                if any(r["init"] == init and r["labelled"] == n and r["seed"] == seed for r in runs):
                    continue
                out = work / f"tuned-{init}-{n}-{seed}"
                epochs = max(1, math.ceil(args.upstream_steps / n))
                command = ["train", "--datalist", str(datalist), "--output", str(out), "--epochs", str(epochs),
                           "--downstream-epochs", str(args.downstream_epochs), "--val-split", "0", "--seed",
                           str(seed)]
                if starts[init] is not None:
                    command += ["--base-model", starts[init], "--lr", "5e-4"]
                else:
                    command += ["--architecture", "default"]
                shutil.rmtree(out, ignore_errors=True)
                mark = time.perf_counter()
                smartnet(command, args.threads, work / f"train-{init}-{n}-{seed}.log")
                took = round(time.perf_counter() - mark, 1)
                result = evaluate(out, work / "test", tests)
                runs.append({"init": init, "labelled": n, "seed": seed, "train_seconds": took, "result": result,
                             "command": shlex.join(["smartnet", *command])})
                runs_file.write_text(json.dumps(runs, indent=1))
                print(f"{init:8s} n={n:2d} seed={seed}: dice {result['dice_any']} auc {result['auc']} ({took:.0f} s)",
                      flush=True)

    seconds["total"] = round(time.perf_counter() - clock, 1)
    result = {
        "benchmark": "pretraining label efficiency",
        "pool": {"heads": args.pool, "seeds": f"{POOL_SEED}+i", "style": "randomised", "host": "mixed",
                 "labels": "thrown away"},
        "labelled": {"seeds": f"{LABELLED_SEED}+i", "style": "randomised", "host": "mixed", "sizes": args.sizes},
        "test": {"generator": "heldout", "seeds": f"{TEST_SEED}+i", "cases": args.n_test,
                 "positives": sum(1 for t in tests if _positive(work / "test" / t["label"]))},
        "pretraining": {"steps": args.pretrain_steps, "commands": commands},
        "fine_tuning": {"upstream_steps": args.upstream_steps, "downstream_epochs": args.downstream_epochs,
                        "seeds": args.seeds},
        "summary": summary(runs), "runs": runs, "seconds": seconds, "threads": args.threads,
        "command": shlex.join(["python", "benchmarks/pretraining.py",
                               *(argv if argv is not None else sys.argv[1:])]),
    }
    write_json_atomic(args.output, result, indent=1)
    for row in result["summary"]:
        print(f"{row['init']:8s} n={row['labelled']:2d}: dice {row['dice_any']} (sd {row['dice_any_sd']}) "
              f"auc {row['auc']} (sd {row['auc_sd']})")
    print(f"wrote {args.output} in {seconds['total']:.0f} s")
    return 0


def _positive(label: Path) -> bool:
    return bool((sitk.GetArrayFromImage(sitk.ReadImage(str(label))) > 0).any())


if __name__ == "__main__":
    sys.exit(main())
