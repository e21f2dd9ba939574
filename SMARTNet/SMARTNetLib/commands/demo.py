"""``smartnet demo``: analyze the bundled sample head CT with the bundled model, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from SMARTNetLib.commands import analyze
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink
from SMARTNetLib.contracts.locations import DEFAULT_MODEL

HELP = "analyze the bundled sample head CT (synthetic hemorrhage) with the bundled model and summarize"
DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE_CT = DATA / "sample_head_ct.nii.gz"  # made by scripts/make_sample_ct.py (synthetic SDH + IPH)
SAMPLE_TRUTH = DATA / "sample_head_ct_truth.nii.gz"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", "-o", type=Path, default=Path("smartnet-demo-output"),
                        help="where to write the results (default: ./smartnet-demo-output)")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")
    parser.add_argument("--no-report", action="store_true", help="skip report.png / report.html")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    if not SAMPLE_CT.is_file():
        raise SmartNetError("the bundled sample CT is missing from this installation", SAMPLE_CT)
    parser = argparse.ArgumentParser()
    analyze.configure(parser)  # analyze's own options and defaults, so that the two never drift apart
    analyze_args = parser.parse_args([str(SAMPLE_CT), "--output-dir", str(args.output_dir), "--model", DEFAULT_MODEL,
                                      "--device", args.device, "--format", "nifti", "--explain", "gradcam",
                                      *([] if args.no_report else ["--report"])])
    result = analyze.run(analyze_args, sink)
    result["sample"] = str(SAMPLE_CT)
    result["truth_ml"] = truth_volumes()
    return result


def truth_volumes() -> dict[str, float]:
    """Volumes (mL) of each subtype in the sample's ground-truth label map."""
    import numpy as np
    import SimpleITK as sitk

    from SMARTNetLib.contracts.classes import SUBTYPES

    label = sitk.ReadImage(str(SAMPLE_TRUTH))
    counts = np.bincount(sitk.GetArrayViewFromImage(label).ravel(), minlength=6)
    ml = float(np.prod(label.GetSpacing())) / 1000
    return {c.name: round(float(counts[c.label_value] * ml), 2) for c in SUBTYPES}


def summarize(result: dict) -> str:
    import json

    case = result["cases"][0]
    report = json.loads(Path(case["report"]).read_text())
    lines = ["SMART-Net demo: the bundled sample head CT (synthetic hemorrhage)",
             f"model: {result['model']['name']} {result['model']['version']} on {result['device']}"]
    if report["model"]["synthetic_only"]:
        lines.append("note: this model was trained on synthetic data only; not for clinical use")
    lines.append(f"ICH probability: {report['ich_probability']:.2f}")
    truth = result.get("truth_ml", {})
    for name, finding in report["findings"].items():
        lines.append(f"  {name:<17} probability {finding['probability']:.2f}   volume {finding['volume_ml']:6.1f} mL"
                     f"   (truth {truth.get(name, 0.0):5.1f} mL)")
    lines.append(f"  {'total':<17} {'':<16} volume {report['total_volume_ml']:6.1f} mL"
                 f"   (truth {sum(truth.values()):5.1f} mL)")
    for warning in report["warnings"]:
        lines.append(f"warning: {warning}")
    folder = Path(case["output_dir"]).resolve()
    lines.append(f"results in {folder}:")
    lines += [f"  {name}" for name in sorted(report["files"].values())]
    lines.append("open segmentation.seg.nrrd with the sample CT in 3D Slicer, or report.html in a browser")
    return "\n".join(lines)
