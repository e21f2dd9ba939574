"""Copy a trained model into the package as a bundled model: float16 weights, plain-spoken card.

    python scripts/bundle_model.py TRAINED_MODEL_DIR [--name smartnet-default] [--version 1.3.0] [--output DIR]

``--output`` writes the bundled form elsewhere (a candidate to measure before it replaces the bundled model).

The weights are stored as float16 (half the size; the engine loads them as float32). The card's
description states what the model was trained on and that it is not for clinical use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from SMARTNetLib.contracts.locations import BUNDLED_DIR
from SMARTNetLib.model.store import load_model, save_model

DESCRIPTION = (
    "SMART-Net hemorrhage model trained on SYNTHETIC data only (procedural heads with hard-negative mimics and "
    "scanner randomisation, and bleeds inserted into one real normal head CT). Measured on synthetic bleeds of a "
    "second, independent generator and on one real normal head; not validated on real hemorrhage. Not for "
    "clinical use. Fine-tune it on your own annotated scans (SMARTNetTraining module or "
    "`smartnet train --base-model smartnet-default`)."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trained", type=Path)
    parser.add_argument("--name", default="smartnet-default")
    parser.add_argument("--version", help="version in the card (default: the trained model's)")
    parser.add_argument("--output", type=Path, help="model folder to write (default: the package's bundled one)")
    args = parser.parse_args()
    model, card = load_model(args.trained)
    card.name, card.description, card.synthetic_only = args.name, DESCRIPTION, True
    card.version = args.version or card.version
    card.provenance["bundled_from"] = "scripts/bundle_model.py (float16 weights)"
    folder = save_model(model, card, args.output or BUNDLED_DIR / args.name, half=True)
    size = (folder / "model.pt").stat().st_size / 2**20
    print(f"bundled {card.name} {card.version} in {folder} ({size:.1f} MiB weights)")


if __name__ == "__main__":
    main()
