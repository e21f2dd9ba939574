"""``smartnet demo``: analyze the bundled sample head CT with the bundled model, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SmartNetError
from ..events import EventSink
from ..models import DEFAULT_MODEL
from . import analyze

HELP = "analyze the bundled sample head CT (synthetic hemorrhage) with the bundled model and summarize"
SAMPLE_CT = Path(__file__).resolve().parent.parent / "data" / "sample_head_ct.nii.gz"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", "-o", type=Path, default=Path("smartnet-demo-output"),
                        help="where to write the results (default: ./smartnet-demo-output)")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")
    parser.add_argument("--no-report", action="store_true", help="skip report.png / report.html")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    if not SAMPLE_CT.is_file():
        raise SmartNetError("the bundled sample CT is missing from this installation", SAMPLE_CT)
    analyze_args = argparse.Namespace(
        inputs=[str(SAMPLE_CT)], output_dir=args.output_dir, model=DEFAULT_MODEL, device=args.device,
        format="nifti", explain="gradcam", explain_subtypes=False, report=not args.no_report)
    result = analyze.run(analyze_args, sink)
    result["sample"] = str(SAMPLE_CT)
    return result


def summarize(result: dict) -> str:
    import json

    case = result["cases"][0]
    report = json.loads(Path(case["report"]).read_text())
    lines = ["SMART-Net demo: the bundled sample head CT (synthetic hemorrhage)",
             f"model: {result['model']['name']} {result['model']['version']} on {result['device']}"]
    if report["model"]["synthetic_only"]:
        lines.append("note: this model was trained on synthetic data only; not for clinical use")
    lines.append(f"ICH probability: {report['ich_probability']:.2f}")
    for name, finding in report["findings"].items():
        lines.append(f"  {name:<17} probability {finding['probability']:.2f}   volume {finding['volume_ml']:6.1f} mL")
    lines.append(f"  {'total':<17} {'':<16} volume {report['total_volume_ml']:6.1f} mL")
    for warning in report["warnings"]:
        lines.append(f"warning: {warning}")
    folder = Path(case["output_dir"]).resolve()
    lines.append(f"results in {folder}:")
    lines += [f"  {name}" for name in sorted(report["files"].values())]
    lines.append("open segmentation.seg.nrrd with the sample CT in 3D Slicer, or report.html in a browser")
    return "\n".join(lines)
