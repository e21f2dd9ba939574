#!/usr/bin/env bash
# Rebuild the bundled model smartnet-default 2.6.0 as released (CPU, 2 cores: about 4 hours), then measure it.
#   bash scripts/train_bundled_model.sh [WORK_DIR]
# Steps 1-3 rebuild release 1.3.0 (plain synthetic data); steps 4-6 are what 2.0.0 adds.
# 1. `smartnet train --recipe default`: 200 synthetic cases (seed 2024, procedural and real-anatomy hosts),
#    20 upstream (2D multi-task) epochs and 4 downstream (volume operator) epochs.
# 2. 30 more upstream epochs of the 2D network from step 1 (learning rate 5e-4).
# 3. 10 downstream epochs with the 2D network frozen, the volume classifier reading the segmentation evidence
#    of the volume segmenter's refined (3D) segmentation (--operator-inputs segmentation-3d). Bundled with
#    float16 weights, this is release 1.3.0, the base of the next steps.
# 4. 1200 new cases in the randomised style (seed 2026, `smartnet synth --style randomised`): hard-negative
#    mimics (dense and calcified falx, tentorium bands, hyperdense venous sinuses, calcifications), scanner
#    variety (kernels, noise grain and level, HU offsets, cupping, streaks, motion, rings) and the real head
#    scaled and elastically warped. 1.3.0 had learned its own generator: on heads drawn by other code it called
#    every negative positive.
# 5. 30 upstream epochs of 100 steps of the 2D network from 1.3.0 on that data (learning rate 5e-4, ~40 min).
# 6. Downstream epochs on that data with the 2D network frozen (the volume segmenter and classifier).
# 7. float16 weights copied into SMARTNet/SMARTNetLib/bundled_models/smartnet-default with a plain-spoken card;
#    temperature scaling and the input-familiarity threshold fitted on 40 calibration volumes of the training
#    generator (scripts/calibrate_model.py); the finding classifier (2.1.0: each connected finding named from
#    anatomy, or removed as not a bleed) trained on 300 more volumes of the training generator
#    (scripts/train_finding_classifier.py, about 40 min); the subtypes' probabilities (2.6.0) from the network's and
#    the named findings, fitted on 300 volumes of the three training sources (scripts/fit_case_probability.py,
#    about 45 min); then benchmarks/evaluate_model.py on the in-generator test set,
#    the held-out generator, the real head with held-out bleeds and the real normal head.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-build/train}"
SMARTNET=".venv/bin/smartnet"
mkdir -p "$WORK"
$SMARTNET train --recipe default --output "$WORK/smartnet-default" --events > "$WORK/train.log"
$SMARTNET train --datalist "$WORK/smartnet-default/.recipe-data/datalist.json" --base-model "$WORK/smartnet-default" \
  --stage upstream --epochs 30 --lr 5e-4 --seed 1 --name smartnet-default --output "$WORK/smartnet-default-2d" \
  --events > "$WORK/train-2d.log"
$SMARTNET train --datalist "$WORK/smartnet-default/.recipe-data/datalist.json" --base-model "$WORK/smartnet-default-2d" \
  --stage downstream --downstream-epochs 10 --unfreeze-after 10 --operator-inputs segmentation-3d --lr 1e-3 --seed 0 \
  --name smartnet-default --output "$WORK/smartnet-default-3d" --events > "$WORK/train2.log"
.venv/bin/python scripts/bundle_model.py "$WORK/smartnet-default-3d" --version 1.3.0  # release 1.3.0 (float16)
$SMARTNET synth --n 1200 --seed 2026 --size small --host mixed --style randomised --validation-fraction 0.05 \
  --workers 2 --output-dir "$WORK/data-randomised" --events > "$WORK/synth-randomised.log"
$SMARTNET train --datalist "$WORK/data-randomised/datalist.json" --base-model smartnet-default \
  --stage upstream --epochs 30 --steps-per-epoch 100 --lr 5e-4 --seed 2 --name smartnet-default \
  --output "$WORK/smartnet-default-2-2d" --events > "$WORK/train-randomised-2d.log"
$SMARTNET train --datalist "$WORK/data-randomised/datalist.json" --base-model "$WORK/smartnet-default-2-2d" \
  --stage downstream --downstream-epochs 6 --steps-per-epoch 300 --unfreeze-after 100 --lr 5e-4 \
  --seed 3 --name smartnet-default --output "$WORK/smartnet-default-2-3d" --events > "$WORK/train-randomised-3d.log"
.venv/bin/python scripts/bundle_model.py "$WORK/smartnet-default-2-3d" --version 2.6.0  # 2.0.0: no finding classifier; 2.1.0: no case probability
.venv/bin/python scripts/calibrate_model.py SMARTNet/SMARTNetLib/bundled_models/smartnet-default --n 40
.venv/bin/python scripts/train_finding_classifier.py SMARTNet/SMARTNetLib/bundled_models/smartnet-default --n 300 \
  --cache "$WORK/fc-cache"
.venv/bin/python scripts/fit_case_probability.py SMARTNet/SMARTNetLib/bundled_models/smartnet-default --n 300 \
  --seed 810000 --host diverse --feature-sets both --outputs epidural intraparenchymal intraventricular subarachnoid \
  subdural --cache "$WORK/fc-cache"
.venv/bin/python benchmarks/evaluate_model.py --model smartnet-default --n 40 --n-heldout 30 --n-real-host 10 \
  --cache "$WORK/eval-cache" --update-card
