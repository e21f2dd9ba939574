"""Where Grad-CAM's channel weights are averaged, measured on development volumes (not the test set).

For a model whose volume classifier reads the refined (3D) segmentation, Grad-CAM averages the gradient over
the whole volume (:meth:`SMARTNetLib.analysis.inference.Analyzer._explain`). This compares that with per-slice averaging
(and with the peak of the segmentation's own probability of hemorrhage) by the pointing game on synthetic
volumes from seeds that neither training (2024...) nor the test set (900000...) uses:

    python benchmarks/gradcam_weighting.py --model smartnet-default --n 60

Writes ``benchmarks/results/gradcam-weighting.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from SMARTNetLib.analysis.inference import Analyzer, _image_like
from SMARTNetLib.analysis.metrics import pointing_hit
from SMARTNetLib.analysis.preprocessing import slab_groups, slab_weights
from SMARTNetLib.io.volume import from_canonical, to_canonical
from SMARTNetLib.model.network import evidence_of_probabilities
from SMARTNetLib.model.store import load_model, resolve_model

RESULTS = Path(__file__).resolve().parent / "results"


def heat_maps(analyzer: Analyzer, ct: sitk.Image) -> dict[str, sitk.Image]:
    """Grad-CAM of the "any" output as the engine makes it (gradient averaged over the volume), the same with
    per-slice weights, and the refined segmentation's probability of any hemorrhage; each on the input grid."""
    model, card = analyzer.model, analyzer.card
    canonical = to_canonical(ct)
    groups = slab_groups(canonical.GetDepth(), canonical.GetSpacing()[2], card.preprocessing.slab_mm)
    weights = slab_weights(groups, canonical.GetDepth())
    windowed, grid = analyzer._prepare(canonical, groups)
    slices = analyzer._run_slices(windowed, lambda f: None)
    refined = analyzer._refine(slices, lambda f: None)
    maps = refined.clone().requires_grad_(True)
    with torch.enable_grad():
        logit = model.volume_classifier(evidence_of_probabilities(maps)[None])[0][0]
        (grads,) = torch.autograd.grad(logit, maps)
    heats = {"volume_weights": analyzer._explain(slices, refined, grid, weights, "gradcam", 0)}
    others = {"slice_weights": (grads.mean(dim=(2, 3), keepdim=True) * refined).sum(1).clamp(min=0),
              "segmentation_peak": model.hemorrhage_probability(refined)}
    for name, cam in others.items():  # as Analyzer._explain finishes its maps
        if weights is not None:
            cam = torch.einsum("ds,shw->dhw", weights, cam)
        cam = F.interpolate((cam / cam.max().clamp(min=1e-12))[:, None], size=(grid.size, grid.size),
                            mode="bilinear", align_corners=False)
        heats[name] = grid.restore(cam)[:, 0]
    return {name: from_canonical(_image_like(heat.numpy(), canonical), ct) for name, heat in heats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smartnet-default")
    parser.add_argument("--n", type=int, default=60, help="volumes (about 60%% positive)")
    parser.add_argument("--seed", type=int, default=910000)
    parser.add_argument("--output", type=Path, default=RESULTS / "gradcam-weighting.json")
    args = parser.parse_args()
    from SMARTNetLib.synthetic import make_case

    model, card = load_model(resolve_model(args.model), torch.device("cpu"))
    if not model.reads_refined_segmentation:
        raise SystemExit(f"{args.model}: its volume classifier does not read the refined segmentation")
    analyzer = Analyzer(model, card, torch.device("cpu"))
    clock, rows = time.perf_counter(), []
    for i in range(args.n):
        host = "real" if i % 3 == 2 else "procedural"
        ct, label, _ = make_case(args.seed + i, size="full", host=host)
        truth = sitk.GetArrayFromImage(label) > 0
        if not truth.any():
            continue
        hits = {name: pointing_hit(heat, truth) for name, heat in heat_maps(analyzer, ct).items()}
        rows.append({"seed": args.seed + i, "host": host, **hits})
        print(f"seed {args.seed + i} {host}: {hits}", flush=True)
    summary = {name: {"hits": sum(r[name] for r in rows), "positives": len(rows),
                      "rate": round(float(np.mean([r[name] for r in rows])), 4)}
               for name in ("volume_weights", "slice_weights", "segmentation_peak")}
    result = {"benchmark": "gradcam_weighting", "model": {"name": card.name, "version": card.version},
              "seeds": [args.seed, args.seed + args.n - 1], "summary": summary, "cases": rows,
              "seconds": round(time.perf_counter() - clock, 1),
              "command": f"python benchmarks/gradcam_weighting.py --model {args.model} --n {args.n}"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.output)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
