"""Registering a trained model as a user model: ``user_models_dir()/<name>`` with a completed card.

``smartnet train`` writes its model folder inside the training work folder (with ``checkpoints/``). When
the user is happy with it, :func:`register_model` copies ``model.json`` + ``model.pt`` (not the
checkpoints) to ``~/.smartnet/models/<name>``, where ``smartnet models`` and the SMARTNet module find it.
The card records the base model, the training cases and the validation metrics of the base model and
of the new model, measured on the same validation cases (:func:`evaluate_on_validation`).

Example::

    problem = name_problem("my-ich-model")           # None when the name can be used
    base = evaluate_on_validation("smartnet-default", "work/datalist.json", val_split=0.2)
    new = evaluate_on_validation("work/model", "work/datalist.json", val_split=0.2)
    folder = register_model("work/model", "my-ich-model", base_metrics=base, new_metrics=new,
                            cases=["head1", "head2"])
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.locations import name_problem, user_models_dir
from SMARTNetLib.contracts.model_card import CARD_FILE, WEIGHTS_FILE, ModelCard
from SMARTNetLib.model.store import staged_folder

COMPARED = ("val_auc", "val_dice", "val_dice_classes", "val_cases", "val_positive", "val_scored_by")


def evaluate_on_validation(model: str | Path, datalist: str | Path, val_split: float = 0.2, seed: int = 0,
                           device: str = "cpu", progress: Callable[[float, str], None] | None = None) -> dict:
    """Validation metrics of ``model`` (name or folder) on the validation cases the trainer uses.

    The split is the trainer's: the datalist's ``validation`` cases, else ``val_split`` of the training
    cases drawn with ``seed`` (:func:`~SMARTNetLib.training.datalist.load_datalist`). Volumes are scored
    with the volume classifier, as ``smartnet analyze`` does. Labels are converted to the model's classes.
    """
    from SMARTNetLib.analysis.inference import resolve_device
    from SMARTNetLib.model.store import load_model, resolve_model
    from SMARTNetLib.training.datalist import load_datalist
    from SMARTNetLib.training.dataset import ValidationVolume, read_case
    from SMARTNetLib.training.metrics import evaluate

    data = load_datalist(datalist, val_split, seed)
    if not data.validation:
        raise SmartNetError("no validation cases: add cases or raise the validation split", datalist)
    torch_device = resolve_device(device)
    net, card = load_model(resolve_model(str(model)), torch_device)
    mode = "binary" if card.classes == ("hemorrhage",) else "subtypes"
    volumes = []
    for case in data.validation:
        image, info = read_case(case)
        volume = ValidationVolume(case.image.name, image, info.array)
        volume.set_mode(mode)
        volumes.append(volume)
    metrics = evaluate(net, card, volumes, torch_device, volume_scores=True, progress=progress)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if k in COMPARED}


def register_model(trained_dir: str | Path, name: str, base_model: str | None = None,
                   base_metrics: dict | None = None, new_metrics: dict | None = None,
                   cases: Sequence[str] = (), models_dir: Path | None = None, overwrite: bool = False) -> Path:
    """Copy a trained model folder to ``models_dir/<name>`` with its card completed; returns the new folder.

    The card gets ``name``; ``provenance["base_model"]`` (kept from training when ``base_model`` is None),
    ``provenance["training_cases"]``, ``provenance["registered"]``; and ``metrics["comparison"]`` =
    ``{"split": "validation", "base_model": {...} | None, "new_model": {...}}``. The training's own
    metrics (best epoch, history) stay in ``metrics``. Written atomically (temporary folder, then renamed).
    """
    trained_dir = Path(trained_dir)
    models_dir = models_dir or user_models_dir()
    problem = name_problem(name, models_dir, overwrite)
    if problem:
        raise SmartNetError(problem, models_dir / name)
    for file in (CARD_FILE, WEIGHTS_FILE):
        if not (trained_dir / file).is_file():
            raise SmartNetError(f"not a finished model: no {file} (did training complete an epoch?)", trained_dir)
    card = ModelCard.load(trained_dir)
    provenance: dict[str, Any] = dict(card.provenance)
    if base_model is not None:
        provenance["base_model"] = {"name": Path(base_model).name, "path": str(base_model)} if base_model else None
    provenance["training_cases"] = list(cases)
    provenance["registered"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    provenance["trained_in"] = str(trained_dir.resolve())
    metrics = dict(card.metrics)
    metrics["comparison"] = {"split": "validation", "base_model": base_metrics, "new_model": new_metrics}
    card = dataclasses.replace(card, name=name, provenance=provenance, metrics=metrics)

    target = models_dir / name
    with staged_folder(target) as tmp:
        shutil.copy2(trained_dir / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        if card.findings:  # the finding classifier's weights (finding_classifier.py)
            shutil.copy2(trained_dir / card.findings["file"], tmp / card.findings["file"])
        card.save(tmp)
    return target
