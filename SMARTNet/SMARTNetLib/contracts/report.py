"""``report.json``: the analysis of one CT, as the engine writes it and every reader reads it.

The types are ``TypedDict`` s: at run time a report stays the plain JSON object that the Slicer modules, the
visual report and users' scripts read, and type checkers see its keys. The JSON Schema beside this module
(``schemas/report.schema.json``, shipped in the package) says the same for other languages; a test keeps the
two equal. One writer (:func:`write_report`, atomic) and one reader (:func:`read_report`, checked).

``format_version`` counts changes that readers must know of: a reader refuses a report newer than it knows
(written by a newer engine); reports of engines before the field existed read as version 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.files import write_json_atomic

FORMAT_VERSION = 1
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
REPORT_SCHEMA = SCHEMA_DIR / "report.schema.json"
MODEL_CARD_SCHEMA = SCHEMA_DIR / "model.schema.json"


class ReportModel(TypedDict):
    """The model that made the analysis."""

    name: str
    version: str
    description: str
    synthetic_only: bool
    finding_classifier: bool


class ClassFinding(TypedDict):
    """One hemorrhage class in one scan: its probability and what was segmented."""

    probability: float
    volume_ml: float
    label_value: int
    largest_slice: int | None  # slice index (along ``slice_order``) of the largest segmented area
    centroid_lps: list[float] | None  # mm, DICOM LPS


class Familiarity(TypedDict):
    """The input-familiarity check: the reconstruction error against the card's threshold."""

    reconstruction_error: float | None
    threshold: float | None


class Report(TypedDict):
    """The contents of ``report.json``."""

    format_version: int
    input: str
    model: ReportModel
    device: str
    ich_probability: float
    classes: list[str]
    findings: dict[str, ClassFinding]
    total_volume_ml: float
    slice_probabilities: list[float]
    slice_order: str
    explain: str
    timing_s: dict[str, float]
    warnings: list[str]
    familiarity: Familiarity
    input_series: dict[str, Any] | None  # the DICOM series read, when the input was a DICOM folder
    clinical: dict[str, Any]  # SMARTNetLib.analysis.clinical_measures
    files: dict[str, str]  # role -> file name in the output folder
    sha256: dict[str, str]  # file name -> hex SHA-256 of every other file listed in ``files``


REQUIRED_KEYS = ("model", "ich_probability", "findings")  # what every engine version wrote


def write_report(path: str | Path, report: Report) -> Path:
    """Write ``report.json`` atomically (numpy numbers as JSON numbers)."""
    return write_json_atomic(path, report)


def read_report(path: str | Path) -> Report:
    """Read and check ``report.json``.

    Args:
        path: the report file.

    Returns:
        The report (``format_version`` filled in for reports written before it existed).

    Raises:
        SmartNetError: naming the file, when it is missing, not JSON, lacks required keys or is newer than this
            engine reads.
    """
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except FileNotFoundError:
        raise SmartNetError("analysis report not found", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SmartNetError(f"analysis report is not valid JSON ({err})", path) from None
    if not isinstance(report, dict):
        raise SmartNetError("analysis report is not a JSON object", path)
    version = report.setdefault("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SmartNetError(f"analysis report format {version!r} is newer than this version of SMART-Net reads "
                            f"({FORMAT_VERSION}); update SMART-Net", path)
    missing = [k for k in REQUIRED_KEYS if k not in report]
    if missing:
        raise SmartNetError(f"analysis report lacks {', '.join(missing)}", path)
    return report  # type: ignore[return-value]

