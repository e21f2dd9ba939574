"""Self-supervised pretraining of SMART-Net's encoder on unlabeled head CTs: Models Genesis or TransVW.

Models Genesis (``--method genesis``): slices are sampled, augmented and windowed exactly as in supervised
training (:mod:`.dataset`), distorted by :class:`~.distortions.ModelsGenesis` (local shuffling, non-linear
intensity, in/out-painting), and the encoder plus the reconstruction head (which sees only the deepest encoder
feature, as in the paper) learn to restore the undistorted slice (L1, SMART-Net's reconstruction loss, or MSE,
Models Genesis'). TransVW (``--method transvw``): visual words are discovered in the unlabelled heads
(:mod:`.visual_words`), and the encoder learns to tell the words apart (a classification head on its deepest
feature, cross-entropy) while it restores their distorted patches (the same restoration). The output is a full
model folder (random classification, segmentation and volume heads) that ``smartnet train --base-model``
fine-tunes; its card's provenance says ``"pretraining": {"method": "models-genesis" | "transvw", ...}``.

After every epoch the model folder is replaced by the latest weights and a checkpoint (model, optimizer,
scheduler, scaler, epoch, RNG states) is written atomically to ``OUTPUT/checkpoints/last.pt``. Every random
draw of an epoch comes from generators seeded by (seed, epoch), so ``resume`` ends in the state of an
uninterrupted run. A fixed probe of distorted slices (same every epoch) measures the restoration loss.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch import nn

from SMARTNetLib.analysis.inference import resolve_device
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink
from SMARTNetLib.contracts.files import IMAGE_SUFFIXES
from SMARTNetLib.contracts.model_card import ARCHITECTURES, ModelCard, Preprocessing
from SMARTNetLib.io.volume import read_ct
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.training.checkpoint import (
    CHECKPOINT,
    SLICES_PER_VOLUME,
    derived_seed,
    load_checkpoint,
    lr_lambda,
    optimizer_step,
    restore_rng,
    rng_state,
    save_checkpoint,
    save_model_into,
    seed_all,
    set_phase,
)
from SMARTNetLib.training.dataset import SliceSampler, TrainingVolume, preload, slice_augmentation, slice_batch, window
from SMARTNetLib.training.distortions import ModelsGenesis
from SMARTNetLib.training.visual_words import discover

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
METHODS = {"genesis": "models-genesis", "transvw": "transvw"}
PROBE_SLICES = 32  # distorted slices scored after every epoch (always the same ones)


@dataclass
class PretrainConfig:
    """Everything ``smartnet pretrain`` needs (see ``commands/pretrain.py``)."""

    data: Path
    output: Path
    architecture: str = "default"
    image_size: int | None = None
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    loss: str = "l1"
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    name: str | None = None
    method: str = "genesis"  # or "transvw"
    words: int = 32  # TransVW: visual words (classes)
    instances: int = 8  # TransVW: heads each word is taken from (the reference and the most similar ones)
    word_weight: float = 1.0  # TransVW: weight of the word classification loss beside the restoration loss
    command: list[str] = field(default_factory=lambda: list(sys.argv))


class Restorer(nn.Module):
    """Encoder -> reconstruction head: the part of SMART-Net that Models Genesis trains.

    Equivalent to ``SmartNet.forward_slices(x)["rec"]`` without the segmentation decoder, which the
    restoration loss does not reach.
    """

    def __init__(self, net: SmartNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.reconstruct(self.net.unet.encoder(x)[-1])

    def modules_trained(self) -> list[nn.Module]:
        return [self.net.unet.encoder, self.net.reconstruct]


class WordLearner(Restorer):
    """TransVW: the encoder's deepest feature feeds the reconstruction head and a visual-word classifier."""

    def __init__(self, net: SmartNet, words: int) -> None:
        super().__init__(net)
        channels = net.feature_size // 2  # the deepest encoder map's (SmartNet.pool doubles them)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, words))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net.unet.encoder(x)[-1]
        return self.net.reconstruct(features), self.head(features)

    def modules_trained(self) -> list[nn.Module]:
        return [*super().modules_trained(), self.head]


