"""Model folders: where they live, listing them, loading and saving them.

Bundled models ship inside the package (``SMARTNetLib/bundled_models/<name>``); user models live in
``$SMARTNET_HOME/models/<name>`` (default ``~/.smartnet/models``). A model folder holds ``model.json``
(:class:`~SMARTNetLib.contracts.model_card.ModelCard`) and ``model.pt`` (a ``state_dict``), and ``findings.pt`` (the
finding classifier's ``state_dict``) when the card has ``findings``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.locations import BUNDLED_DIR, DEFAULT_MODEL, user_models_dir
from SMARTNetLib.contracts.model_card import CARD_FILE, WEIGHTS_FILE, ModelCard

if TYPE_CHECKING:
    import torch

    from SMARTNetLib.model.network import SmartNet

@dataclass(frozen=True)
class ModelInfo:
    """A model found on disk, described by its card (weights are not loaded)."""

    name: str
    version: str
    path: Path
    classes: tuple[str, ...]
    description: str
    synthetic_only: bool
    bundled: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "path": str(self.path), "classes": list(self.classes),
                "description": self.description, "synthetic_only": self.synthetic_only, "bundled": self.bundled}


def list_models() -> list[ModelInfo]:
    """Bundled models first, then the user's; folders without a valid card are skipped."""
    found = []
    for root, bundled in ((BUNDLED_DIR, True), (user_models_dir(), False)):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file()):
            try:
                card = ModelCard.load(folder)
            except SmartNetError:
                continue
            found.append(ModelInfo(card.name, card.version, folder, card.classes, card.summary,
                                   card.synthetic_only, bundled))
    return found


def resolve_model(name_or_dir: str | None) -> Path:
    """The folder of a model.

    Args:
        name_or_dir: a model name (user models shadow bundled ones), a model folder, or None for the default.

    Returns:
        The model folder.

    Raises:
        SmartNetError: no such model (the message lists the known ones).
    """
    if name_or_dir is None:
        name_or_dir = DEFAULT_MODEL
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    for root in (user_models_dir(), BUNDLED_DIR):
        if (root / name_or_dir / CARD_FILE).is_file():
            return root / name_or_dir
    known = ", ".join(sorted({m.name for m in list_models()})) or "none installed"
    raise SmartNetError(f"unknown model (known models: {known}; or pass a model folder)", name_or_dir)


def load_model(folder: str | Path, device: str | torch.device = "cpu",
               torch_only: bool = True) -> tuple[SmartNet, ModelCard]:
    """Build the network from the card and load its weights safely (``weights_only=True``).

    Args:
        folder: a model folder (``model.json``, ``model.pt``, and ``findings.pt`` when the card has findings).
        device: where the network goes.
        torch_only: build the network without MONAI (:mod:`.layers`: the same weights and outputs, and no
            MONAI import at analysis); ``False`` builds MONAI's blocks, as training does.

    Returns:
        The network in eval mode (with its finding classifier when the card has one) and its card.

    Raises:
        SmartNetError: naming the file, for a missing or foreign weights file or weights that do not match
            the card.
    """
    import torch

    from SMARTNetLib.model.network import SmartNet

    folder = Path(folder)
    card = ModelCard.load(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise SmartNetError(f"model folder has no {WEIGHTS_FILE}", folder)
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files: one line only
            warnings.simplefilter("ignore")
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise many kinds of errors
        if "Weights only load failed" in str(err):
            raise SmartNetError("cannot load weights: not a plain PyTorch state dict (refused by the safe loader, "
                                "which never runs code from the file)", weights) from None
        raise SmartNetError(f"cannot load weights: {str(err).splitlines()[0][:150]}", weights) from None
    if not isinstance(state, dict):
        raise SmartNetError("weights file is not a state_dict", weights)
    model = SmartNet(card, torch_only=torch_only)
    _check_state(model, state, folder)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    if card.findings:
        from SMARTNetLib.model.finding_classifier import FindingClassifier

        model.finding_classifier = FindingClassifier.load(folder, card.findings)
    return model.to(device).eval(), card


_LOADED: dict[tuple, tuple] = {}  # the one model a long-lived engine keeps (smartnet serve)


def load_model_cached(folder: str | Path, device: str | torch.device = "cpu") -> tuple[SmartNet, ModelCard, bool]:
    """:func:`load_model`, keeping the last model loaded: the same folder (unchanged files) on the same device
    comes back at once, another model replaces it. The third value says whether it came from the cache."""
    folder = Path(folder).resolve()
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir()) if p.is_file())
    key = (str(folder), str(device), stamp)
    if key in _LOADED:
        return (*_LOADED[key], True)
    _LOADED.clear()  # one model at a time: free the previous one first
    model, card = load_model(folder, device)
    _LOADED[key] = (model, card)
    return model, card, False


def _check_state(model: SmartNet, state: dict, folder: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        example = (shapes or missing or unexpected)[0]
        raise SmartNetError(f"weights do not match the model card ({len(missing)} missing, {len(unexpected)} "
                            f"unexpected, {len(shapes)} of another shape, e.g. {example})", folder)


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``folder``; when the block succeeds it replaces ``folder`` by renames, else it
    is removed. Readers see the old folder or the new one, never a half-written one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes the folder private; a model folder is an ordinary one
    try:
        yield tmp
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_model(model: SmartNet, card: ModelCard, folder: str | Path, half: bool = False) -> Path:
    """Write ``model.json`` and ``model.pt`` atomically (see :func:`staged_folder`).

    ``half`` stores floating-point weights as float16 (half the size; loading restores float32).
    """
    import torch

    folder = Path(folder)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
             for k, v in model.state_dict().items()}
    findings = model.finding_classifier if card.findings else None
    with staged_folder(folder) as tmp:
        torch.save(state, tmp / WEIGHTS_FILE)
        if findings is not None:
            from SMARTNetLib.model.finding_classifier import FINDINGS_FILE

            torch.save(findings.net.state_dict(), tmp / card.findings.get("file", FINDINGS_FILE))
        card.save(tmp)
    return folder
