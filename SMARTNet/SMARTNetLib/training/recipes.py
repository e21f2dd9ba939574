"""Committed training recipes: the settings that produced a released model, so that it can be rebuilt.

``smartnet train --recipe default --output MODEL_DIR`` generates the recipe's synthetic data with
``smartnet synth`` (into ``MODEL_DIR/.recipe-data`` unless ``--datalist`` is given) and trains with the
recipe's options; options given on the command line win over the recipe's.
"""

from __future__ import annotations

RECIPES: dict[str, dict] = {
    # Step 1 of the bundled model smartnet-default (scripts/train_bundled_model.sh): synthetic data only
    # (procedural heads and bleeds inserted into the real InVesalius head), trained on CPU (2 cores) in about
    # 45 minutes. Its volume classifier read the encoder features, the preset's choice when it ran; step 2
    # trains the 2D network 30 epochs more, and step 3 retrains the volume classifier on the segmentation
    # evidence of the volume segmenter's refined segmentation.
    "default": {
        "data": {"n": 200, "seed": 2024, "size": "small", "host": "mixed"},
        "architecture": "default",
        "operator_inputs": "encoder",
        "classes": "subtypes",
        "stage": "all",
        "epochs": 20,
        "downstream_epochs": 4,
        "steps_per_epoch": None,
        "batch_size": 8,
        "lr": 1e-3,
        "val_split": 0.2,
        "seed": 0,
        "name": "smartnet-default",
    },
}