# ------------------------------------------------------------------------------------------------ data
def find_images(data: Path) -> tuple[list[Path], dict]:
    """The CT inputs of ``data`` and a description of the source.

    A datalist (``.json``): its "training" and "validation" images (labels ignored). A folder: every
    NIfTI/NRRD/MHA file under it (Slicer ``.seg.nrrd`` excluded) and every folder holding a DICOM series.
    """
    if not data.exists():
        raise SmartNetError("not found", data)
    if data.is_file():
        if not data.name.lower().endswith(".json"):
            raise SmartNetError("--data must be a folder of CT volumes or a MONAI datalist (.json)", data)
        from SMARTNetLib.training.datalist import load_datalist

        datalist = load_datalist(data, val_split=0.0)
        images = list(dict.fromkeys(c.image for c in [*datalist.training, *datalist.validation]))
        return images, {"kind": "datalist", "path": str(data.resolve()), "synthetic": datalist.synthetic}
    images: list[Path] = []
    for folder, dirs, files in os.walk(data):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = sorted(f for f in files if not f.startswith("."))
        images += [Path(folder) / f for f in names if f.lower().endswith(IMAGE_SUFFIXES)
                   and not f.lower().endswith(".seg.nrrd")]
        if any(not f.lower().endswith((*IMAGE_SUFFIXES, ".json", ".txt", ".raw", ".zraw", ".gz")) for f in names) \
                and _has_dicom_series(Path(folder)):
            images.append(Path(folder))
    return images, {"kind": "folder", "path": str(data.resolve()), "synthetic": _declared_synthetic(data)}


def _has_dicom_series(folder: Path) -> bool:
    try:
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return False


def _declared_synthetic(folder: Path) -> bool:
    """A folder is synthetic when a ``datalist.json`` at its root says so (``"synthetic": true``)."""
    import json

    try:
        return bool(json.loads((folder / "datalist.json").read_text()).get("synthetic", False))
    except (OSError, ValueError, AttributeError):
        return False


def load_volumes(images: list[Path], card: ModelCard, strict: bool, sink: EventSink,
                 keep: list[sitk.Image] | None = None) -> tuple[list[TrainingVolume], int]:
    """Preload the CTs at model size, thin slices pooled into slabs (as supervised training and inference do).
    In a folder (not ``strict``), files that are not CTs (e.g. label maps) are skipped; returns the volumes and
    the number skipped. ``keep``: also collect the CTs as read (TransVW discovers its words on them)."""
    volumes, skipped = [], 0
    for n, path in enumerate(images):
        try:
            image = read_ct(path)
        except SmartNetError as err:
            if strict:
                raise
            skipped += 1
            sink.log(f"skipped {path}: {err.problem}")
            continue
        if keep is not None:
            keep.append(image)
        empty = np.zeros(image.GetSize()[::-1], np.uint8)
        volumes.append(preload(image, empty, card.architecture.image_size, path.name, card.preprocessing.slab_mm))
        sink.progress("load", 0.05 * (n + 1) / len(images), f"read {path.name}")
    return volumes, skipped


