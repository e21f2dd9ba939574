"""What every trainer (``loop.Trainer``, ``pretrain.Pretrainer``) shares: checkpoints and resuming, random-number
states, atomic model updates, optimizer steps, the learning-rate schedule and which modules train."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.files import atomic_path
from SMARTNetLib.contracts.model_card import CARD_FILE, WEIGHTS_FILE, ModelCard
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.model.store import save_model

CHECKPOINT = "checkpoints/last.pt"  # inside a run's output folder
SLICES_PER_VOLUME = 8  # default upstream epoch: this many sampled slices per training volume


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a run's checkpoint atomically (a crash during the write keeps the previous one)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, output: Path, resume: bool, kind: str) -> dict | None:
    """The checkpoint to resume from (None for a new run); refuses to overwrite a run without ``resume``."""
    if not resume:
        if path.exists():
            raise SmartNetError(f"this folder already holds a {kind} run; use --resume to continue it, or choose "
                                "another --output", output)
        return None
    if not path.is_file():
        raise SmartNetError("nothing to resume: no checkpoint in this folder", output)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise many kinds of errors
        raise SmartNetError(f"cannot read the checkpoint: {str(err).splitlines()[0][:150]}", path) from None


def optimizer_step(loss, params, optimizer, scheduler, scaler) -> None:
    """Backward (scaled on CUDA), gradient clipping at norm 5, optimizer and scheduler step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def save_model_into(net: SmartNet, card: ModelCard, folder: Path) -> None:
    """:func:`save_model` into a staging folder, then the two files moved into ``folder`` (keeping checkpoints/)."""
    staging = folder / ".best"
    save_model(net, card, staging)
    os.replace(staging / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    os.replace(staging / CARD_FILE, folder / CARD_FILE)
    staging.rmdir()


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                       cached], "python": _py_state(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def set_phase(net: SmartNet, modules: list[nn.Module]) -> list[nn.Parameter]:
    """Only ``modules`` train (gradients and train mode, e.g. BatchNorm statistics); the rest is frozen in eval."""
    net.requires_grad_(False)
    net.eval()
    for m in modules:
        m.requires_grad_(True)
        m.train()
    return [p for p in net.parameters() if p.requires_grad]


def lr_lambda(total: int):
    """Linear warm-up (5% of the steps) then cosine decay to 5% of the learning rate."""
    warm = max(1, total // 20)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
