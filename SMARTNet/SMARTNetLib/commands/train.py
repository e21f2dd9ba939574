"""``smartnet train``: train a SMART-Net model (upstream 2D multi-task, then downstream 3D operators)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from SMARTNetLib.contracts.defaults import TRAINING
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink
from SMARTNetLib.contracts.model_card import OPERATOR_INPUTS, VOLUME_SEGMENTATIONS

HELP = "train a SMART-Net model from a MONAI datalist (also under torchrun for several GPUs or processes)"

# Built-in defaults of the options a recipe may set (argparse defaults are None so that a recipe can fill them).
DEFAULTS = {**{k: v for k, v in asdict(TRAINING).items() if k != "device"}, "image_size": None, "classes": None,
            "name": None, "steps_per_epoch": None, "unfreeze_after": None, "operator_inputs": None,
            "volume_segmentation": None}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datalist", type=Path,
                        help='MONAI datalist JSON: {"training": [{"image": ..., "label": ...}], "validation": [...]}')
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="model folder to write (best weights + model.json; checkpoints/ for --resume)")
    parser.add_argument("--base-model", default=None, help="start from this model (name or folder)")
    parser.add_argument("--stage", choices=("upstream", "downstream", "all"), help="training stages (default: all)")
    parser.add_argument("--epochs", type=int, help=f"upstream (2D) epochs (default: {TRAINING.epochs})")
    parser.add_argument("--downstream-epochs", type=int,
                        help=f"downstream (3D operator) epochs (default: {TRAINING.downstream_epochs})")
    parser.add_argument("--lr", type=float, help=f"learning rate (default: {TRAINING.lr:g})")
    parser.add_argument("--batch-size", type=int, help=f"slices per step and process (default: {TRAINING.batch_size})")
    parser.add_argument("--val-split", type=float,
                        help='fraction of training cases held out when the datalist has no "validation" '
                             f"(default {TRAINING.val_split:g})")
    parser.add_argument("--architecture", choices=("default", "paper", "tiny"), help="network size (default: default)")
    parser.add_argument("--image-size", type=int, help="network input size in px (default: the architecture's)")
    parser.add_argument("--operator-inputs", choices=OPERATOR_INPUTS,
                        help="what the volume classifier reads per slice (default: the architecture's or base "
                             "model's; changing it retrains the volume classifier from scratch)")
    parser.add_argument("--volume-segmentation", choices=VOLUME_SEGMENTATIONS,
                        help="the volume segmenter's classes: multilabel (a sigmoid each) or exclusive (a softmax "
                             "with the background; one subtype per voxel) (default: the architecture's or base "
                             "model's)")
    parser.add_argument("--classes", choices=("subtypes", "binary"),
                        help="five subtypes or one 'hemorrhage' class (default: from the datalist and labels)")
    parser.add_argument("--device", default=TRAINING.device, help="auto (GPU if available), cpu or cuda")
    parser.add_argument("--seed", type=int, help=f"random seed (default: {TRAINING.seed})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    parser.add_argument("--recipe", default=None, help="a committed recipe (e.g. 'default': the bundled model's)")
    parser.add_argument("--name", help="model name in the card (default: the output folder's name)")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="upstream steps (batches) and downstream volumes per epoch and process")
    parser.add_argument("--unfreeze-after", type=int,
                        help="downstream epochs before the decoder and last encoder stage are unfrozen (default: half)")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 writes on stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    options = resolve_options(args)
    if options["datalist"] is None:
        raise SmartNetError("--datalist is required (or --recipe to generate the recipe's synthetic data)")
    for key in ("epochs", "downstream_epochs", "batch_size", "steps_per_epoch"):
        if options[key] is not None and options[key] < (1 if key in ("batch_size", "steps_per_epoch") else 0):
            raise SmartNetError(f"--{key.replace('_', '-')} must be positive")
    if not 0 <= options["val_split"] < 1:
        raise SmartNetError("--val-split must be in [0, 1)")

    from SMARTNetLib.training.loop import TrainConfig, train

    cfg = TrainConfig(output=args.output, base_model=args.base_model, device=args.device, resume=args.resume,
                      recipe=args.recipe, **options)
    return train(cfg, sink)


def resolve_options(args: argparse.Namespace) -> dict:
    """Command-line options, else the recipe's, else the built-in defaults; generates the recipe's data if needed."""
    recipe: dict = {}
    if args.recipe:
        from SMARTNetLib.training.recipes import RECIPES

        if args.recipe not in RECIPES:
            raise SmartNetError(f"unknown recipe {args.recipe!r} (known: {', '.join(RECIPES)})")
        recipe = RECIPES[args.recipe]
    options = {k: (getattr(args, k) if getattr(args, k) is not None else recipe.get(k, default))
               for k, default in DEFAULTS.items()}
    datalist = args.datalist
    if datalist is None and recipe.get("data"):
        datalist = synthesize(recipe["data"], args.output / ".recipe-data", args.device)
    options["datalist"] = datalist
    return options


def synthesize(spec: dict, folder: Path, device: str = "auto") -> Path:
    """Generate a recipe's synthetic data with ``smartnet synth`` (once; rank 0 under torchrun, others wait)."""
    datalist = folder / "datalist.json"
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if rank == 0 and not datalist.is_file():
        command = [sys.executable, "-m", "SMARTNetLib.cli", "synth", "--n", str(spec["n"]), "--seed",
                   str(spec["seed"]), "--size", spec["size"], "--host", spec.get("host", "procedural"),
                   "--style", spec.get("style", "plain"), "--workers", str(spec.get("workers", 1)),
                   "--validation-fraction", str(spec.get("validation_fraction", 0.2)), "--output-dir", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise SmartNetError(f"generating the recipe's synthetic data failed: {reason}", folder)
    if world > 1:
        import torch.distributed as dist

        from SMARTNetLib.training import distributed

        distributed.setup(device)
        dist.barrier()
    return datalist


def summarize(result: dict) -> str:
    metrics = result.get("metrics") or {}
    parts = [f"{k} {metrics[k]:.3f}" for k in ("val_auc", "val_dice") if isinstance(metrics.get(k), float)]
    best = f" (best: {metrics.get('stage')} epoch {metrics.get('epoch')}{', ' + ', '.join(parts) if parts else ''})"
    return (f"model {result['name']} ({', '.join(result['classes'])}) written to {result['model_dir']}"
            f"{best if metrics else ''} in {result['seconds']:.0f} s on {result['device']}")