# ------------------------------------------------------------------------------------------------ training
class Pretrainer:
    """Runs ``smartnet pretrain``; :meth:`run` returns the command's result."""

    def __init__(self, cfg: PretrainConfig, sink: EventSink) -> None:
        self.cfg, self.sink, self.clock = cfg, sink, time.perf_counter()
        self.device = resolve_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        self.checkpoint_path = cfg.output / CHECKPOINT

    def run(self) -> dict:
        from monai.data import set_track_meta

        set_track_meta(False)
        cfg = self.cfg
        if cfg.loss not in LOSSES:
            raise SmartNetError(f"unknown loss {cfg.loss!r} (use {' or '.join(LOSSES)})")
        if cfg.method not in METHODS:
            raise SmartNetError(f"unknown pretraining method {cfg.method!r} (use {' or '.join(METHODS)})")
        transvw = cfg.method == "transvw"
        checkpoint = self._load_checkpoint()
        images, source = find_images(cfg.data)
        if not images:
            raise SmartNetError("no CT volumes found (NIfTI, NRRD, MHA files or DICOM series folders)", cfg.data)
        card = ModelCard.from_dict(checkpoint["card"]) if checkpoint else self._new_card()
        size = card.architecture.image_size
        self.sink.progress("load", 0.0, f"reading {len(images)} CT volumes")
        read: list[sitk.Image] | None = [] if transvw else None
        volumes, skipped = load_volumes(images, card, strict=source["kind"] == "datalist", sink=self.sink, keep=read)
        if not volumes:
            raise SmartNetError(f"none of the {len(images)} files found is a readable CT volume", cfg.data)
        if skipped:
            self.sink.warning(f"{skipped} of {len(images)} files are not CT volumes (label maps?) and were skipped")
        source.update(volumes=len(volumes), slices=int(sum(len(v.body_slices) for v in volumes)))
        self.vocabulary = None
        if transvw:
            self.sink.progress("discover", 0.05, f"discovering {cfg.words} visual words in {len(read)} CT volumes")
            try:
                self.vocabulary = discover(read, cfg.words, cfg.instances, size, card.preprocessing.context_slices,
                                           cfg.seed)
            except ValueError as err:
                raise SmartNetError(f"visual words: {err}", cfg.data) from None
            del read
        if not checkpoint:
            card = self._finish_card(card, source)
        elif checkpoint["card"]["provenance"]["pretraining"]["data"].get("volumes") != len(volumes):
            self.sink.warning("the data differ from those of the checkpoint's run")
        self.card, self.volumes = card, volumes

        seed_all(cfg.seed)
        net = SmartNet(card)
        if checkpoint:
            net.load_state_dict(checkpoint["model"])
        net.to(self.device)
        restorer = WordLearner(net, len(self.vocabulary.words)) if transvw else Restorer(net)
        if checkpoint and transvw:
            restorer.head.load_state_dict(checkpoint["word_head"])
        restorer.to(self.device)
        params = self._trained(net, restorer)
        samples = len(self.vocabulary.labels) if transvw else len(volumes) * SLICES_PER_VOLUME
        steps = int(cfg.steps_per_epoch or max(1, math.ceil(samples / cfg.batch_size)))
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.epochs * steps))
        scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        history: list[dict] = checkpoint["history"] if checkpoint else []
        start = checkpoint["epoch"] if checkpoint else 0
        if checkpoint:
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            scaler.load_state_dict(checkpoint["scaler"])
            restore_rng(checkpoint["rng"])
        probe, probe_target = self._probe()
        sampler = SliceSampler(volumes, cfg.batch_size, cfg.seed)
        self.sink.log(f"pretraining on {self.device}: {len(volumes)} CT volumes, {steps} steps of {cfg.batch_size} "
                      f"slices per epoch, {card.architecture.encoder} encoder at {size} px")

        for epoch in range(start, cfg.epochs):
            clock = time.perf_counter()
            params = self._trained(net, restorer)
            train_loss = self._epoch(restorer, sampler, params, optimizer, scheduler, scaler, epoch, steps)
            restoration, identity, words = self._score(restorer, probe, probe_target)
            record = {"stage": "pretrain", "epoch": epoch + 1, "epochs": cfg.epochs, "train_loss": round(train_loss, 5),
                      "restoration_loss": round(restoration, 5), "identity_loss": round(identity, 5), **words,
                      "seconds": round(time.perf_counter() - clock, 2)}
            history.append(record)
            self.card = dataclasses.replace(self.card, metrics={"pretraining": {**record, "loss": cfg.loss,
                                                                                "history": history}})
            save_model_into(net, self.card, cfg.output)
            save_checkpoint(self.checkpoint_path, {
                "epoch": epoch + 1, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
                "card": self.card.to_dict(), "history": history,
                **({"word_head": restorer.head.state_dict()} if transvw else {})})
            self.sink.metrics(**record, lr=optimizer.param_groups[0]["lr"])
        net.eval()
        self.sink.progress("done", 1.0, "pretraining finished")
        return {"model_dir": str(cfg.output), "name": self.card.name, "volumes": len(volumes),
                "metrics": history[-1] if history else {}, "checkpoint": str(self.checkpoint_path),
                "device": str(self.device), "seconds": round(time.perf_counter() - self.clock, 1)}

    # ------------------------------------------------------------------------------------------ pieces
    @staticmethod
    def _trained(net: SmartNet, restorer: Restorer) -> list[nn.Parameter]:
        """The parameters that learn: the network's trained parts (:func:`set_phase`) and TransVW's word head."""
        params = set_phase(net, restorer.modules_trained())
        if isinstance(restorer, WordLearner):
            params += list(restorer.head.parameters())
        return params

    def _load_checkpoint(self) -> dict | None:
        state = load_checkpoint(self.checkpoint_path, self.cfg.output, self.cfg.resume, "pretraining")
        if state is None:
            return None
        if "pretraining" not in state.get("card", {}).get("provenance", {}):
            raise SmartNetError("this checkpoint is not a pretraining run (use smartnet train --resume)",
                                self.checkpoint_path)
        return state

    def _new_card(self) -> ModelCard:
        cfg = self.cfg
        if cfg.architecture not in ARCHITECTURES:
            raise SmartNetError(f"unknown architecture {cfg.architecture!r} (known: {', '.join(ARCHITECTURES)})")
        arch = ARCHITECTURES[cfg.architecture]
        if cfg.image_size:
            arch = dataclasses.replace(arch, image_size=int(cfg.image_size))
        return ModelCard(name="untitled", architecture=arch, preprocessing=Preprocessing())

    def _finish_card(self, card: ModelCard, source: dict) -> ModelCard:
        cfg = self.cfg
        name = cfg.name or cfg.output.resolve().name
        label = "TransVW: visual words" if cfg.method == "transvw" else "Models Genesis"
        description = (f"SMART-Net encoder pretrained self-supervised ({label}) on {source['volumes']} "
                       f"unlabeled CT volumes; its heads are untrained: fine-tune it with smartnet train "
                       f"--base-model before analysis")
        pretraining = {"method": METHODS[cfg.method], "data": source, "loss": cfg.loss,
                       "distortions": ModelsGenesis(card.architecture.image_size).settings,
                       "command": shlex.join(["smartnet", *cfg.command[1:]]), "argv": list(cfg.command),
                       "epochs": cfg.epochs, "steps_per_epoch": cfg.steps_per_epoch, "batch_size": cfg.batch_size,
                       "lr": cfg.lr, "seed": cfg.seed,
                       **({"visual_words": {**self.vocabulary.settings(), "word_weight": cfg.word_weight}}
                          if self.vocabulary is not None else {}),
                       "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return dataclasses.replace(card, name=name, version="1.0.0", description=description,
                                   synthetic_only=bool(source["synthetic"]),
                                   provenance={"base_model": None, "pretraining": pretraining}, metrics={})

    def _batch(self, picks: list[tuple[int, int]], augment, distort: ModelsGenesis) -> tuple[torch.Tensor, ...]:
        """Windowed slices (the targets) and their distorted versions (the inputs)."""
        hu, _ = slice_batch(self.volumes, picks, self.card.preprocessing.context_slices, augment)
        target = window(hu, self.card.preprocessing)
        return distort.batch(target), target

    def _probe(self) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """A fixed set of distorted slices (drawn from the seed alone) scored after every epoch; for TransVW,
        distorted word patches, and their targets with their words."""
        rng = np.random.default_rng([self.cfg.seed, 99])
        if self.vocabulary is not None:
            picks = rng.choice(len(self.vocabulary.labels), min(PROBE_SLICES, len(self.vocabulary.labels)),
                               replace=False)
            distort = ModelsGenesis(self.card.architecture.image_size)
            distort.set_random_state(seed=derived_seed(self.cfg.seed, 99))
            distorted, target = self._word_batch(picks, distort)
            return distorted, (target, torch.from_numpy(self.vocabulary.labels[picks]))
        picks = []
        for _ in range(PROBE_SLICES):
            v = int(rng.integers(len(self.volumes)))
            picks.append((v, int(rng.choice(self.volumes[v].body_slices))))
        distort = ModelsGenesis(self.card.architecture.image_size)
        distort.set_random_state(seed=derived_seed(self.cfg.seed, 99))
        return self._batch(picks, None, distort)

    def _word_batch(self, picks: np.ndarray, distort: ModelsGenesis) -> tuple[torch.Tensor, torch.Tensor]:
        """Windowed word patches (the targets) and their distorted versions (the inputs)."""
        target = window(torch.from_numpy(self.vocabulary.patches[picks].astype(np.float32)), self.card.preprocessing)
        return distort.batch(target), target

    def _word_batches(self, epoch: int, steps: int):
        """``steps`` batches of (patch indices, their words), drawn from (seed, epoch) alone."""
        rng = np.random.default_rng([self.cfg.seed, epoch, 5])
        for _ in range(steps):
            picks = rng.integers(len(self.vocabulary.labels), size=self.cfg.batch_size)
            yield picks, torch.from_numpy(self.vocabulary.labels[picks])

    def _epoch(self, restorer: Restorer, sampler: SliceSampler, params, optimizer, scheduler, scaler, epoch: int,
               steps: int) -> float:
        cfg, size = self.cfg, self.card.architecture.image_size
        augment = slice_augmentation(size)
        augment.set_random_state(seed=derived_seed(cfg.seed, epoch, 0, 11))
        distort = ModelsGenesis(size)
        distort.set_random_state(seed=derived_seed(cfg.seed, epoch, 0, 31))
        criterion, total, every = LOSSES[cfg.loss], 0.0, max(1, steps // 20)
        batches = (self._word_batches(epoch, steps) if self.vocabulary is not None
                   else ((picks, None) for picks in sampler.batches(epoch, steps)))
        for step, (picks, words) in enumerate(batches):
            if words is None:
                distorted, target = self._batch(picks, augment, distort)
            else:
                distorted, target = self._word_batch(picks, distort)
            with torch.autocast("cuda", enabled=self.cuda):
                output = restorer(distorted.to(self.device, non_blocking=True))
            restored = output[0] if words is not None else output
            loss = criterion(restored.float(), target.to(self.device))
            if words is not None:
                loss = loss + cfg.word_weight * F.cross_entropy(output[1].float(), words.to(self.device))
            optimizer_step(loss, params, optimizer, scheduler, scaler)
            total += loss.item()
            if (step + 1) % every == 0 or step + 1 == steps:
                fraction = 0.05 + 0.95 * (epoch + (step + 1) / steps) / cfg.epochs
                self.sink.progress("pretrain", fraction, f"epoch {epoch + 1} step {step + 1}/{steps} "
                                                         f"loss {total / (step + 1):.4f}")
        return total / steps

    @torch.no_grad()
    def _score(self, restorer: Restorer, probe: torch.Tensor, target) -> tuple[float, float, dict]:
        """Restoration loss on the probe, the loss of leaving the slices distorted (for comparison), and for
        TransVW the word classification loss and accuracy on the probe."""
        restorer.eval()
        words = None
        if isinstance(target, tuple):
            target, words = target
        criterion, restored, logits = LOSSES[self.cfg.loss], [], []
        for chunk in probe.split(self.cfg.batch_size):
            with torch.autocast("cuda", enabled=self.cuda):
                output = restorer(chunk.to(self.device))
            if words is not None:
                output, scores = output
                logits.append(scores.float().cpu())
            restored.append(output.float().cpu())
        scores = {}
        if words is not None:
            logits = torch.cat(logits)
            scores = {"word_loss": round(float(F.cross_entropy(logits, words)), 5),
                      "word_accuracy": round(float((logits.argmax(1) == words).float().mean()), 4)}
        return float(criterion(torch.cat(restored), target)), float(criterion(probe, target)), scores



def pretrain(cfg: PretrainConfig, sink: EventSink) -> dict:
    """Pretrain a model as configured; returns the command's result (see :class:`Pretrainer`)."""
    cfg.output.mkdir(parents=True, exist_ok=True)
    return Pretrainer(cfg, sink).run()
