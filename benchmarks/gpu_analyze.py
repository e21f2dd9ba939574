"""Warm analysis on a GPU: the bundled model on a 512x512x32 head CT, in float32, with mixed precision, with
``channels_last`` and with ``torch.compile``, each the median of ``--repeats`` analyses after a warm-up.

Ready for a CUDA machine (target: <= 0.3 s per warm analysis with Grad-CAM); on a machine without one it says so
and exits 0 with nothing written, unless ``--device cpu`` asks for the same measurement on the CPU (a check that
the script still runs):

    python benchmarks/gpu_analyze.py [--model NAME|DIR] [--repeats 10] [--variants fp32,amp,channels_last,compile]

Writes ``benchmarks/results/gpu-analyze.json`` (``--output``): per variant the median and spread of the whole
``Analyzer.analyze`` call and its stages, the peak GPU memory, and the largest difference of the ICH probability
and the segmented volume from float32 (a variant that changes the result is reported, not hidden).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze import head_ct  # noqa: E402  (the same head CT as the CPU benchmark)

from SMARTNetLib.analysis.inference import Analyzer  # noqa: E402
from SMARTNetLib.contracts.files import write_json_atomic  # noqa: E402
from SMARTNetLib.model.store import load_model, resolve_model  # noqa: E402

VARIANTS = ("fp32", "amp", "channels_last", "compile")


def measure(analyzer: Analyzer, image: sitk.Image, repeats: int, autocast: bool) -> dict:
    device = analyzer.device
    context = (lambda: torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)) \
        if autocast else contextlib.nullcontext
    with context():
        analyzer.analyze(image, explain="gradcam")  # warm-up (cuDNN autotuning, compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds, stages, last = [], [], None
    for _ in range(repeats):
        clock = time.perf_counter()
        with context():
            last = analyzer.analyze(image, explain="gradcam")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - clock)
        stages.append(last.timing)
    return {"median_s": round(statistics.median(seconds), 4), "min_s": round(min(seconds), 4),
            "max_s": round(max(seconds), 4),
            "stages_median_s": {k: round(statistics.median(s[k] for s in stages), 4) for k in stages[0]},
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
            "ich_probability": round(last.ich_probability, 4), "total_volume_ml": round(last.total_volume_ml, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or folder (default: the bundled model)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (to check the script)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "gpu-analyze.json")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run on a GPU machine, or pass --device cpu to check the "
              "script)")
        return
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        image = sitk.ReadImage(str(head_ct(Path(tmp) / "head512.nii.gz")))
    results = {}
    for variant in variants:
        model, card = load_model(resolve_model(args.model), device)
        if variant == "channels_last":  # the 2D convolutions (the volume segmenter's are 3D)
            model.unet.to(memory_format=torch.channels_last)
            model.reconstruct.to(memory_format=torch.channels_last)
        if variant == "compile":
            model.unet = torch.compile(model.unet)  # the 2D network: the bulk of the work
        results[variant] = measure(Analyzer(model, card, device), image, args.repeats, autocast=variant == "amp")
        print(variant, results[variant]["median_s"], "s", flush=True)
    reference = results.get("fp32")
    if reference:
        for values in results.values():
            values["ich_probability_change"] = round(abs(values["ich_probability"] - reference["ich_probability"]),
                                                     4)
            values["volume_ml_change"] = round(abs(values["total_volume_ml"] - reference["total_volume_ml"]), 3)
    result = {"benchmark": "gpu-analyze", "device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else platform.processor() or "cpu", "torch": torch.__version__, "model": f"{card.name} {card.version}",
              "volume": {"size": list(image.GetSize()), "spacing_mm": list(image.GetSpacing())},
              "target_warm_s": 0.3, "variants": results,
              "command": "python benchmarks/gpu_analyze.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json_atomic(args.output, result)
    print(json.dumps({k: v["median_s"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
