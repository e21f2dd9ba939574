"""Where a warm analysis spends its time: the same head CT as ``analyze.py``, analysed in this process as the served
engine does it (``analyze_one``: analysis, clinical measures, outputs), once to warm up and once under cProfile.

Writes ``benchmarks/results/profile-analysis.json``: the call's wall time and stages (report.json's ``timing_s``),
the functions with the most cumulative time on the main thread, and the parts that run beside it or inside a
stage, each timed alone on the same head: the midline's head frame (``find_head_anatomy``, in the anatomy worker
during an analysis) and its skull-symmetry step, and the finding classifier's features of what was segmented; and
the head frame's smoothing, of every level or of the levels its searches read, in CPU seconds, on this head and on
the bundled sample (a real head).

    python benchmarks/profile_analysis.py [--model NAME|DIR] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the analysis commands set it, before torch loads
sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze import head_ct  # noqa: E402  (the same head CT as the analysis benchmark)

from SMARTNetLib.contracts.files import write_json_atomic  # noqa: E402


def best_of(repeats: int, work) -> float:
    """The shortest of ``repeats`` timed calls of ``work()``, in seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return round(min(seconds), 3)


def cpu_median(repeats: int, work) -> float:
    """The median CPU time (this process, all threads) of ``repeats`` calls of ``work()``: steadier than wall time
    on a shared machine."""
    seconds = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        seconds.append(time.process_time() - start)
    return round(float(sorted(seconds)[len(seconds) // 2]), 3)


def frame_smoothing(image) -> dict:
    """The head frame's smoothing on one head: every level of the plane frame, against the levels the searches
    read (``midline._smoothed``, what the analysis does)."""
    import SimpleITK as sitk
    from scipy import ndimage

    from SMARTNetLib.analysis import midline

    anatomy = midline.find_head_anatomy(image)
    frame = sitk.GetArrayFromImage(anatomy.frame)
    depth = anatomy.image.depth
    smoothed = midline._smoothed(frame, depth)
    return {"levels": int(frame.shape[0]), "levels_smoothed": int(smoothed.any(axis=(1, 2)).sum()),
            "all_levels_cpu_s": cpu_median(5, lambda: ndimage.gaussian_filter(frame, sigma=midline.SMOOTH_SIGMA)),
            "searched_levels_cpu_s": cpu_median(5, lambda: midline._smoothed(frame, depth))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smartnet-default", help="model name or folder")
    parser.add_argument("--top", type=int, default=25, help="functions listed")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "profile-analysis.json")
    args = parser.parse_args()

    import SimpleITK as sitk

    from SMARTNetLib.analysis import midline
    from SMARTNetLib.analysis.inference import Analyzer, resolve_device
    from SMARTNetLib.commands.analyze import analyze_one
    from SMARTNetLib.contracts.events import TerminalSink
    from SMARTNetLib.io.volume import read_input
    from SMARTNetLib.model import finding_classifier
    from SMARTNetLib.model.store import load_model, resolve_model

    device = resolve_device("cpu")
    model, card = load_model(resolve_model(args.model), device)
    analyzer = Analyzer(model, card, device)
    options = argparse.Namespace(explain="gradcam", explain_subtypes=False, format="seg", report=False)
    sink = TerminalSink(bar=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ct_path = head_ct(tmp / "head512.nii.gz")

        def analyze(folder: Path) -> tuple[float, dict]:
            image, dicom = read_input(ct_path)
            start = time.perf_counter()
            report = analyze_one(analyzer, ct_path, image, folder, options, lambda f, m: None, sink, {}, dicom)
            return round(time.perf_counter() - start, 3), report

        analyze(tmp / "warm-up")
        seen = {}  # the finding classifier's inputs in the profiled call, to time its features alone
        classifier = model.finding_classifier
        name = classifier.name

        def recording(*inputs):
            seen["name"] = inputs
            return name(*inputs)

        classifier.name = recording
        profile = cProfile.Profile()
        profile.enable()
        wall, report = analyze(tmp / "profiled")
        profile.disable()
        classifier.name = name
        image = sitk.ReadImage(str(ct_path))

    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][3])[: args.top]
    top = [{"function": f"{Path(file).name}:{line}({name})", "calls": calls, "cumulative_s": round(cumulative, 3),
            "own_s": round(own, 3)} for (file, line, name), (_, calls, own, cumulative, _) in rows]

    hu, labels, confidence, spacing, _ = seen["name"]
    components, count = finding_classifier.find_components(labels)
    alone = {
        "find_head_anatomy_s": best_of(3, lambda: midline.find_head_anatomy(image)),
        "symmetry_plane_s": best_of(3, lambda: midline.symmetry_plane(image)),
        "finding_features_s": best_of(3, lambda: finding_classifier.component_features(
            hu, labels, confidence, spacing, components, count)),
        "finding_features_findings": int(count),  # what the segmentation found before the classifier named it
        "finding_features_voxels": int((labels > 0).sum()),
    }
    smoothing = {"geometric_head": frame_smoothing(image), "bundled_sample": frame_smoothing(sitk.ReadImage(
        str(Path(__file__).resolve().parents[1] / "SMARTNet" / "SMARTNetLib" / "data" / "sample_head_ct.nii.gz")))}
    result = {"benchmark": "profile-analysis", "model": args.model, "cpus": os.cpu_count(),
              "warm_call_s": wall, "stages_s": report["timing_s"], "findings_ml": report["total_volume_ml"],
              "timed_alone": alone, "head_frame_smoothing": smoothing, "top_cumulative_main_thread": top,
              "command": "python benchmarks/profile_analysis.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json_atomic(args.output, result)
    print(json.dumps({k: result[k] for k in ("warm_call_s", "stages_s", "timed_alone")}))


if __name__ == "__main__":
    main()
