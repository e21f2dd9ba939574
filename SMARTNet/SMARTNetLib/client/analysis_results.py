"""Turning the output of ``smartnet analyze`` into what the Slicer module shows.

Everything here is plain data: which files to load, the rows of the results table, which
segments to keep and how to name and colour them, where the largest finding is, and the text of
the progress label. Standard library only (imported by Slicer's GUI process).

Example::

    case = case_from_result(result_event)              # from the final ``result`` event
    report = read_report(case.report)                  # SMARTNetLib.contracts.report
    files = result_files(case.output_dir, report)
    header, rows = findings_table(report)
    target = largest_finding(report)                   # Finding(name="subdural", ..., centroid_ras=(...))
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from SMARTNetLib.contracts.classes import HEMORRHAGE, class_from_segment_name, get_class
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.files import ACTIVATION_FILE, REPORT_FILE, SEGMENTATION_FILE

# Default file names inside an analysis folder (the report's "files" entry overrides them).
DEFAULT_FILES = {"segmentation": SEGMENTATION_FILE, "activation": ACTIVATION_FILE, "report": REPORT_FILE}
TABLE_HEADER = ("Finding", "Probability", "Volume (mL)")


@dataclass(frozen=True)
class AnalysisCase:
    """One analysed input, as listed by the ``result`` event of ``smartnet analyze``."""

    input: str
    output_dir: str
    report: str
    ich_probability: float | None


@dataclass(frozen=True)
class ResultFiles:
    """Files of one analysis; ``None`` where the engine did not write the file."""

    report: str
    segmentation: str | None
    activation: str | None


@dataclass(frozen=True)
class Finding:
    """One class of the report with its numbers and position."""

    name: str
    display_name: str
    probability: float
    volume_ml: float
    largest_slice: int | None
    centroid_lps: tuple[float, float, float] | None

    @property
    def centroid_ras(self) -> tuple[float, float, float] | None:
        return lps_to_ras(self.centroid_lps) if self.centroid_lps is not None else None


@dataclass(frozen=True)
class SegmentPlan:
    """What to do with one segment of the loaded segmentation."""

    segment_name: str  # name in the file
    keep: bool  # False: the class was not found (zero volume), remove the segment
    name: str  # name to show
    color: tuple[float, float, float]
    terminology: str  # Slicer's serialized TerminologyEntry tag, "" if the class is unknown


def case_from_result(result_event: Mapping[str, Any], index: int = 0) -> AnalysisCase:
    """The ``index``-th case (:class:`~SMARTNetLib.contracts.events.AnalyzedCase`) of the final ``result`` event
    (:class:`~SMARTNetLib.contracts.events.AnalyzeResult`) of ``smartnet analyze --events``."""
    cases = result_event.get("cases") or []
    if index >= len(cases):
        raise SmartNetError(f"the engine reported {len(cases)} analysed case(s), expected at least {index + 1}")
    case = cases[index]
    output_dir = str(case["output_dir"])
    report = str(case.get("report") or os.path.join(output_dir, DEFAULT_FILES["report"]))
    probability = case.get("ich_probability")
    return AnalysisCase(str(case.get("input", "")), output_dir, report,
                        float(probability) if probability is not None else None)


def result_files(output_dir: str | Path, report: Mapping[str, Any]) -> ResultFiles:
    """Absolute paths of the report, segmentation and activation map (``None`` when absent)."""
    names = {**DEFAULT_FILES, **(report.get("files") or {})}

    def existing(key: str) -> str | None:
        name = names.get(key)
        if not name:
            return None
        path = Path(output_dir) / name
        return str(path) if path.is_file() else None

    return ResultFiles(str(Path(output_dir) / names["report"]), existing("segmentation"), existing("activation"))


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the engine writes them into ``report.json``, readers check them)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(output_dir: str | Path, report: Mapping[str, Any]) -> None:
    """Raise :class:`SmartNetError` naming the first file whose SHA-256 differs from the report's (reports
    written before checksums existed have none to check)."""
    for name, expected in (report.get("sha256") or {}).items():
        path = Path(output_dir) / name
        if not path.is_file():
            continue  # absence is handled by result_files
        if sha256_of(path) != expected:
            raise SmartNetError("file is damaged or was changed after the analysis (checksum mismatch)", path)


def findings(report: Mapping[str, Any]) -> list[Finding]:
    """The report's findings in the order of its ``classes`` list."""
    found = report.get("findings") or {}
    order = [c for c in report.get("classes") or [] if c in found] + [c for c in found if
                                                                       c not in (report.get("classes") or [])]
    result = []
    for name in order:
        entry = found[name] or {}
        centroid = entry.get("centroid_lps")
        result.append(Finding(
            name=name,
            display_name=_display_name(name),
            probability=float(entry.get("probability") or 0.0),
            volume_ml=float(entry.get("volume_ml") or 0.0),
            largest_slice=entry.get("largest_slice"),
            centroid_lps=tuple(float(v) for v in centroid) if centroid is not None else None,
        ))
    return result


