"""SMARTNetTraining's run of ``smartnet train``: command lines, curves and ETA, CPU estimate, OOM messages."""

from __future__ import annotations

import math

import pytest

from SMARTNetLib.cli import build_parser
from SMARTNetLib.client.training_command import (
    TrainingCurves,
    TrainingOptions,
    TrainingProgress,
    cpu_time_estimate_s,
    duration_text,
    failure_text,
    is_out_of_memory,
    no_gpu_message,
    out_of_memory_advice,
    train_command,
)


def options(**kw) -> TrainingOptions:
    base = {"datalist": "/w/datalist.json", "output": "/w/model"}
    return TrainingOptions(**{**base, **kw})


def test_command_is_parsed_by_the_real_cli():
    parser, modules = build_parser()
    if "train" not in modules:
        pytest.skip("smartnet train is not available yet")
    opts = options(base_model="/models/smartnet-default", name="my-model", epochs=3, downstream_epochs=2, lr=5e-4,
                   batch_size=4, val_split=0.25, device="cpu", resume=True)
    args = train_command("python", opts)
    assert args[:4] == ["python", "-m", "SMARTNetLib.cli", "train"] and args[-1] == "--events"
    parsed = parser.parse_args(args[3:])
    assert str(parsed.datalist) == "/w/datalist.json" and str(parsed.output) == "/w/model"
    assert (parsed.base_model, parsed.name, parsed.epochs, parsed.downstream_epochs) == (
        "/models/smartnet-default", "my-model", 3, 2)
    assert (parsed.lr, parsed.batch_size, parsed.val_split, parsed.device, parsed.stage) == (5e-4, 4, 0.25, "cpu",
                                                                                             "all")
    assert parsed.resume and parsed.events
    plain = parser.parse_args(train_command("python", options())[3:])
    assert not plain.resume and plain.base_model is None and plain.downstream_epochs is None


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"lr": 0.0}, {"batch_size": 0}, {"val_split": 1.0},
                                 {"device": "tpu"}, {"stage": "both"}])
def test_bad_options_are_refused(bad):
    with pytest.raises(ValueError):
        train_command("python", options(**bad))


def metrics(stage, epoch, epochs, loss, dice=None, auc=None):
    return {"event": "metrics", "stage": stage, "epoch": epoch, "epochs": epochs, "train_loss": loss,
            "val_dice": dice, "val_auc": auc, "seconds": 1.0}


def test_progress_curves_epochs_and_eta():
    now = [100.0]
    progress = TrainingProgress(options(epochs=2, downstream_epochs=1), clock=lambda: now[0])
    assert progress.total_epochs == 3 and progress.eta_s is None
    progress.update({"event": "progress", "stage": "load", "fraction": 0.02, "message": "read a.nrrd"})
    progress.update({"event": "log", "level": "info", "message": "training on cpu: 1 training and 1 validation"})
    assert progress.device == "cpu"
    now[0] = 110.0
    progress.update({"event": "progress", "stage": "upstream", "fraction": 0.1, "message": "epoch 1 step 1/2"})
    now[0] = 130.0
    progress.update({"event": "progress", "stage": "upstream", "fraction": 0.3, "message": "epoch 1 step 2/2"})
    assert progress.eta_s == pytest.approx(20.0 * 0.7 / 0.2)
    progress.update(metrics("upstream", 1, 2, 0.9, 0.2, None))
    progress.update(metrics("upstream", 2, 2, 0.7, 0.3, 0.5))
    progress.update(metrics("downstream", 1, 1, 0.5, 0.4, 0.75))
    curves = progress.curves.columns()
    assert curves["epoch"] == [1.0, 2.0, 3.0]
    assert curves["train_loss"] == [0.9, 0.7, 0.5]
    assert math.isnan(curves["val_auc"][0]) and curves["val_auc"][1:] == [0.5, 0.75]
    assert progress.epoch_text == "downstream epoch 1/1 (3/3 overall): loss 0.500, Dice 0.400, AUC 0.750"
    assert "about" in progress.status_text()
    progress.update({"event": "log", "level": "warning", "message": "AUC is undefined"})
    progress.update({"event": "error", "message": "boom"})
    assert progress.warnings == ["AUC is undefined"] and progress.error == "boom"


def test_resumed_epochs_replace_points():
    curves = TrainingCurves()
    for epoch in (1, 2, 3):
        curves.add(metrics("upstream", epoch, 5, 1.0 / epoch), 0)
    curves.add(metrics("upstream", 2, 5, 0.6), 0)  # a resumed run repeats from epoch 2
    assert curves.epoch == [1.0, 2.0] and curves.train_loss == [1.0, 0.6] and len(curves) == 2


def test_cpu_estimate_and_no_gpu_message():
    short = cpu_time_estimate_s(options(epochs=1, downstream_epochs=0), 4)
    long = cpu_time_estimate_s(options(epochs=10, downstream_epochs=4), 40)
    assert 0 < short < long
    message = no_gpu_message(options(epochs=10, downstream_epochs=4), 40)
    assert "No GPU" in message and "CPU" in message and "14 epochs" in message and duration_text(long) in message
    assert duration_text(30) == "30 s" and duration_text(600) == "10 min" and duration_text(3 * 3600) == "3 h 0 min"


def test_out_of_memory_detection_and_advice():
    cuda = "internal error: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert is_out_of_memory(cuda)
    assert is_out_of_memory("RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                            "allocate memory: you tried to allocate 123 bytes")
    assert is_out_of_memory("the engine stopped unexpectedly (exit status -9)", returncode=-9)
    assert not is_out_of_memory("", returncode=-9, cancelled=True)
    assert not is_out_of_memory("label geometry does not match its image", returncode=2)
    advice = out_of_memory_advice(options(batch_size=8, device="cuda"), cuda)
    assert "batch size (e.g. 8 → 4)" in advice and "CPU" in advice and "Resume" in advice
    assert "CPU" not in out_of_memory_advice(options(batch_size=8, device="cpu"), "MemoryError").split("Try")[1]
    assert failure_text(options(), "internal error", 1, ["torch.OutOfMemoryError: CUDA out of memory"]).startswith(
        "Training ran out of memory")
    assert failure_text(options(), "label geometry does not match", 2) == "label geometry does not match"
