"""The training loop: upstream (2D multi-task) then downstream (3D operators), with checkpoints and resume.

One readable loop per stage. After every epoch: validation with the inference code, a checkpoint written
atomically to ``OUTPUT/checkpoints/last.pt`` (model, optimizer, scheduler, scaler, epoch, the RNG states of
every rank and the sampler state) and, when the validation score improves, the model folder ``OUTPUT``
(``model.json`` + ``model.pt``) replaced by the new best. ``resume`` restores the checkpoint, so that a killed
run ends in exactly the state of an uninterrupted one: the sampler and augmentation draw from generators
seeded by (seed, epoch, rank), and the torch/numpy/python generators are restored.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from SMARTNetLib.contracts.classes import classes_for
from SMARTNetLib.contracts.defaults import TRAINING
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink
from SMARTNetLib.contracts.model_card import ARCHITECTURES, WEIGHTS_FILE, Architecture, ModelCard, Preprocessing
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.model.store import load_model, resolve_model
from SMARTNetLib.training import distributed
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
from SMARTNetLib.training.datalist import Datalist, class_names, load_datalist
from SMARTNetLib.training.dataset import (
    SliceSampler,
    TrainingVolume,
    ValidationVolume,
    class_targets,
    neighbours,
    preload,
    read_case,
    slice_augmentation,
    slice_batch,
    volume_augmentation,
    volume_item,
    window,
)
from SMARTNetLib.training.losses import DownstreamLoss, UpstreamLoss
from SMARTNetLib.training.metrics import evaluate

STAGES = ("upstream", "downstream")


@dataclass
class TrainConfig:
    """Everything ``smartnet train`` needs (see ``commands/train.py`` for the meaning of each option)."""

    datalist: Path
    output: Path
    base_model: str | None = None
    stage: str = TRAINING.stage
    epochs: int = TRAINING.epochs
    downstream_epochs: int = TRAINING.downstream_epochs
    lr: float = TRAINING.lr
    batch_size: int = TRAINING.batch_size
    val_split: float = TRAINING.val_split
    architecture: str = TRAINING.architecture
    image_size: int | None = None
    classes: str | None = None  # "subtypes", "binary" or None (from the datalist / labels)
    device: str = TRAINING.device
    seed: int = TRAINING.seed
    resume: bool = False
    name: str | None = None
    steps_per_epoch: int | None = None
    unfreeze_after: int | None = None  # downstream epochs with a frozen 2D network (default: half)
    operator_inputs: str | None = None  # overrides the architecture's / base model's (see model_card)
    volume_segmentation: str | None = None  # likewise
    recipe: str | None = None
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def epochs_of(self, stage: str) -> int:
        return self.epochs if stage == "upstream" else self.downstream_epochs

    @property
    def stages(self) -> tuple[str, ...]:
        return STAGES if self.stage == "all" else (self.stage,)


@dataclass
class Data:
    training: list[TrainingVolume]
    validation: list[ValidationVolume]
    mode: str
    summary: dict


class UpstreamNet(nn.Module):
    """The 2D multi-task pass (the module DistributedDataParallel wraps in the upstream stage)."""

    def __init__(self, net: SmartNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net.forward_slices(x, reconstruct=True)
        return {k: out[k] for k in ("cls", "seg", "rec")}


class VolumeNet(nn.Module):
    """Whole volume -> slice features and decoder maps -> volume classifier and volume segmenter."""

    def __init__(self, net: SmartNet, frozen_2d: bool) -> None:
        super().__init__()
        self.net, self.frozen_2d = net, frozen_2d

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_2d):
            out = self.net.forward_slices(x, reconstruct=False)
        seg = self.net.segment_volume(out["decoder"], out["seg"])  # (K, D, H, W)
        # "segmentation-3d" reads the refined segmentation, which only the segmentation loss teaches
        refined = self.net.volume_probabilities(seg.detach().float(), dim=0).permute(1, 0, 2, 3) \
            if self.net.reads_refined_segmentation else None
        return self.net.classify_volume(out, refined)[None], seg[None]


def trainable_modules(net: SmartNet, stage: str, unfrozen: bool) -> list[nn.Module]:
    """The modules trained in ``stage``; downstream adds the decoder and last encoder stage once ``unfrozen``."""
    if stage == "upstream":
        return [net.unet, net.classify, net.reconstruct]
    modules: list[nn.Module] = [net.volume_classifier, net.volume_segmenter]
    if unfrozen:
        modules += [net.unet.decoder, net.unet.segmentation_head, last_encoder_stage(net.unet.encoder)]
    return modules


def last_encoder_stage(encoder: nn.Module) -> nn.Module:
    """The deepest stage of a MONAI FlexibleUNet encoder (ResNet ``layer4``; EfficientNet's last blocks)."""
    if hasattr(encoder, "layer4"):
        return encoder.layer4
    blocks = list(encoder._blocks)  # EfficientNetBNFeatures
    return nn.ModuleList(blocks[-max(1, len(blocks) // 4):])


class Trainer:
    """Runs ``smartnet train``; :meth:`run` returns the command's result."""

    def __init__(self, cfg: TrainConfig, sink: EventSink) -> None:
        self.cfg, self.sink, self.clock = cfg, sink, time.perf_counter()
        self.dist = distributed.setup(cfg.device)
        self.quiet = EventSink()  # ranks other than 0 stay silent
        self.out = self.sink if self.dist.main else self.quiet
        self.checkpoint_path = cfg.output / CHECKPOINT
        self.cuda = self.dist.device.type == "cuda"

    # ---------------------------------------------------------------------------------------------- setup
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            distributed.teardown(self.dist)

    def _run(self) -> dict:
        from monai.data import set_track_meta

        set_track_meta(False)  # plain tensors out of MONAI transforms: faster, and no metadata needed
        cfg = self.cfg
        checkpoint = self._load_checkpoint()
        card, base_state = self._card_and_base(checkpoint)
        self.out.progress("load", 0.0, "reading training data")
        datalist = load_datalist(cfg.datalist, cfg.val_split, cfg.seed)
        data = self._load_data(datalist, card)
        card = self._finish_card(card, checkpoint, data, datalist)
        self.card = card
        seed_all(cfg.seed)  # the same initial weights on every rank
        self.net = SmartNet(card)
        if base_state is not None:
            self._load_base(base_state)
        seed_all(cfg.seed + 1000 * self.dist.rank + 1)  # dropout differs between ranks
        self.sampler = SliceSampler(data.training, cfg.batch_size, cfg.seed, self.dist.rank, self.dist.world)
        self.data = data
        self.values = [c.label_value for c in classes_for(card.classes)]
        self.history: list[dict] = checkpoint["history"] if checkpoint else []
        self.best = checkpoint["best"] if checkpoint else None
        if checkpoint:
            self.net.load_state_dict(checkpoint["model"])
        self.net.to(self.dist.device)
        self.out.log(f"training on {self.dist.device}" + (f" x {self.dist.world} processes" if self.dist.active else "")
                     + f": {len(data.training)} training and {len(data.validation)} validation volumes, classes "
                     f"{', '.join(card.classes)}")

        start_stage, start_epoch = (checkpoint["stage"], checkpoint["epoch"]) if checkpoint else (cfg.stages[0], 0)
        if start_stage not in cfg.stages:
            raise SmartNetError(f"the checkpoint is in stage {start_stage!r}, which --stage {cfg.stage} does not "
                                "include", self.checkpoint_path)
        self.total_epochs = sum(cfg.epochs_of(s) for s in cfg.stages)
        for stage in cfg.stages[cfg.stages.index(start_stage):]:
            resume = checkpoint if checkpoint and checkpoint["stage"] == stage else None
            self._run_stage(stage, start_epoch if resume else 0, resume)
            checkpoint = None
        self.out.progress("done", 1.0, "training finished")
        return {"model_dir": str(cfg.output), "name": card.name, "classes": list(card.classes),
                "metrics": self.best["metrics"] if self.best else {}, "checkpoint": str(self.checkpoint_path),
                "device": str(self.dist.device), "world_size": self.dist.world,
                "seconds": round(time.perf_counter() - self.clock, 1)}

    def _load_checkpoint(self) -> dict | None:
        return load_checkpoint(self.checkpoint_path, self.cfg.output, self.cfg.resume, "training")

    def _card_and_base(self, checkpoint: dict | None) -> tuple[ModelCard, dict | None]:
        """The card to train (classes decided later from the data) and the base model's weights, if any."""
        cfg = self.cfg
        if checkpoint:
            return ModelCard.from_dict(checkpoint["card"]), None
        if cfg.base_model:
            folder = resolve_model(cfg.base_model)
            model, base = load_model(folder)
            lineage = {k: base.provenance[k] for k in ("pretraining", "command", "data", "base_model")
                       if k in base.provenance}  # the base's own base, and so on: the whole chain of commands
            card = dataclasses.replace(base, provenance={"base_model": {"name": base.name, "version": base.version,
                                                                        "path": str(folder), **lineage}}, metrics={},
                                       findings={})  # the finding classifier belongs to the base's network
            if cfg.image_size and cfg.image_size != base.architecture.image_size:
                self.out.warning(f"--image-size {cfg.image_size} ignored: the base model works at "
                                 f"{base.architecture.image_size} px")
            card.architecture = self._overridden(card.architecture)
            return card, model.state_dict()
        if cfg.architecture not in ARCHITECTURES:
            raise SmartNetError(f"unknown architecture {cfg.architecture!r} (known: {', '.join(ARCHITECTURES)})")
        arch = ARCHITECTURES[cfg.architecture]
        if cfg.image_size:
            arch = dataclasses.replace(arch, image_size=int(cfg.image_size))
        arch = self._overridden(arch)
        return ModelCard(name="untitled", architecture=arch, preprocessing=Preprocessing(),
                         provenance={"base_model": None}), None

    def _overridden(self, arch: Architecture) -> Architecture:
        """``arch`` with the options that may change a base model's 3D stage."""
        changes = {k: getattr(self.cfg, k) for k in ("operator_inputs", "volume_segmentation") if getattr(self.cfg, k)}
        return dataclasses.replace(arch, **changes)

    def _load_data(self, datalist: Datalist, card: ModelCard) -> Data:
        size, kinds = card.architecture.image_size, set()
        training, validation, warnings = [], [], []
        cases = [(c, True) for c in datalist.training] + [(c, False) for c in datalist.validation]
        for n, (case, train) in enumerate(cases):
            image, info = read_case(case)
            kinds.add(info.kind)
            warnings += info.warnings
            name = case.image.name
            if train:
                training.append(preload(image, info.array, size, name, card.preprocessing.slab_mm))
            else:
                validation.append(ValidationVolume(name, image, info.array))
            self.out.progress("load", 0.02 * (n + 1) / len(cases), f"read {name}")
        for w in dict.fromkeys(warnings):
            self.out.warning(w)
        mode = self.cfg.classes or datalist.classes
        if mode is None:
            if "subtypes" in kinds:
                mode = "subtypes"
            elif "binary" in kinds:
                mode = "binary"
            else:
                mode = "binary" if card.classes == ("hemorrhage",) else "subtypes"
        for vol in [*training, *validation]:
            vol.set_mode(mode)
        return Data(training, validation, mode, self._summary(datalist, training, validation, mode))

    @staticmethod
    def _summary(datalist: Datalist, training: list[TrainingVolume], validation: list[ValidationVolume],
                 mode: str) -> dict:
        names = class_names(mode)
        values = [c.label_value for c in classes_for(names)]

        def count(label_sets: list[set[int]]) -> dict:
            return {"cases": len(label_sets), "positives": sum(1 for s in label_sets if s),
                    "negatives": sum(1 for s in label_sets if not s),
                    "per_class": {n: sum(1 for s in label_sets if v in s) for n, v in zip(names, values)}}

        train_sets = [set(torch.unique(v.labels).tolist()) - {0} for v in training]
        val_sets = [set(np.unique(v.labels).tolist()) - {0} for v in validation]
        sources = {"datalist": str(datalist.path.resolve()), "synthetic": datalist.synthetic, **datalist.metadata}
        return {"training": count(train_sets), "validation": count(val_sets), "sources": sources}

    def _finish_card(self, card: ModelCard, checkpoint: dict | None, data: Data, datalist: Datalist) -> ModelCard:
        if checkpoint:
            if class_names(data.mode) != card.classes:
                raise SmartNetError(f"the checkpoint's classes ({', '.join(card.classes)}) differ from this "
                                    f"datalist's ({data.mode})", self.checkpoint_path)
            return card
        cfg = self.cfg
        summary = data.summary["training"]
        name = cfg.name or cfg.output.resolve().name
        kind = "synthetic" if datalist.synthetic else ""
        description = (f"SMART-Net model trained by smartnet train on {summary['cases']} {kind} CT volumes "
                       f"({summary['positives']} with hemorrhage)").replace("  ", " ")
        provenance = {**card.provenance, "data": data.summary,
                      "command": shlex.join(["smartnet", *cfg.command[1:]]), "argv": list(cfg.command),
                      "recipe": cfg.recipe, "seed": cfg.seed, "stages": list(cfg.stages),
                      "epochs": {s: cfg.epochs_of(s) for s in cfg.stages},
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return dataclasses.replace(card, name=name, version="1.0.0", description=description,
                                   classes=class_names(data.mode), synthetic_only=datalist.synthetic,
                                   provenance=provenance, metrics={})

    def _load_base(self, state: dict) -> None:
        """Base weights; tensors whose shape changed (other classes) keep their fresh initialisation."""
        own = self.net.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        skipped = len(own) - len(usable)
        self.net.load_state_dict(usable, strict=False)
        if skipped:
            self.out.warning(f"{skipped} tensors of the base model do not fit the new model (other classes or "
                             "volume-classifier inputs) and start afresh")

    # ---------------------------------------------------------------------------------------------- stages
    def _steps(self, stage: str) -> int:
        if self.cfg.steps_per_epoch:
            return int(self.cfg.steps_per_epoch)
        n, world = len(self.data.training), self.dist.world
        if stage == "upstream":
            return max(1, math.ceil(n * SLICES_PER_VOLUME / (self.cfg.batch_size * world)))
        return max(1, math.ceil(n / world))

    def _run_stage(self, stage: str, start_epoch: int, resume: dict | None) -> None:
        cfg, net = self.cfg, self.net
        epochs, steps = cfg.epochs_of(stage), self._steps(stage)
        if epochs <= 0:
            return
        if resume is None and start_epoch == 0:
            self._stage_start(stage)
        unfreeze = cfg.unfreeze_after if cfg.unfreeze_after is not None else math.ceil(epochs / 2)
        if stage == "upstream":
            groups = [{"params": [p for m in trainable_modules(net, stage, False) for p in m.parameters()]}]
        else:
            ops = [p for m in trainable_modules(net, stage, False) for p in m.parameters()]
            ids = {id(p) for p in ops}
            rest = [p for m in trainable_modules(net, stage, True) for p in m.parameters() if id(p) not in ids]
            groups = [{"params": ops}, {"params": rest, "lr": cfg.lr * 0.1}]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(epochs * steps))
        scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        if resume:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            scaler.load_state_dict(resume["scaler"])
            self._set_rng(resume["rng"])
        done_before = sum(cfg.epochs_of(s) for s in cfg.stages[: cfg.stages.index(stage)])
        for epoch in range(start_epoch, epochs):
            clock = time.perf_counter()
            unfrozen = stage == "downstream" and epoch >= unfreeze
            params = set_phase(net, trainable_modules(net, stage, unfrozen))
            wrapped = UpstreamNet(net) if stage == "upstream" else VolumeNet(net, frozen_2d=not unfrozen)
            if self.dist.active:
                wrapped = DistributedDataParallel(wrapped, device_ids=[self.dist.device] if self.cuda else None)
            base = (done_before + epoch) / self.total_epochs

            def progress(fraction: float, message: str, base: float = base) -> None:
                self.out.progress(stage, 0.03 + 0.97 * (base + 0.9 * fraction / self.total_epochs), message)

            if stage == "upstream":
                loss = self._upstream_epoch(wrapped, params, optimizer, scheduler, scaler, epoch, steps, progress)
            else:
                loss = self._downstream_epoch(wrapped, params, optimizer, scheduler, scaler, epoch, steps, progress)
            loss = self.dist.mean(loss)
            metrics = {}
            if self.dist.main:
                metrics = self._validate(stage, base)
            record = {"stage": stage, "epoch": epoch + 1, "epochs": epochs, "train_loss": round(loss, 5),
                      "val_auc": _round(metrics.get("val_auc")), "val_dice": _round(metrics.get("val_dice")),
                      "val_dice_classes": metrics.get("val_dice_classes", {}),
                      "seconds": round(time.perf_counter() - clock, 2)}
            self.history.append(record)
            if self.dist.main:
                self._keep_best(record, metrics)
            rng = self.dist.gather(rng_state())
            if self.dist.main:
                save_checkpoint(self.checkpoint_path, {
                    "stage": stage, "epoch": epoch + 1, "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "rng": rng,
                    "sampler": {**self.sampler.state_dict(), "epoch": epoch + 1},
                    "card": self.card.to_dict(), "history": self.history, "best": self.best})
            self.dist.barrier()
            self.out.metrics(**{k: v for k, v in record.items() if k != "val_dice_classes"},
                             val_dice_classes=record["val_dice_classes"], lr=optimizer.param_groups[0]["lr"])
        net.eval()

    def _stage_start(self, stage: str) -> None:
        """Downstream starts from the best upstream weights (the model folder), as the paper transfers them."""
        if stage == "downstream" and "upstream" in self.cfg.stages and (self.cfg.output / WEIGHTS_FILE).is_file():
            state = torch.load(self.cfg.output / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            self.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        if stage == "downstream":
            self.best = None  # volume-level scores are not comparable with the upstream ones

    def _upstream_epoch(self, wrapped, params, optimizer, scheduler, scaler, epoch: int, steps: int,
                        progress) -> float:
        cfg, prep = self.cfg, self.card.preprocessing
        augment = slice_augmentation(self.card.architecture.image_size)
        augment.set_random_state(seed=derived_seed(cfg.seed, epoch, self.dist.rank, 11))
        criterion, device, total = UpstreamLoss(), self.dist.device, 0.0
        every = max(1, steps // 20)
        for step, picks in enumerate(self.sampler.batches(epoch, steps)):
            hu, labels = slice_batch(self.data.training, picks, prep.context_slices, augment)
            x = window(hu, prep).to(device, non_blocking=True)
            seg_t, cls_t = class_targets(labels, self.values)
            with torch.autocast("cuda", enabled=self.cuda):
                out = wrapped(x)
            loss, _ = criterion(out, x, seg_t.to(device), cls_t.to(device))
            optimizer_step(loss, params, optimizer, scheduler, scaler)
            total += loss.item()
            if (step + 1) % every == 0 or step + 1 == steps:
                progress((step + 1) / steps, f"epoch {epoch + 1} step {step + 1}/{steps} loss {total / (step + 1):.4f}")
        return total / steps

    def _downstream_epoch(self, wrapped, params, optimizer, scheduler, scaler, epoch: int, steps: int,
                          progress) -> float:
        cfg, prep = self.cfg, self.card.preprocessing
        augment = volume_augmentation()
        augment.set_random_state(seed=derived_seed(cfg.seed, epoch, self.dist.rank, 23))
        criterion, device, total = DownstreamLoss(self.net.exclusive), self.dist.device, 0.0
        for step, v in enumerate(self.sampler.volume_order(epoch, steps)):
            hu, labels = volume_item(self.data.training[v], augment)
            x = window(neighbours(hu, prep.context_slices), prep).to(device)
            seg_t, cls_t = class_targets(labels, self.values)  # (D, K, S, S), (D, outputs)
            with torch.autocast("cuda", enabled=self.cuda):
                cls, seg = wrapped(x)
            loss, _ = criterion(cls, seg, cls_t.amax(0, keepdim=True).to(device),
                                seg_t.permute(1, 0, 2, 3)[None].to(device))
            optimizer_step(loss, params, optimizer, scheduler, scaler)
            total += loss.item()
            progress((step + 1) / steps, f"epoch {epoch + 1} volume {step + 1}/{steps} loss {total / (step + 1):.4f}")
        return total / steps

    # ------------------------------------------------------------------------------------ validation, files
    def _validate(self, stage: str, base: float) -> dict:
        if not self.data.validation:
            return {}
        self.net.eval()
        start, share = base + 0.9 / self.total_epochs, 0.1 / self.total_epochs

        def progress(fraction: float, message: str) -> None:
            self.out.progress("validate", 0.03 + 0.97 * (start + share * fraction), message)

        metrics = evaluate(self.net, self.card, self.data.validation, self.dist.device,
                           volume_scores=stage == "downstream", progress=progress)
        if metrics["val_auc"] is None and not getattr(self, "_warned_auc", False):
            self._warned_auc = True
            self.out.warning("the validation volumes are all positive or all negative: AUC is undefined")
        return metrics

    def _keep_best(self, record: dict, metrics: dict) -> None:
        """Replace the model folder's weights and card when the validation score improves."""
        known = [v for v in (record["val_auc"], record["val_dice"]) if v is not None]
        score = float(np.mean(known)) if known else -record["train_loss"]
        if self.best is not None and score <= self.best["score"]:
            return
        card_metrics = {"stage": record["stage"], "epoch": record["epoch"], "train_loss": record["train_loss"],
                        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()},
                        "history": [{k: r[k] for k in ("stage", "epoch", "train_loss", "val_auc", "val_dice")}
                                    for r in self.history]}
        self.best = {"score": score, "metrics": card_metrics}
        self.card = dataclasses.replace(self.card, metrics=card_metrics)
        save_model_into(self.net, self.card, self.cfg.output)

    def _set_rng(self, states: list[dict]) -> None:
        if len(states) == self.dist.world:
            restore_rng(states[self.dist.rank])
        else:  # resumed with another number of processes: reproducible, though not identical
            self.out.warning(f"resumed with {self.dist.world} processes instead of {len(states)}")
            seed_all(self.cfg.seed + 1000 * self.dist.rank)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def train(cfg: TrainConfig, sink: EventSink) -> dict:
    """Train a model as configured; returns the command's result (see :class:`Trainer`)."""
    cfg.output.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, sink).run()