def yes_no(value: bool | None) -> str:
    return "not measured" if value is None else ("yes" if value else "no")


def location_text(finding: Mapping[str, Any]) -> str:
    """'deep (basal ganglia), left, with ventricular extension', or why the finding was not located."""
    if not finding.get("region"):
        extension = ", with ventricular extension" if finding.get("intraventricular_extension") else ""
        return f"not located ({finding.get('not_measured', 'no head frame')}){extension}"
    side = finding.get("side")
    text = finding["region"] + (f", {side}" if side and side != "midline" else (", midline" if side else ""))
    return text + (", with ventricular extension" if finding.get("intraventricular_extension") else "")


def midline_shift_text(shift: Mapping[str, Any]) -> str:
    """'3.2 mm to the left' or 'not measurable: <reason>'."""
    if not shift.get("measurable"):
        return f"not measurable: {shift.get('reason', 'unknown')}"
    if shift.get("direction") in ("left", "right"):
        return f"{shift['shift_mm']:.1f} mm to the {shift['direction']}"
    return f"{shift['shift_mm']:.1f} mm"


def clinical_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The clinical measures as (name, value, volume) rows: ABC/2 and location of each intraparenchymal
    finding, midline shift, the ICH score's imaging items."""
    clinical = report.get("clinical") or {}
    rows = []
    for n, f in enumerate(clinical.get("abc2_intraparenchymal") or [], start=1):
        rows.append((f"ABC/2, intraparenchymal finding {n}", f"{f['a_mm']:.0f} x {f['b_mm']:.0f} x {f['c_mm']:.0f} mm",
                     _fmt_volume(f["abc2_ml"])))
    for n, f in enumerate(clinical.get("location_intraparenchymal") or [], start=1):
        rows.append((f"Location, intraparenchymal finding {n}", location_text(f), ""))
    shift = clinical.get("midline_shift") or {}
    if shift:
        rows.append(("Midline shift", midline_shift_text(shift), ""))
    items = clinical.get("ich_score_imaging") or {}
    if items.get("volume_ge_30_ml") is not None:
        rows.append(("ICH score: volume >= 30 mL", yes_no(items["volume_ge_30_ml"]), ""))
        rows.append(("ICH score: intraventricular blood", yes_no(items.get("intraventricular_blood")), ""))
        rows.append(("ICH score: infratentorial origin", yes_no(items.get("infratentorial_origin")), ""))
    return rows


def findings_table(report: Mapping[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, str, str]]]:
    """Header and rows (all text) of the results table.

    First the volume-level ICH probability with the total volume, then one row per class, then
    the model, its version and the device, so that a saved table says where its numbers came from.
    """
    rows = [("Intracranial hemorrhage (any)", _fmt_probability(report.get("ich_probability")),
             _fmt_volume(report.get("total_volume_ml")))]
    for f in findings(report):
        rows.append((f.display_name, _fmt_probability(f.probability), _fmt_volume(f.volume_ml)))
    rows += clinical_rows(report)
    model = report.get("model") or {}
    rows.append(("Model", str(model.get("name", "")), ""))
    rows.append(("Model version", str(model.get("version", "")), ""))
    if report.get("device"):
        rows.append(("Device", str(report["device"]), ""))
    if model.get("synthetic_only"):
        rows.append(("Note", "model trained on synthetic data only", ""))
    return TABLE_HEADER, rows


COMPARISON_HEADER = ("Finding", "Baseline (mL)", "Follow-up (mL)", "Change (mL)")


