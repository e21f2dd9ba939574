"""``smartnet compare``: a follow-up head CT against its baseline (volume change, hematoma expansion)."""

from __future__ import annotations

import argparse
from pathlib import Path

from SMARTNetLib.client.analysis_results import sha256_of
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink, StageProgress
from SMARTNetLib.contracts.files import (
    ALIGNED_SEGMENTATION_FILE,
    COMPARISON_FIGURE_FILE,
    COMPARISON_FILE,
    REPORT_FILE,
    SEGMENTATION_FILE,
    write_json_atomic,
)

HELP = "compare a follow-up head CT with the baseline: rigid registration, volume change, hematoma expansion"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", type=Path, help="baseline CT (file or DICOM folder) or its smartnet analyze "
                                                    "output folder (reused as it is)")
    parser.add_argument("followup", type=Path, help="follow-up CT, or its smartnet analyze output folder")
    parser.add_argument("--output-dir", "-o", type=Path, required=True,
                        help="output folder: comparison.json, comparison.png, the follow-up's segmentation on the "
                             "baseline grid, and baseline/ and followup/ analyses of CT inputs")
    parser.add_argument("--model", "-m", default=None, help="model name or folder for CT inputs (default: bundled)")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")


def run(args: argparse.Namespace, sink: EventSink) -> dict:

    from SMARTNetLib.analysis.comparison import compare_labels, register_rigid, resample_onto
    from SMARTNetLib.io import outputs

    for path in (args.baseline, args.followup):
        if not path.exists():
            raise SmartNetError("file not found", path)
    scans, analyzer = {}, None
    for n, (role, path) in enumerate((("baseline", args.baseline), ("followup", args.followup))):
        progress = StageProgress(sink, role, 0.05 + 0.35 * n, 0.4 + 0.35 * n)
        if path.is_dir() and (path / REPORT_FILE).is_file():
            progress(0.0, f"reading the analysis in {path}")
            scans[role] = _reused(path)
            continue
        if analyzer is None:
            sink.progress("load", 0.0, "loading model")
            analyzer = _analyzer(args)
        scans[role] = _analyzed(analyzer, path, args.output_dir / role, progress, sink)
    classes = _classes(scans["baseline"]["report"], scans["followup"]["report"])

    sink.progress("register", 0.75, "registering the follow-up onto the baseline")
    registration = register_rigid(scans["baseline"]["ct"], scans["followup"]["ct"])
    aligned = resample_onto(scans["followup"]["labels"], scans["baseline"]["labels"], registration.transform, True)
    aligned_ct = resample_onto(scans["followup"]["ct"], scans["baseline"]["ct"], registration.transform, False)
    numbers = compare_labels(scans["baseline"]["labels"], scans["followup"]["labels"], aligned, classes)
    sink.progress("write", 0.9, "writing the comparison")
    result = {"baseline": _summary(scans["baseline"]), "followup": _summary(scans["followup"]),
              "registration": registration.describe(), **numbers,
              "files": {"comparison": COMPARISON_FILE, "figure": COMPARISON_FIGURE_FILE,
                        "followup_in_baseline": ALIGNED_SEGMENTATION_FILE}}
    from SMARTNetLib.report.comparison_figure import write_comparison_figure

    with outputs.write_errors(args.output_dir), outputs.staged_output(args.output_dir) as stage:
        outputs.write_segmentation(stage / ALIGNED_SEGMENTATION_FILE, aligned, classes)
        write_comparison_figure(stage / COMPARISON_FIGURE_FILE, scans["baseline"]["ct"], scans["baseline"]["labels"],
                                aligned_ct, aligned, classes, result)
        result["sha256"] = {name: sha256_of(stage / name)
                            for name in (ALIGNED_SEGMENTATION_FILE, COMPARISON_FIGURE_FILE)}
        write_json_atomic(stage / COMPARISON_FILE, result)
    sink.progress("done", 1.0, "comparison written")
    return {"output_dir": str(args.output_dir), **result}


