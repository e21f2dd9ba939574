"""Fine-tuning: a model improves on new cases after ``smartnet train --base-model``.

The bundled model is fine-tuned through ``benchmarks/finetune.py`` (a few minutes). The first test works at
tiny scale and does not need the bundled model: its base is a tiny model trained here on domain A (a
subdural bleed on the right of a small head), then fine-tuned on domain B (an intraparenchymal bleed
anywhere in a larger head with other slice spacing and darker, noisier tissue) and measured on held-out B.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from conftest import events_of, run_cli
from SMARTNetLib.analysis.inference import Analyzer
from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model.store import load_model

FAST = ["--architecture", "tiny", "--image-size", "64", "--stage", "upstream", "--lr", "3e-3", "--seed", "1"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def phantom(seed: int, domain: str) -> tuple[sitk.Image, sitk.Image]:
    """A head CT and its label map. A: 48x40x12, 5 mm, bleed (5, subdural) fixed on the right, 65 HU.
    B: 56x56x16, 4 mm, bleed (2, intraparenchymal) of random place and size, 55 HU, in 28 HU noisy brain."""
    rng = np.random.default_rng([seed, ord(domain)])
    nx, ny, nz = (48, 40, 12) if domain == "A" else (56, 56, 16)
    z, y, x = np.meshgrid(np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    r = np.sqrt(x**2 + y**2 + (0.5 * z) ** 2)
    ct = np.full(r.shape, -1000.0)
    ct[r < 0.95] = 1200
    brain = r < 0.85
    label = np.zeros(r.shape, np.uint8)
    if domain == "A":
        ct[brain] = 35
        blob = ((x - 0.4) ** 2 + (y - 0.1) ** 2) < 0.06
        value, hu = 5, 65
    else:
        ct[brain] = 28 + rng.normal(0, 4, brain.sum())
        cx, cy = rng.uniform(-0.45, 0.45, 2)
        radius = rng.uniform(0.18, 0.3)
        blob = ((x - cx) ** 2 + (y - cy) ** 2 + (0.3 * z) ** 2) < radius**2
        value, hu = 2, 55
    label[blob & brain] = value
    ct[label > 0] = hu + rng.normal(0, 3, (label > 0).sum())
    spacing = (0.9, 0.7, 5.0) if domain == "A" else (0.8, 0.8, 4.0)
    images = []
    for array in (ct.astype(np.int16), label):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        images.append(image)
    return images[0], images[1]


def write_datalist(folder: Path, domain: str, seeds: list[int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed in seeds:
        ct, label = phantom(seed, domain)
        sitk.WriteImage(ct, str(folder / f"{domain}{seed}_ct.nii.gz"))
        sitk.WriteImage(label, str(folder / f"{domain}{seed}_label.nii.gz"))
        entries.append({"image": f"{domain}{seed}_ct.nii.gz", "label": f"{domain}{seed}_label.nii.gz"})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": entries[:-1], "validation": entries[-1:], "classes": "subtypes",
                                "synthetic": True}))
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def held_out_dice(model_dir: Path, seeds: list[int]) -> tuple[float, float]:
    """Mean Dice on held-out domain-B cases (any hemorrhage; intraparenchymal), by inference as users run it."""
    model, card = load_model(model_dir)
    analyzer = Analyzer(model, card, torch.device("cpu"))
    any_, iph = [], []
    for seed in seeds:
        ct, label = phantom(seed, "B")
        pred = sitk.GetArrayFromImage(analyzer.analyze(ct, explain="none").labels)
        truth = sitk.GetArrayFromImage(label)
        any_.append(dice(pred > 0, truth > 0))
        iph.append(dice(pred == 2, truth == 2))
    return float(np.mean(any_)), float(np.mean(iph))


def test_finetuning_improves_held_out_dice_on_a_shifted_domain(tmp_path):
    base = tmp_path / "base"
    proc = run_cli("train", "--datalist", str(write_datalist(tmp_path / "A", "A", [0, 1, 2, 3])), "--output",
                   str(base), *FAST, "--epochs", "3", "--steps-per-epoch", "15", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-2000:]

    tuned = tmp_path / "tuned"
    proc = run_cli("train", "--datalist", str(write_datalist(tmp_path / "B", "B", [10, 11, 12, 13, 14])),
                   "--base-model", str(base), "--output", str(tuned), *FAST, "--epochs", "3", "--steps-per-epoch",
                   "15", "--events", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert events_of(proc)[-1]["event"] == "result"
    assert ModelCard.load(tuned).provenance["base_model"]["path"] == str(base)

    held_out = [100, 101, 102]
    (before, before_iph), (after, after_iph) = held_out_dice(base, held_out), held_out_dice(tuned, held_out)
    # Measured when written: any 0.70 -> 0.90; intraparenchymal (a class the base never saw) 0.0 -> about 0.9.
    assert after > before + 0.1 and after > 0.6, (before, after)
    assert before_iph < 0.2 and after_iph > 0.5, (before_iph, after_iph)


def test_finetuning_the_bundled_model_learns_a_sites_subtype(tmp_path):
    """Issue 7's check on the bundled model itself, with ``benchmarks/finetune.py`` as users would run it.

    The bundled model finds blood better than it names it (README). A site corrects the
    subtype of 10 of its subdural bleeds (synthetic, in the real InVesalius head when installed) and fine-tunes
    on all of them; on 6 held-out subdural cases the Dice of the right subtype must rise, without losing the
    bleeds themselves.
    """
    result_file = tmp_path / "finetune.json"
    command = [sys.executable, str(BENCHMARKS / "finetune.py"), "--subtype", "subdural", "--n-train", "10",
               "--n-test", "6", "--epochs", "12", "--downstream-epochs", "1", "--lr", "1e-3", "--val-split", "0",
               "--workdir", str(tmp_path / "work"), "--output", str(result_file)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(result_file.read_text())
    assert result["base_model"]["name"] == "smartnet-default" and result["judged_on"] == "dice_subtype"
    before, after = result["before"], result["after"]
    # Measured with release 1.3.0: subdural Dice 0.42 -> 0.63 (up in each of the 5 cases it finds), any-hemorrhage
    # Dice 0.60 -> 0.61, 46 s of fine-tuning (1.2.0, which knew subdurals less: 0.05 -> 0.52).
    assert after["dice_subtype"] > before["dice_subtype"] + 0.1, (before["dice_subtype"], after["dice_subtype"])
    assert after["dice_any"] > before["dice_any"] - 0.05, (before["dice_any"], after["dice_any"])
