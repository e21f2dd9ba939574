"""``smartnet register``: make a trained model folder a user model, with base/new validation metrics in its card."""

from __future__ import annotations

import argparse
from pathlib import Path

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink, StageProgress
from SMARTNetLib.contracts.locations import name_problem
from SMARTNetLib.model.registry import evaluate_on_validation, register_model

HELP = "register a model folder written by 'smartnet train' as a user model (compares it with its base model)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="the --output folder of 'smartnet train'")
    parser.add_argument("--name", required=True, help="name of the user model (its folder under the models folder)")
    parser.add_argument("--datalist", type=Path, help="the training datalist: measure both models on its validation "
                                                      "cases")
    parser.add_argument("--val-split", type=float, default=0.2, help="as given to 'smartnet train' (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="as given to 'smartnet train' (default 0)")
    parser.add_argument("--base-model", default=None, help="the base model (name or folder) to compare with")
    parser.add_argument("--case", action="append", default=[], dest="cases",
                        help="name of a training case, for the card (repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (for the evaluation)")
    parser.add_argument("--overwrite", action="store_true", help="replace a user model of the same name")
    parser.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the user models dir)")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    problem = name_problem(args.name, args.models_dir, args.overwrite)
    if problem:
        raise SmartNetError(problem)
    base_metrics = new_metrics = None
    if args.datalist is not None:
        if args.base_model:
            sink.progress("evaluate", 0.0, "base model on the validation cases")
            base_metrics = evaluate_on_validation(args.base_model, args.datalist, args.val_split, args.seed,
                                                  args.device, StageProgress(sink, "evaluate", 0.0, 0.45))
        sink.progress("evaluate", 0.45, "new model on the validation cases")
        new_metrics = evaluate_on_validation(args.model_dir, args.datalist, args.val_split, args.seed, args.device,
                                             StageProgress(sink, "evaluate", 0.45, 0.9))
    sink.progress("write", 0.95, "registering the model")
    folder = register_model(args.model_dir, args.name, base_metrics=base_metrics, new_metrics=new_metrics,
                            cases=args.cases, models_dir=args.models_dir, overwrite=args.overwrite)
    return {"name": args.name, "model_dir": str(folder), "base_metrics": base_metrics, "new_metrics": new_metrics}


def summarize(result: dict) -> str:
    return f"model {result['name']} registered in {result['model_dir']}"