def _analyzer(args: argparse.Namespace):
    from SMARTNetLib.analysis.inference import Analyzer, resolve_device
    from SMARTNetLib.model.store import load_model_cached, resolve_model

    device = resolve_device(args.device)
    model, card, _ = load_model_cached(resolve_model(args.model), device)
    return Analyzer(model, card, device)


def _analyzed(analyzer, path: Path, folder: Path, progress: StageProgress, sink: EventSink) -> dict:
    """Analyze one CT into ``folder`` exactly as ``smartnet analyze`` does."""
    from SMARTNetLib.commands.analyze import analyze_one
    from SMARTNetLib.io.volume import read_input

    progress(0.0, f"reading {path.name}")
    image, dicom = read_input(path)
    options = argparse.Namespace(format="seg", explain="gradcam", explain_subtypes=False, report=False)
    report = analyze_one(analyzer, path, image, folder, options, progress, sink, {}, dicom)
    return {"ct": image, "labels": _read_labels(folder / SEGMENTATION_FILE), "report": report,
            "folder": folder, "input": path}


def _reused(folder: Path) -> dict:
    """An earlier ``smartnet analyze`` output: its report, its checked segmentation and its input CT."""
    from SMARTNetLib.client.analysis_results import result_files, verify_files
    from SMARTNetLib.contracts.report import read_report
    from SMARTNetLib.io.volume import read_input

    report = read_report(folder / REPORT_FILE)
    verify_files(folder, report)
    files = result_files(folder, report)
    if files.segmentation is None:
        raise SmartNetError("analysis folder has no segmentation", folder)
    source = Path(report["input"])
    if not source.exists():
        raise SmartNetError(f"the analysed CT {source} is gone (comparison needs the image to register)",
                            folder / REPORT_FILE)
    image, _ = read_input(source)
    return {"ct": image, "labels": _read_labels(Path(files.segmentation)), "report": report, "folder": folder,
            "input": source}


def _read_labels(path: Path):
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise SmartNetError("cannot read the segmentation", path) from None


def _classes(baseline: dict, followup: dict):
    from SMARTNetLib.contracts.classes import classes_for

    if list(baseline["classes"]) != list(followup["classes"]):
        raise SmartNetError(f"the two analyses have different classes ({', '.join(baseline['classes'])} against "
                            f"{', '.join(followup['classes'])}): analyze both with the same model")
    return classes_for(baseline["classes"])


def _summary(scan: dict) -> dict:
    report = scan["report"]
    return {"input": str(scan["input"]), "analysis": str(scan["folder"]), "model": report.get("model"),
            "ich_probability": report["ich_probability"], "warnings": report.get("warnings", [])}


def summarize(result: dict) -> str:
    """Terminal summary: the change per subtype with blood, the total and the expansion flags."""
    lines = [f"baseline {result['baseline']['input']} -> follow-up {result['followup']['input']}"]
    reg = result["registration"]
    lines.append(f"  registration: rotation {', '.join(f'{a:.1f}' for a in reg['rotation_deg'])} deg, "
                 f"translation {', '.join(f'{t:.1f}' for t in reg['translation_mm'])} mm")
    for name, c in result["classes"].items():
        if c["baseline_ml"] or c["followup_ml"]:
            lines.append(f"  {name}: {c['baseline_ml']:.1f} -> {c['followup_ml']:.1f} mL ({c['change_ml']:+.1f} mL)")
    t = result["total"]
    lines.append(f"  total: {t['baseline_ml']:.1f} -> {t['followup_ml']:.1f} mL ({t['change_ml']:+.1f} mL); "
                 f"new blood {result['new_blood_ml']:.1f} mL")
    lines.append(f"  hematoma expansion (intraparenchymal > 6 mL or > 33%): "
                 f"{'yes' if result['hematoma_expansion'] else 'no'}; any blood: "
                 f"{'yes' if result['any_expansion'] else 'no'}")
    for role in ("baseline", "followup"):
        for warning in result[role]["warnings"]:
            lines.append(f"  {role} warning: {warning}")
    lines.append(f"  results in {result['output_dir']}")
    return "\n".join(lines)