def comparison_table(result: Mapping[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Header and rows (all text) of the follow-up comparison table, from ``smartnet compare``'s result: the
    classes with blood at either time, the total, new blood and the expansion flags."""
    rows = []
    for name, c in (result.get("classes") or {}).items():
        if c.get("baseline_ml") or c.get("followup_ml"):
            rows.append((_display_name(name), _fmt_volume(c["baseline_ml"]), _fmt_volume(c["followup_ml"]),
                         f"{c['change_ml']:+.1f}"))
    total = result.get("total") or {}
    rows.append(("All hemorrhage", _fmt_volume(total.get("baseline_ml")), _fmt_volume(total.get("followup_ml")),
                 f"{total.get('change_ml', 0.0):+.1f}"))
    rows.append(("New blood (outside the baseline's)", "", "", _fmt_volume(result.get("new_blood_ml"))))
    rows.append(("Hematoma expansion (intraparenchymal > 6 mL or > 33%)",
                 "", "", "yes" if result.get("hematoma_expansion") else "no"))
    rows.append(("Expansion of all blood (> 6 mL or > 33%)", "", "", "yes" if result.get("any_expansion") else "no"))
    return COMPARISON_HEADER, rows


def comparison_summary(result: Mapping[str, Any]) -> str:
    """One line for the module: total volumes at both times, the change and the expansion verdict."""
    total = result.get("total") or {}
    expansion = "yes" if result.get("hematoma_expansion") else "no"
    return (f"Hemorrhage {_fmt_volume(total.get('baseline_ml'))} mL -> {_fmt_volume(total.get('followup_ml'))} mL "
            f"({total.get('change_ml', 0.0):+.1f} mL). Hematoma expansion (intraparenchymal > 6 mL or > 33%): "
            f"{expansion}.")


def comparison_report(result: Mapping[str, Any]) -> dict[str, Any]:
    """A report-like mapping (``findings`` with the follow-up volumes) for :func:`segment_plan`."""
    return {"findings": {name: {"volume_ml": c.get("followup_ml", 0.0)}
                         for name, c in (result.get("classes") or {}).items()}}


def largest_finding(report: Mapping[str, Any], min_volume_ml: float = 0.0) -> Finding | None:
    """The class with the largest volume above ``min_volume_ml`` that has a position, or None."""
    candidates = [f for f in findings(report) if f.volume_ml > min_volume_ml and f.centroid_lps is not None]
    return max(candidates, key=lambda f: f.volume_ml) if candidates else None


def lps_to_ras(point: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """DICOM/ITK patient coordinates (LPS) to Slicer's world coordinates (RAS)."""
    x, y, z = point
    return (-float(x), -float(y), float(z))


def segment_plan(report: Mapping[str, Any], segment_names: list[str]) -> list[SegmentPlan]:
    """Names, colours, terminology and keep/remove for each segment of the loaded segmentation.

    A segment is kept when its class has a positive volume in the report (or the class is not
    in the report at all, so that nothing unknown is thrown away).
    """
    volumes = {f.name: f.volume_ml for f in findings(report)}
    plans = []
    for segment_name in segment_names:
        class_name = class_from_segment_name(segment_name)
        try:
            cls = get_class(class_name) if class_name else None
        except ValueError:
            cls = None
        if cls is None:
            plans.append(SegmentPlan(segment_name, True, segment_name, (0.5, 0.5, 0.5), ""))
            continue
        keep = volumes.get(cls.name, 1.0) > 0.0
        plans.append(SegmentPlan(segment_name, keep, _display_name(cls.name), cls.color,
                                 terminology_string(cls.terminology)))
    return plans


def terminology_string(entry: Mapping[str, Any]) -> str:
    """Slicer's serialized terminology entry (the segment's ``TerminologyEntry`` tag).

    Format (vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry): context name, category,
    type, type modifier, anatomic context name, anatomic region, region modifier, separated by
    ``~``; codes are ``scheme^value^meaning``. Hand-written (10 lines) because the GUI process
    must not depend on slicerio; the tests check it against slicerio's own writer.
    """

    def code(key: str) -> str:
        return "^".join(entry.get(key) or ("", "", ""))

    return "~".join([entry.get("contextName", ""), code("category"), code("type"), code("typeModifier"),
                     entry.get("anatomicContextName", ""), code("anatomicRegion"), code("anatomicRegionModifier")])


def progress_text(event: Mapping[str, Any]) -> str:
    """One line for the stage label from a ``progress`` event."""
    stage = str(event.get("stage", "")).replace("_", " ").capitalize()
    message = str(event.get("message") or "")
    return f"{stage}: {message}" if message else stage


def summary_text(report: Mapping[str, Any]) -> str:
    """Short status text after an analysis (probability, largest finding, warnings)."""
    lines = [f"ICH probability {_fmt_probability(report.get('ich_probability'))}"]
    positive = [f for f in findings(report) if f.volume_ml > 0]
    if positive:
        lines.append("Found: " + ", ".join(f"{f.display_name} {f.volume_ml:.1f} mL" for f in positive))
    else:
        lines.append("No hemorrhage segmented.")
    lines += [f"Warning: {w}" for w in report.get("warnings") or []]
    return "\n".join(lines)


def _display_name(class_name: str) -> str:
    try:
        cls = get_class(class_name)
    except ValueError:
        return class_name
    if cls is HEMORRHAGE:
        return "Hemorrhage"
    return f"{cls.display_name} ({cls.abbreviation})"


def _fmt_probability(value: Any) -> str:
    return "" if value is None else f"{float(value):.3f}"


def _fmt_volume(value: Any) -> str:
    return "" if value is None else f"{float(value):.2f}"
