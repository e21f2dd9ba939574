"""``smartnet analyze``: hemorrhage analysis of CT volumes with a SMART-Net model."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from SMARTNetLib.client.analysis_results import sha256_of
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import AnalyzedCase, AnalyzeResult, EventSink, StageProgress
from SMARTNetLib.contracts.files import (
    DICOM_SEG_FILE,
    IMAGE_SUFFIXES,
    LABELS_NIFTI_FILE,
    REPORT_FILE,
    SEGMENTATION_FILE,
    SUMMARY_CSV_FILE,
    SUMMARY_JSON_FILE,
    activation_file,
    image_stem,
    write_json_atomic,
    write_text_atomic,
)
from SMARTNetLib.contracts.report import FORMAT_VERSION, Familiarity, Report, ReportModel, write_report

EXPLAIN_METHODS = ("gradcam", "hirescam", "activation", "none")  # inference.EXPLAIN_METHODS, without torch
HELP = "analyze head CT volumes (NIfTI, NRRD, MHA files or DICOM folders) for intracranial hemorrhage"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="CT file or DICOM folder (several allowed)")
    parser.add_argument("--inputs-from", type=Path, metavar="LIST",
                        help="more inputs: a text file (one path a line), a MONAI datalist JSON (its images) or a "
                             "folder (its volume files and DICOM sub-folders). Several inputs also write "
                             "summary.csv and summary.json; under torchrun each process takes its share")
    parser.add_argument("--output-dir", "-o", type=Path,
                        help="output folder (one sub-folder per input when there are several); required unless "
                             "--list-series")
    parser.add_argument("--list-series", action="store_true",
                        help="list the image series of each DICOM folder and which one would be analyzed; no analysis")
    parser.add_argument("--model", "-m", default=None, help="model name or model folder (default: the bundled model)")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu or cuda")
    parser.add_argument("--format", choices=("seg", "nifti", "dicom-seg"), default="seg",
                        help="'nifti' also writes labels.nii.gz (1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH); 'dicom-seg' "
                             "(DICOM folder inputs) also writes segmentation.dcm, a DICOM SEG referencing the series")
    parser.add_argument("--explain", choices=EXPLAIN_METHODS, default="gradcam",
                        help="activation map written as activation.nrrd: gradcam (default), hirescam (Grad-CAM "
                             "without averaging the gradient: sharper), activation (SMART-Net's) or none")
    parser.add_argument("--explain-subtypes", action="store_true",
                        help="also write one Grad-CAM map per subtype (activation-<subtype>.nrrd)")
    parser.add_argument("--report", action="store_true", help="also write report.png and report.html")


def run(args: argparse.Namespace, sink: EventSink) -> AnalyzeResult | dict:
    inputs = [Path(p) for p in args.inputs] + (listed_inputs(args.inputs_from) if args.inputs_from else [])
    if not inputs:
        raise SmartNetError("no input: give CT files or DICOM folders, or --inputs-from")
    for path in inputs:
        if not path.exists():
            raise SmartNetError("file not found", path)
    if args.list_series:
        return list_series(inputs)
    if args.output_dir is None:
        raise SmartNetError("--output-dir is required (unless --list-series)")
    for path in inputs:
        if args.format == "dicom-seg" and importlib.util.find_spec("highdicom") is None:
            raise SmartNetError("--format dicom-seg needs the highdicom package: pip install 'smartnet-slicer[dicom]'")
        if args.format == "dicom-seg" and not path.is_dir():
            raise SmartNetError("--format dicom-seg needs a DICOM folder as input (a DICOM SEG references its "
                                "series)", path)
    case_dirs = case_folders(inputs, args.output_dir)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        result = _run_distributed(inputs, case_dirs, args, sink)
    else:
        result = analyze_cases(inputs, case_dirs, args, sink)
    if len(inputs) > 1 and int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone
        write_summary(args.output_dir, result["cases"])
    return result


def _run_distributed(inputs: list[Path], case_dirs: list[Path], args: argparse.Namespace,
                     sink: EventSink) -> AnalyzeResult:
    """Under ``torchrun``: rank r analyses inputs r, r + world, ...; rank 0 gathers every case (in input order)
    and alone writes events on stdout and the summary."""
    from SMARTNetLib.training.distributed import setup, teardown

    dist = setup(args.device)
    if not dist.main:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    mine = list(range(dist.rank, len(inputs), dist.world))
    args = argparse.Namespace(**{**vars(args), "device": str(dist.device)})
    outcome: tuple[AnalyzeResult | None, tuple[str, str | None] | None]
    try:
        outcome = (analyze_cases([inputs[i] for i in mine], [case_dirs[i] for i in mine], args, sink)
                   if mine else None, None)
    except SmartNetError as err:
        outcome = (None, (err.problem, str(err.path) if err.path else None))
    gathered = dist.gather(outcome)
    teardown(dist)
    for rank, (_, error) in enumerate(gathered):
        if error is not None:
            raise SmartNetError(f"{error[0]} (rank {rank})", error[1])
    results = [r for r, _ in gathered if r is not None]
    by_folder = {case["output_dir"]: case for r in results for case in r["cases"]}
    cases = [by_folder[str(folder)] for folder in case_dirs]
    minutes = max(len(r["cases"]) / max(r["volumes_per_minute"], 1e-9) for r in results)
    return AnalyzeResult(model=results[0]["model"], device=results[0]["device"], cases=cases,
                         model_reused=all(r["model_reused"] for r in results),
                         volumes_per_minute=round(len(cases) / max(minutes, 1e-9), 2))


def analyze_cases(inputs: list[Path], case_dirs: list[Path], args: argparse.Namespace,
                  sink: EventSink) -> AnalyzeResult:
    """Analyse ``inputs`` into ``case_dirs`` with one model, the next input read on a thread meanwhile."""
    from SMARTNetLib.analysis import anatomy_worker
    from SMARTNetLib.analysis.engine_process import retain_freed_memory
    from SMARTNetLib.io.volume import read_input

    anatomy_worker.start(idle=len(inputs) == 1)  # its start-up overlaps reading and the model's
    if len(inputs) > 1:
        retain_freed_memory()  # each volume reuses the last one's memory

    def read(path: Path):
        """The input, and its head frame set under way in the anatomy worker."""
        image, dicom = read_input(path)
        return image, dicom, anatomy_worker.submit(image)

    clock = time.perf_counter()
    first = read(inputs[0])  # a bad first input fails before the model is loaded; its head frame meanwhile
    first_read = round(time.perf_counter() - clock, 3)

    from SMARTNetLib.analysis.inference import Analyzer, resolve_device
    from SMARTNetLib.model.store import load_model_cached, resolve_model

    clock = time.perf_counter()
    sink.progress("load", 0.0, "loading model")
    device = resolve_device(args.device)
    model, card, cached = load_model_cached(resolve_model(args.model), device)
    load_seconds = round(time.perf_counter() - clock, 3)
    analyzer = Analyzer(model, card, device)

    cases = []
    share = 0.95 / len(inputs)
    batch_clock = time.perf_counter()
    # the next input is read on a thread while this one is analysed (at most two volumes in memory)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="smartnet-read") as reader:
        upcoming = None
        for n, (path, folder) in enumerate(zip(inputs, case_dirs)):
            start = 0.05 + n * share
            progress = StageProgress(sink, "analyze", start, start + share)
            clock = time.perf_counter()
            progress(0.0, f"reading {path.name}")
            image, dicom, anatomy = first if n == 0 else upcoming.result()  # a bad input fails here, in its turn
            first = None
            timing = {"load_model": load_seconds,
                      "read": first_read if n == 0 else round(time.perf_counter() - clock, 3)}  # waited for
            upcoming = reader.submit(read, inputs[n + 1]) if n + 1 < len(inputs) else None
            report = analyze_one(analyzer, path, image, folder, args, progress, sink, timing, dicom, anatomy)
            del image, dicom, anatomy
            cases.append(AnalyzedCase(
                input=str(path), output_dir=str(folder), report=str(folder / REPORT_FILE),
                ich_probability=report["ich_probability"], total_volume_ml=report["total_volume_ml"],
                findings={k: v["volume_ml"] for k, v in report["findings"].items() if v["volume_ml"] > 0},
                warnings=report["warnings"], clinical=report["clinical"]))
    minutes = (time.perf_counter() - batch_clock) / 60
    sink.progress("done", 1.0, f"{len(cases)} volume(s) analyzed")
    return AnalyzeResult(model={"name": card.name, "version": card.version}, device=str(device), cases=cases,
                         model_reused=cached, volumes_per_minute=round(len(cases) / max(minutes, 1e-9), 2))


def analyze_one(analyzer, path: Path, image, folder: Path, args: argparse.Namespace, progress: StageProgress,
                sink: EventSink, timing: dict[str, float], dicom=None, anatomy=None) -> Report:
    """Analyze and write one volume; returns its report. ``dicom``: what was read from a DICOM folder;
    ``anatomy``: its head frame already under way (:func:`anatomy_worker.submit`), else started here."""
    from SMARTNetLib.analysis.clinical_measures import clinical_measures
    from SMARTNetLib.io import outputs

    analysis = analyzer.analyze(image, explain=args.explain, explain_classes=args.explain_subtypes,
                                progress=lambda f, m: progress(0.05 + 0.8 * f, m), find_anatomy=True,
                                anatomy=anatomy)
    if dicom is not None:
        analysis.warnings[:0] = dicom.warnings  # series choice, tilt and gaps first
    for warning in analysis.warnings:
        sink.warning(f"{path}: {warning}")

    clock = time.perf_counter()
    progress(0.86, "clinical measures")
    clinical = clinical_measures(analysis.labels, analysis.findings,
                                 {c.name: c.label_value for c in analyzer.classes}, image, analysis.anatomy)
    timing["clinical"] = round(time.perf_counter() - clock, 3)

    clock = time.perf_counter()
    progress(0.9, "writing results")
    card = analyzer.card
    files = {"segmentation": SEGMENTATION_FILE, "report": REPORT_FILE}
    with outputs.write_errors(folder), outputs.staged_output(folder) as stage:
        outputs.write_segmentation(stage / SEGMENTATION_FILE, analysis.labels, analyzer.classes)
        if args.format == "nifti":
            outputs.write_image(stage / LABELS_NIFTI_FILE, analysis.labels)
            files["labels"] = LABELS_NIFTI_FILE
        elif args.format == "dicom-seg":
            import SimpleITK as sitk

            from SMARTNetLib.io.dicom_seg import write_dicom_seg

            try:
                if dicom.resampled:
                    raise SmartNetError("no DICOM SEG written: the slices were resampled onto a regular grid, so "
                                        "frames on the source images would not match the analysis")
                write_dicom_seg(stage / DICOM_SEG_FILE, sitk.GetArrayViewFromImage(analysis.labels),
                                analyzer.classes, list(dicom.series.files), (card.name, card.version))
                files["dicom_seg"] = DICOM_SEG_FILE
            except SmartNetError as err:  # e.g. nothing found: the other outputs stand
                analysis.warnings.append(err.problem)
                sink.warning(f"{path}: {err.problem}")
        for target, heat in analysis.activations.items():
            key, name = activation_file(target, card.output_names[0])
            outputs.write_image(stage / name, heat)
            files[key] = name
        report = Report(
            format_version=FORMAT_VERSION,
            input=str(Path(path).absolute()),  # readers (smartnet view, compare) may run elsewhere
            model=ReportModel(name=card.name, version=card.version, description=card.summary,
                              synthetic_only=card.synthetic_only,
                              finding_classifier=analyzer.model.finding_classifier is not None),
            device=str(analyzer.device),
            ich_probability=round(analysis.ich_probability, 4),
            classes=list(card.classes),
            findings=analysis.findings,
            total_volume_ml=round(analysis.total_volume_ml, 3),
            slice_probabilities=analysis.slice_probabilities,
            slice_order=analysis.slice_order,
            explain=args.explain,
            timing_s={**timing, **analysis.timing},
            warnings=analysis.warnings,
            familiarity=Familiarity(reconstruction_error=analysis.familiarity,
                                    threshold=card.familiarity.get("threshold")),
            input_series=dicom.report() if dicom is not None else None,
            clinical=clinical,
            files=files,
            sha256={},
        )
        if args.report:
            from SMARTNetLib.report.visual_report import write_visual_report

            heat = next(iter(analysis.activations.values()), None)
            written = write_visual_report(image, analysis.labels, heat, report, stage, warnings=report["warnings"])
            files.update({k: Path(v).name for k, v in written.items()})
        report["timing_s"]["write"] = round(time.perf_counter() - clock, 3)
        # readers check these before handing a file to a C++ reader (a damaged .nrrd aborts Slicer's)
        report["sha256"] = {name: sha256_of(stage / name) for name in sorted(set(files.values()))
                            if name != REPORT_FILE and (stage / name).is_file()}
        write_report(stage / REPORT_FILE, report)
    progress(1.0, f"{path.name} done")
    return report


def listed_inputs(source: Path) -> list[Path]:
    """The inputs named by ``--inputs-from``: a text file (one path a line, ``#`` comments), a MONAI datalist
    (every ``image``), or a folder (its volume files and its sub-folders, as DICOM folders). Relative paths are
    relative to the list's folder; segmentations (``.seg.nrrd``) in a folder are not inputs."""
    if not source.exists():
        raise SmartNetError("file not found", source)
    if source.is_dir():
        return sorted(p for p in source.iterdir() if (p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
                                                      and not p.name.lower().endswith(".seg.nrrd"))
                      or (p.is_dir() and not p.name.startswith(".")))
    text = source.read_text(encoding="utf-8", errors="replace")
    if source.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SmartNetError(f"not a JSON datalist ({err})", source) from None
        if not isinstance(data, dict):
            raise SmartNetError('not a MONAI datalist: expected {"training": [{"image": ...}], ...}', source)
        names = [entry["image"] for key in ("training", "validation", "testing", "test")
                 for entry in data.get(key) or [] if isinstance(entry, dict) and entry.get("image")]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise SmartNetError("the input list is empty", source)
    return [Path(n) if Path(n).is_absolute() else source.parent / n for n in names]


def write_summary(output_dir: Path, cases: list[AnalyzedCase]) -> None:
    """``summary.csv`` and ``summary.json``: one row per analysed case, in input order."""
    classes = sorted({name for case in cases for name in case["findings"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["input", "output_dir", "ich_probability", "total_volume_ml",
                     *[f"{c}_ml" for c in classes], "warnings"])
    for case in cases:
        writer.writerow([case["input"], case["output_dir"], case["ich_probability"], case["total_volume_ml"],
                         *[case["findings"].get(c, 0.0) for c in classes], " | ".join(case["warnings"])])
    write_text_atomic(output_dir / SUMMARY_CSV_FILE, buffer.getvalue())
    write_json_atomic(output_dir / SUMMARY_JSON_FILE, {"cases": cases})


def case_folders(inputs: list[Path], output_dir: Path) -> list[Path]:
    """One input writes into ``output_dir``; several write into ``output_dir/<input name>`` each."""
    if len(inputs) == 1:
        return [output_dir]
    folders, seen = [], set()
    for path in inputs:
        name = image_stem(path.name) if path.is_file() else path.name
        unique, n = name or "case", 2
        while unique in seen:
            unique, n = f"{name}-{n}", n + 1
        seen.add(unique)
        folders.append(output_dir / unique)
    return folders


def clinical_lines(clinical: dict) -> list[str]:
    """ABC/2 and the ICH score's imaging items, for the terminal summary."""
    lines = [f"  ABC/2 of intraparenchymal finding {n}: {f['a_mm']:.0f} x {f['b_mm']:.0f} x {f['c_mm']:.0f} mm / 2 = "
             f"{f['abc2_ml']:.1f} mL (C from all slices: {f['abc2_all_slices_ml']:.1f} mL; segmented "
             f"{f['segmented_ml']:.1f} mL)"
             for n, f in enumerate(clinical.get("abc2_intraparenchymal") or [], start=1)]
    from SMARTNetLib.client.analysis_results import location_text, midline_shift_text, yes_no

    lines += [f"  Location of intraparenchymal finding {n}: {location_text(f)}"
              for n, f in enumerate(clinical.get("location_intraparenchymal") or [], start=1)]
    if clinical.get("midline_shift"):
        lines.append(f"  Midline shift: {midline_shift_text(clinical['midline_shift'])}")
    items = clinical.get("ich_score_imaging") or {}
    if items.get("volume_ge_30_ml") is not None:
        lines.append(f"  ICH score imaging items: volume >= 30 mL {yes_no(items['volume_ge_30_ml'])}, "
                     f"intraventricular blood {yes_no(items.get('intraventricular_blood'))}, "
                     f"infratentorial origin {yes_no(items.get('infratentorial_origin'))}")
    return lines


def list_series(inputs: list[Path]) -> dict:
    """The image series of each DICOM folder, the one that would be analyzed first."""
    from SMARTNetLib.io.dicom_series import choose_series, find_series

    folders = []
    for path in inputs:
        if not path.is_dir():
            raise SmartNetError("--list-series needs a DICOM folder", path)
        series = find_series(path)
        chosen = choose_series(series) if series else None
        folders.append({"input": str(path), "series": [{**s.summary(), "chosen": s is chosen} for s in
                                                        sorted(series, key=lambda s: s is not chosen)]})
    return {"series_lists": folders}


def summarize(result: dict) -> str:
    """Terminal summary: one block per case (or per folder for --list-series)."""
    if "series_lists" in result:
        lines = []
        for folder in result["series_lists"]:
            lines.append(f"{folder['input']}: {len(folder['series'])} image series")
            for s in folder["series"]:
                mark = "*" if s["chosen"] else " "
                lines.append(f" {mark} {s['description'] or '(no description)'}: {s['images']} images, "
                             f"{s['modality'] or '?'}, {s['orientation'] or '?'}"
                             f"{', localizer' if s['localizer'] else ''} [{s['series_instance_uid']}]")
        lines.append("* the series that smartnet analyze reads")
        return "\n".join(lines)
    lines = [f"model {result['model']['name']} {result['model']['version']} on {result['device']}"]
    for case in result["cases"]:
        lines.append(f"{case['input']}: ICH probability {case['ich_probability']:.2f}, "
                     f"hemorrhage {case['total_volume_ml']:.1f} mL")
        for name, ml in case["findings"].items():
            lines.append(f"  {name}: {ml:.1f} mL")
        lines += clinical_lines(case.get("clinical") or {})
        for warning in case["warnings"]:
            lines.append(f"  warning: {warning}")
        lines.append(f"  results in {case['output_dir']}")
    if len(result["cases"]) > 1:
        lines.append(f"{len(result['cases'])} volumes, {result['volumes_per_minute']:.1f} per minute; one row "
                     f"each in {Path(result['cases'][0]['output_dir']).parent / SUMMARY_CSV_FILE}")
    return "\n".join(lines)
