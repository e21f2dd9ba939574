"""The ``smartnet train`` run as the SMARTNetTraining module sees it: command line, curves, ETA, messages.

Standard library only (imported by Slicer's GUI process before the engine's packages are installed).

Example::

    options = TrainingOptions(datalist="/work/datalist.json", output="/work/model", epochs=5, device="auto")
    args = train_command(python, options)            # [python, "-m", "SMARTNetLib.cli", "train", ..., "--events"]
    progress = TrainingProgress(options)
    for event in runner.poll():
        progress.update(event)
    progress.curves.columns()                        # epoch, train_loss, val_dice, val_auc lists for a chart
    progress.eta_s                                   # seconds left, or None
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from SMARTNetLib.client.engine_command import DEVICES, cli_command
from SMARTNetLib.contracts.defaults import TRAINING

STAGES = ("upstream", "downstream", "all")

# Rough CPU cost of one training step and one validated volume, measured on a laptop-class CPU core
# pair with the "default" architecture at 256 px; used only to tell users what to expect on CPU.
CPU_SECONDS_PER_SLICE = 0.25
CPU_SECONDS_PER_VOLUME_STEP = 6.0
CPU_SECONDS_PER_VALIDATION_VOLUME = 8.0
SLICES_PER_VOLUME = 8  # the trainer's default upstream epoch: this many slices per training volume


@dataclass
class TrainingOptions:
    """What the user chose; maps one to one onto ``smartnet train`` options."""

    datalist: str
    output: str
    base_model: str = ""
    name: str = ""
    epochs: int = TRAINING.epochs
    downstream_epochs: int | None = None  # None: the trainer's default
    lr: float = TRAINING.lr
    batch_size: int = TRAINING.batch_size
    val_split: float = TRAINING.val_split
    device: str = TRAINING.device
    stage: str = TRAINING.stage
    seed: int = TRAINING.seed
    resume: bool = False

    def check(self) -> list[str]:
        """Problems with the values (empty when the command can run)."""
        problems = []
        if self.device not in {d for d, _ in DEVICES}:
            problems.append(f"unknown device {self.device!r}")
        if self.stage not in STAGES:
            problems.append(f"unknown stage {self.stage!r}")
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.downstream_epochs is not None and self.downstream_epochs < 0:
            problems.append("downstream epochs must not be negative")
        if not self.lr > 0 or not math.isfinite(self.lr):
            problems.append("the learning rate must be positive")
        if self.batch_size < 1:
            problems.append("the batch size must be at least 1")
        if not 0 <= self.val_split < 1:
            problems.append("the validation split must be in [0, 1)")
        return problems

    def stage_epochs(self, default_downstream: int = 4) -> dict[str, int]:
        """Epochs per stage that will run, in order."""
        downstream = default_downstream if self.downstream_epochs is None else self.downstream_epochs
        epochs = {"upstream": self.epochs, "downstream": downstream}
        stages = ("upstream", "downstream") if self.stage == "all" else (self.stage,)
        return {s: epochs[s] for s in stages if epochs[s] > 0}


def train_command(python: str, options: TrainingOptions) -> list[str]:
    """The ``smartnet train`` command line for ``options`` (raises ValueError on bad values)."""
    problems = options.check()
    if problems:
        raise ValueError("; ".join(problems))
    args = ["--datalist", str(options.datalist), "--output", str(options.output), "--stage", options.stage,
            "--epochs", str(options.epochs), "--lr", repr(float(options.lr)), "--batch-size", str(options.batch_size),
            "--val-split", repr(float(options.val_split)), "--device", options.device, "--seed", str(options.seed)]
    if options.downstream_epochs is not None:
        args += ["--downstream-epochs", str(options.downstream_epochs)]
    if options.base_model:
        args += ["--base-model", str(options.base_model)]
    if options.name:
        args += ["--name", options.name]
    if options.resume:
        args.append("--resume")
    return cli_command(python, "train", *args)



PRETRAINING_METHODS = (("genesis", "Models Genesis (restore distorted slices)"),
                       ("transvw", "TransVW (visual words: classify and restore)"))


@dataclass
class PretrainingOptions:
    """Self-supervised pretraining on unlabelled CTs; maps one to one onto ``smartnet pretrain`` options."""

    data: str  # a folder of CT files and DICOM series
    output: str
    method: str = "genesis"
    name: str = ""
    epochs: int = 10
    steps_per_epoch: int | None = None
    lr: float = 1e-3
    batch_size: int = 8
    device: str = TRAINING.device
    seed: int = TRAINING.seed
    words: int = 32
    instances: int = 8
    architecture: str = "default"
    image_size: int | None = None
    resume: bool = False

    def check(self) -> list[str]:
        """Problems with the values (empty when the command can run)."""
        problems = []
        if self.method not in {m for m, _ in PRETRAINING_METHODS}:
            problems.append(f"unknown pretraining method {self.method!r}")
        if self.device not in {d for d, _ in DEVICES}:
            problems.append(f"unknown device {self.device!r}")
        for label, value in (("epochs", self.epochs), ("the batch size", self.batch_size),
                             ("visual words", self.words), ("instances per word", self.instances)):
            if value < 1:
                problems.append(f"{label} must be at least 1")
        if not self.lr > 0 or not math.isfinite(self.lr):
            problems.append("the learning rate must be positive")
        return problems


def pretrain_command(python: str, options: PretrainingOptions) -> list[str]:
    """The ``smartnet pretrain`` command line for ``options`` (raises ValueError on bad values)."""
    problems = options.check()
    if problems:
        raise ValueError("; ".join(problems))
    args = ["--data", str(options.data), "--output", str(options.output), "--method", options.method,
            "--epochs", str(options.epochs), "--lr", repr(float(options.lr)), "--batch-size", str(options.batch_size),
            "--device", options.device, "--seed", str(options.seed), "--architecture", options.architecture]
    if options.method == "transvw":
        args += ["--words", str(options.words), "--instances", str(options.instances)]
    if options.steps_per_epoch:
        args += ["--steps-per-epoch", str(options.steps_per_epoch)]
    if options.image_size:
        args += ["--image-size", str(options.image_size)]
    if options.name:
        args += ["--name", options.name]
    if options.resume:
        args.append("--resume")
    return cli_command(python, "pretrain", *args)


def pretraining_epoch_text(event: Mapping[str, Any]) -> str:
    """One log line for a pretraining ``metrics`` event."""
    text = (f"Pretraining epoch {event.get('epoch')}/{event.get('epochs')}: restoration loss "
            f"{_number(event.get('restoration_loss')):.4f} (distorted input {_number(event.get('identity_loss')):.4f})")
    if "word_accuracy" in event:
        text += f", visual-word accuracy {_number(event.get('word_accuracy')):.2f}"
    return text


def register_command(python: str, options: TrainingOptions, case_names: Sequence[str] = (),
                     overwrite: bool = False) -> list[str]:
    """The ``smartnet register`` command line that follows a ``train`` run of ``options``: base and new
    model compared on the same validation cases, then the new model copied to the user models."""
    args = [str(options.output), "--name", options.name, "--datalist", str(options.datalist), "--val-split",
            repr(float(options.val_split)), "--seed", str(options.seed), "--device", options.device]
    if options.base_model:
        args += ["--base-model", str(options.base_model)]
    for name in case_names:
        args += ["--case", name]
    if overwrite:
        args.append("--overwrite")
    return cli_command(python, "register", *args)

# ---------------------------------------------------------------------------------------------- progress
@dataclass
class TrainingCurves:
    """Per-epoch values from ``metrics`` events; x is the epoch counted over all stages (1, 2, ...)."""

    epoch: list[float] = field(default_factory=list)
    stage: list[str] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_dice: list[float] = field(default_factory=list)  # NaN where not measured
    val_auc: list[float] = field(default_factory=list)

    def add(self, event: Mapping[str, Any], epochs_before_stage: int) -> None:
        """Add one ``metrics`` event; a repeated (stage, epoch) replaces the old point (a resumed run)."""
        x = float(epochs_before_stage + int(event.get("epoch", 0)))
        values = (str(event.get("stage", "")), _number(event.get("train_loss")), _number(event.get("val_dice")),
                  _number(event.get("val_auc")))
        if x in self.epoch:
            index = self.epoch.index(x)
            del self.epoch[index:]
            del self.stage[index:], self.train_loss[index:], self.val_dice[index:], self.val_auc[index:]
        self.epoch.append(x)
        for column, value in zip((self.stage, self.train_loss, self.val_dice, self.val_auc), values):
            column.append(value)

    def columns(self) -> dict[str, list[float]]:
        """Numeric columns for a table/plot (names are the plot series' column names)."""
        return {"epoch": list(self.epoch), "train_loss": list(self.train_loss), "val_dice": list(self.val_dice),
                "val_auc": list(self.val_auc)}

    def __len__(self) -> int:
        return len(self.epoch)


class TrainingProgress:
    """Follows a training run's events: overall fraction, epoch text, curves, ETA, device, last error.

    ``clock`` is injectable for tests. The ETA extrapolates the time per unit of progress measured since
    the first training progress event (data loading and start-up are not representative).
    """

    def __init__(self, options: TrainingOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.clock = clock
        self.stage_epochs = options.stage_epochs()
        self.curves = TrainingCurves()
        self.fraction = 0.0
        self.message = ""
        self.stage = ""
        self.epoch_text = ""
        self.device = ""
        self.warnings: list[str] = []
        self.error = ""
        self._anchor: tuple[float, float] | None = None  # (time, fraction) when training steps began
        self._now = clock()

    def epochs_before(self, stage: str) -> int:
        total = 0
        for name, count in self.stage_epochs.items():
            if name == stage:
                return total
            total += count
        return total

    @property
    def total_epochs(self) -> int:
        return sum(self.stage_epochs.values())

    def update(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        self._now = self.clock()
        if kind == "progress":
            self.fraction = float(event.get("fraction", self.fraction))
            self.message = str(event.get("message", ""))
            stage = str(event.get("stage", ""))
            if stage in ("upstream", "downstream"):
                self.stage = stage
                if self._anchor is None:
                    self._anchor = (self._now, self.fraction)
        elif kind == "metrics":
            stage = str(event.get("stage", self.stage))
            if stage in ("upstream", "downstream"):
                self.stage = stage
            if "epochs" in event and stage in self.stage_epochs:
                self.stage_epochs[stage] = int(event["epochs"])
            self.curves.add(event, self.epochs_before(stage))
            self.epoch_text = epoch_text(event, self.epochs_before(stage), self.total_epochs)
        elif kind == "log":
            message = str(event.get("message", ""))
            found = re.match(r"training on (\w+)", message)
            if found:
                self.device = found.group(1)
            if event.get("level") == "warning":
                self.warnings.append(message)
        elif kind == "error":
            self.error = str(event.get("message", ""))

    @property
    def eta_s(self) -> float | None:
        """Seconds left, or None before it can be estimated."""
        if self._anchor is None:
            return None
        start_time, start_fraction = self._anchor
        done = self.fraction - start_fraction
        if done <= 0.005 or self.fraction >= 1.0:
            return None if self.fraction < 1.0 else 0.0
        return (self._now - start_time) * (1.0 - self.fraction) / done

    def status_text(self) -> str:
        """``"upstream epoch 3/10 · 42% · about 5 min left"``."""
        parts = [self.epoch_text or self.message or "starting", f"{100 * self.fraction:.0f}%"]
        eta = self.eta_s
        if eta is not None and self.fraction < 1.0:
            parts.append(f"about {duration_text(eta)} left")
        return " · ".join(parts)


def epoch_text(event: Mapping[str, Any], epochs_before: int, total: int) -> str:
    """``"upstream epoch 3/10 (3/14 overall): loss 0.412, Dice 0.61, AUC 0.83"``."""
    epoch, epochs = int(event.get("epoch", 0)), int(event.get("epochs", 0))
    text = f"{event.get('stage', '')} epoch {epoch}/{epochs}".strip()
    if total and total != epochs:
        text += f" ({epochs_before + epoch}/{total} overall)"
    values = [(label, _number(event.get(key))) for label, key in (("loss", "train_loss"), ("Dice", "val_dice"),
                                                                   ("AUC", "val_auc"))]
    shown = [f"{label} {value:.3f}" for label, value in values if not math.isnan(value)]
    return text + (": " + ", ".join(shown) if shown else "")


def duration_text(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"2 h 5 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


# ---------------------------------------------------------------------------------------------- messages
def cpu_time_estimate_s(options: TrainingOptions, n_cases: int, slices_per_case: float = 32.0) -> float:
    """Rough duration of a CPU run (see the CPU_* constants), for the "no GPU" message.

    Upstream: ``SLICES_PER_VOLUME`` slices per training case per epoch; downstream: one volume step per
    training case per epoch, its cost scaled by the number of slices; validation after every epoch.
    """
    n_val = max(1, round(options.val_split * n_cases)) if options.val_split > 0 and n_cases > 1 else 0
    n_train = max(1, n_cases - n_val)
    epochs = options.stage_epochs()
    scale = slices_per_case / 32.0
    upstream = epochs.get("upstream", 0) * n_train * SLICES_PER_VOLUME * CPU_SECONDS_PER_SLICE
    downstream = epochs.get("downstream", 0) * n_train * CPU_SECONDS_PER_VOLUME_STEP * scale
    validation = sum(epochs.values()) * n_val * CPU_SECONDS_PER_VALIDATION_VOLUME * scale
    return upstream + downstream + validation


def no_gpu_message(options: TrainingOptions, n_cases: int, slices_per_case: float = 32.0) -> str:
    """What to tell users when training will run (or runs) on the CPU."""
    estimate = duration_text(cpu_time_estimate_s(options, n_cases, slices_per_case))
    return (f"No GPU is available: training runs on the CPU, which is much slower (roughly {estimate} for "
            f"{n_cases} cases and {sum(options.stage_epochs().values())} epochs). Fewer epochs or cases make it "
            "shorter; a computer with an NVIDIA GPU makes it many times faster.")


_OOM_PATTERNS = (
    r"out of memory", r"OutOfMemoryError", r"CUBLAS_STATUS_ALLOC_FAILED", r"CUDNN_STATUS_ALLOC_FAILED",
    r"DefaultCPUAllocator: can't allocate memory", r"not enough memory", r"std::bad_alloc", r"\bMemoryError\b",
    r"Cannot allocate memory",
)
_KILLED_CODES = (-9, 137)  # SIGKILL (the kernel's OOM killer), as a signal or as a shell's exit status


def is_out_of_memory(message: str, returncode: int | None = None, cancelled: bool = False) -> bool:
    """True when an engine failure looks like memory ran out (GPU or CPU)."""
    if any(re.search(p, message or "", re.IGNORECASE) for p in _OOM_PATTERNS):
        return True
    return not cancelled and returncode in _KILLED_CODES


def out_of_memory_advice(options: TrainingOptions, message: str = "") -> str:
    """Advice after an out-of-memory failure, for the options that failed."""
    gpu = options.device == "cuda" or "cuda" in (message or "").lower() or "gpu" in (message or "").lower()
    smaller = max(1, options.batch_size // 2)
    steps = [f"reduce the batch size (e.g. {options.batch_size} → {smaller})"]
    if gpu:
        steps.append("close other programs that use the GPU")
        steps.append("or train on the CPU (slower, but uses system memory)")
    else:
        steps.append("close other programs to free memory")
    where = "GPU" if gpu else "computer"
    return (f"Training ran out of memory on the {where}. Try again after you " + ", ".join(steps) + ". "
            "Resume continues from the last finished epoch.")


def failure_text(options: TrainingOptions, message: str, returncode: int | None = None,
                 stderr_tail: list[str] | None = None) -> str:
    """The message shown when a run fails: OOM advice when it looks like one, else the engine's message."""
    everything = "\n".join([message or "", *(stderr_tail or [])])
    if is_out_of_memory(everything, returncode):
        return out_of_memory_advice(options, everything)
    return message or "training stopped unexpectedly"


def comparison_text(card_metrics: dict) -> str:
    """``"Validation (2 cases): AUC 0.50 → 0.75, Dice 0.12 → 0.40"`` from a registered card's metrics."""
    comparison = (card_metrics or {}).get("comparison") or {}
    base, new = comparison.get("base_model") or {}, comparison.get("new_model") or {}
    if not new:
        return ""
    parts = []
    for label, key in (("AUC", "val_auc"), ("Dice", "val_dice")):
        before, after = base.get(key), new.get(key)
        if after is None:
            continue
        parts.append(f"{label} {before:.2f} → {after:.2f}" if isinstance(before, (int, float)) else
                     f"{label} {after:.2f}")
    cases = new.get("val_cases")
    head = f"Validation ({cases} cases)" if cases else "Validation"
    return f"{head}: " + (", ".join(parts) if parts else "no metric could be computed")
