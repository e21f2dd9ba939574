"""Defaults that more than one layer needs, written once: the training options (``smartnet train``, the
trainer's configuration and the SMARTNetTraining module's form)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingDefaults:
    """``smartnet train``'s defaults (a recipe may set others)."""

    stage: str = "all"
    epochs: int = 10  # upstream (2D) epochs
    downstream_epochs: int = 4  # downstream (3D operator) epochs
    lr: float = 1e-3
    batch_size: int = 8  # slices per step and process
    val_split: float = 0.2  # fraction of training cases held out when the datalist has no validation
    architecture: str = "default"
    seed: int = 0
    device: str = "auto"


TRAINING = TrainingDefaults()
