"""The model card: everything needed to rebuild a model and to tell users what it is.

A model is a folder with ``model.json`` (this card) and ``model.pt`` (a ``state_dict``). The engine
builds the network from the card alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from SMARTNetLib.contracts.classes import SUBTYPE_NAMES, classes_for
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.files import write_json_atomic

FORMAT_VERSION = 1
CARD_FILE = "model.json"
WEIGHTS_FILE = "model.pt"

# HU windows as (center, width). "brain" is the paper's [0, 80] window.
WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "bone": (600.0, 2800.0),
}

OPERATOR_INPUTS = ("encoder", "segmentation", "both", "segmentation-3d")  # see Architecture.operator_inputs
VOLUME_SEGMENTATIONS = ("multilabel", "exclusive")  # see Architecture.volume_segmentation


@dataclass
class Architecture:
    """Network configuration (see :mod:`SMARTNetLib.model.network`)."""

    encoder: str = "resnet10"  # a MONAI FlexibleUNet backbone: resnet10..resnet200, efficientnet-b0..b8
    decoder_channels: tuple[int, ...] = (64, 32, 16, 16, 8)
    image_size: int = 128  # in-plane size the slices are resized to (about 1.8 mm pixels for a head)
    volume_operator: str = "lstm"  # "lstm" (Bi-LSTM, as the paper) or "transformer"
    operator_hidden: int = 128
    operator_layers: int = 1
    dropout: float = 0.2
    # What the volume classifier reads per slice: "encoder" (pooled deepest encoder map, as the paper),
    # "segmentation" (the slice's segmentation evidence: per-class maximum and mean probability), "both", or
    # "segmentation-3d" (the same evidence from the volume segmenter's refined probabilities).
    operator_inputs: str = "encoder"
    # The volume segmenter's probabilities: "multilabel" (a sigmoid per class, as the 2D head) or "exclusive"
    # (a softmax over background and the classes, the background logit fixed at 0, so that one class is the
    # sigmoid again): a voxel is then one subtype or none, as in a label map.
    volume_segmentation: str = "multilabel"

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if self.volume_operator not in ("lstm", "transformer"):
            raise ValueError(f"volume_operator must be 'lstm' or 'transformer', not {self.volume_operator!r}")
        if self.operator_inputs not in OPERATOR_INPUTS:
            raise ValueError(f"operator_inputs must be one of {', '.join(OPERATOR_INPUTS)}, "
                             f"not {self.operator_inputs!r}")
        if self.volume_segmentation not in VOLUME_SEGMENTATIONS:
            raise ValueError(f"volume_segmentation must be one of {', '.join(VOLUME_SEGMENTATIONS)}, "
                             f"not {self.volume_segmentation!r}")


# Named configurations. "paper" follows the SMART-Net release (ResNet-50 encoder, U-Net decoder), except that
# MONAI's encoder keeps its stride-2 stem; "default" is light enough for a laptop CPU. Both feed the volume
# classifier the segmentation evidence of the volume segmenter's refined segmentation (why: CHANGELOG.md,
# smartnet-default 1.0.0-1.3.0). "tiny" (tests) keeps the 2D segmentation's evidence.
ARCHITECTURES: dict[str, Architecture] = {
    "default": Architecture(operator_inputs="segmentation-3d"),
    "paper": Architecture(encoder="resnet50", decoder_channels=(256, 128, 64, 32, 16), image_size=256,
                          operator_hidden=256, operator_layers=1, operator_inputs="segmentation-3d"),
    "tiny": Architecture(encoder="resnet10", decoder_channels=(32, 16, 16, 8, 8), image_size=128,
                         operator_hidden=32, operator_inputs="segmentation"),
}


@dataclass
class Preprocessing:
    """How CT slices become network input channels."""

    windows: tuple[str, ...] = ("brain", "subdural", "bone")
    context_slices: int = 1  # neighbouring slices on each side stacked as extra channels
    slab_mm: float = 4.0  # thinner slices are averaged into slabs of about this thickness (0: never)

    def __post_init__(self) -> None:
        self.windows = tuple(self.windows)
        unknown = [w for w in self.windows if w not in WINDOWS]
        if unknown:
            raise ValueError(f"unknown HU window(s) {unknown}; known: {', '.join(WINDOWS)}")

    @property
    def in_channels(self) -> int:
        return len(self.windows) * (2 * self.context_slices + 1)


REQUIRED_CARD_KEYS = ("name", "version", "classes", "architecture")  # every card this project wrote has them


@dataclass
class ModelCard:
    """Contents of ``model.json``."""

    name: str
    version: str = "0.1.0"
    description: str = ""
    classes: tuple[str, ...] = SUBTYPE_NAMES
    architecture: Architecture = field(default_factory=Architecture)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    thresholds: dict[str, float] = field(default_factory=lambda: {"segmentation": 0.5, "classification": 0.5})
    # temperature scaling of the volume classifier's logits (scripts/calibrate_model.py); 1.0 = as trained
    calibration: dict[str, Any] = field(default_factory=dict)
    # input-familiarity check: "threshold" on the reconstruction error and its reference distribution
    familiarity: dict[str, Any] = field(default_factory=dict)
    # the per-finding subtype classifier (finding_classifier.py): file, features, drop_probability, data, command
    findings: dict[str, Any] = field(default_factory=dict)
    synthetic_only: bool = True  # trained on synthetic data only: not for clinical use
    provenance: dict[str, Any] = field(default_factory=dict)  # base model, data summary, command, dates
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes)
        classes_for(self.classes)  # raises on unknown names
        if isinstance(self.architecture, dict):
            self.architecture = Architecture(**self.architecture)
        if isinstance(self.preprocessing, dict):
            self.preprocessing = Preprocessing(**self.preprocessing)

    @property
    def output_names(self) -> list[str]:
        """Names of the classification outputs: ``any`` first when there are subtypes."""
        return list(self.classes) if len(self.classes) == 1 else ["any", *self.classes]

    @property
    def temperature(self) -> float:
        """The volume classifier's calibration temperature (probabilities are sigmoid(logit / T))."""
        return float(self.calibration.get("temperature", 1.0))

    @property
    def summary(self) -> str:
        """One line for model lists and tooltips."""
        line = self.description.strip().splitlines()[0] if self.description.strip() else "SMART-Net model"
        return f"{line} ({', '.join(self.classes)})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["architecture"]["decoder_channels"] = list(self.architecture.decoder_channels)
        data["preprocessing"]["windows"] = list(self.preprocessing.windows)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in REQUIRED_CARD_KEYS if k not in data]
        if missing:
            raise ValueError(f"lacks {', '.join(missing)}")
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"card format {version} is newer than this engine supports ({FORMAT_VERSION})")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: Path) -> Path:
        path = Path(folder) / CARD_FILE
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ModelCard:
        path = Path(folder) / CARD_FILE
        if not path.is_file():
            raise SmartNetError(f"not a model folder: no {CARD_FILE}", folder)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as err:
            raise SmartNetError(f"invalid model card: {err}", path) from None
