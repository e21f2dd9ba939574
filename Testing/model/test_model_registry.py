"""Registering a trained model as a user model, and the whole training loop as the Slicer module runs it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ENGINE_PARENT, head_phantom
from SMARTNetLib.cli import build_parser
from SMARTNetLib.client.engine_command import engine_environment, model_choices, models_command
from SMARTNetLib.client.process_runner import ProcessRunner
from SMARTNetLib.client.training_command import TrainingOptions, TrainingProgress, comparison_text, train_command
from SMARTNetLib.client.training_set import export_case, file_stems, write_datalist
from SMARTNetLib.commands import register as register_command
from SMARTNetLib.contracts.events import EventSink
from SMARTNetLib.contracts.locations import name_problem, user_models_dir
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.registry import register_model
from SMARTNetLib.model.store import list_models


class Recorder(EventSink):
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)


def test_name_problems(smartnet_home):
    assert name_problem("") and name_problem("../x") and name_problem("a b")
    assert name_problem("my-model_1.0") is None
    (user_models_dir() / "taken").mkdir(parents=True)
    assert "exists already" in name_problem("taken")
    assert name_problem("taken", overwrite=True) is None


def test_register_copies_weights_and_completes_the_card(tiny_model, smartnet_home, tmp_path):
    trained = tmp_path / "work" / "model"
    trained.mkdir(parents=True)
    for file in ("model.json", "model.pt"):
        (trained / file).write_bytes((tiny_model / file).read_bytes())
    (trained / "checkpoints").mkdir()
    (trained / "checkpoints" / "last.pt").write_bytes(b"not copied")
    base = {"val_auc": 0.5, "val_dice": 0.1, "val_cases": 2}
    new = {"val_auc": 0.75, "val_dice": 0.4, "val_cases": 2}
    folder = register_model(trained, "my-model", base_model="smartnet-default", base_metrics=base, new_metrics=new,
                            cases=["head1", "head2"])
    assert folder == user_models_dir() / "my-model"
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.pt"]
    card = ModelCard.load(folder)
    assert card.name == "my-model"
    assert card.provenance["base_model"]["name"] == "smartnet-default"
    assert card.provenance["training_cases"] == ["head1", "head2"]
    assert card.metrics["comparison"] == {"split": "validation", "base_model": base, "new_model": new}
    assert comparison_text(card.metrics) == "Validation (2 cases): AUC 0.50 → 0.75, Dice 0.10 → 0.40"
    assert [m.name for m in list_models() if not m.bundled] == ["my-model"]
    with pytest.raises(Exception, match="exists already"):
        register_model(trained, "my-model")
    register_model(trained, "my-model", overwrite=True)
    assert ModelCard.load(folder).metrics["comparison"]["new_model"] is None


def synthetic_cases(folder: Path) -> Path:
    """Two tiny head CTs (one with a subdural bleed, one without) exported as the module does."""
    pairs = []
    for stem, bleed in zip(file_stems(["Head 1", "Head 2"]), (True, False)):
        ct, label = head_phantom(size=(40, 40, 8), bleed=bleed)
        ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _ijk_to_lps(ct)
        pairs.append(export_case(folder / "cases", stem, sitk.GetArrayFromImage(ct), ijk_to_ras,
                                 {"subdural": sitk.GetArrayFromImage(label) == 5}))
    return write_datalist(folder, pairs, synthetic=True)


def _ijk_to_lps(image):
    from SMARTNetLib.io.volume import ijk_to_lps

    return ijk_to_lps(image)


def test_whole_loop_train_then_register(tiny_model, smartnet_home, tmp_path):
    """Export → ``smartnet train`` through ProcessRunner (1 epoch per stage) → register → ``smartnet models``."""
    parser, modules = build_parser()
    if "train" not in modules:
        pytest.skip("smartnet train is not available yet")
    datalist = synthetic_cases(tmp_path / "work")
    options = TrainingOptions(datalist=str(datalist), output=str(tmp_path / "work" / "model"),
                              base_model=str(tiny_model), name="fine-tuned", epochs=1, downstream_epochs=1,
                              batch_size=2, val_split=0.5, device="cpu")
    env = engine_environment({**os.environ, "OMP_NUM_THREADS": "1"}, ENGINE_PARENT)
    runner = ProcessRunner(train_command(sys.executable, options), env=env).start()
    progress = TrainingProgress(options)
    for event in runner.wait(timeout=120):
        progress.update(event)
    outcome = runner.outcome()
    assert outcome.succeeded, (outcome.message, outcome.stderr_tail)
    assert progress.device == "cpu"
    assert progress.curves.columns()["epoch"] == [1.0, 2.0]
    assert progress.fraction == 1.0
    assert (tmp_path / "work" / "model" / "checkpoints" / "last.pt").is_file()

    args = argparse.Namespace(model_dir=Path(options.output), name="fine-tuned", datalist=datalist,
                              val_split=options.val_split, seed=0, base_model=str(tiny_model),
                              cases=["Head_1", "Head_2"], device="cpu", overwrite=False, models_dir=None)
    sink = Recorder()
    result = register_command.run(args, sink)
    assert any(e["event"] == "progress" for e in sink.events)
    card = ModelCard.load(result["model_dir"])
    comparison = card.metrics["comparison"]
    for key in ("base_model", "new_model"):
        assert comparison[key]["val_cases"] == 1
        assert comparison[key]["val_scored_by"] == "volume classifier"
    assert card.provenance["base_model"]["path"] == str(tiny_model)

    listed = ProcessRunner(models_command(sys.executable), env=env).start()
    listed.wait(timeout=60)
    names = [c.name for c in model_choices(listed.outcome().result)]
    assert "fine-tuned" in names
    assert json.loads((Path(result["model_dir"]) / "model.json").read_text())["name"] == "fine-tuned"


def test_register_cli_when_available(tmp_path):
    parser, modules = build_parser()
    if "register" not in modules:
        pytest.skip("'register' is not in cli.COMMANDS yet")
    parsed = parser.parse_args(["register", str(tmp_path), "--name", "x", "--case", "a", "--case", "b", "--events"])
    assert parsed.cases == ["a", "b"] and parsed.events
