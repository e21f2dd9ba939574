"""The analysed cases of a ``smartnet analyze`` output folder, as the viewer lists them (standard library only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.files import REPORT_FILE
from SMARTNetLib.contracts.report import read_report

SYNTHETIC_NOTICE = ("The model was trained on synthetic data only: not validated on real hemorrhage, "
                    "not for clinical use.")


@dataclass
class Case:
    """One analysed case: its folder and the report's headline numbers, or why its report cannot be read."""

    name: str  # the folder relative to the output folder ("." for a single-case folder)
    folder: Path
    report: dict | None = None
    problem: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ich_probability(self) -> float | None:
        return None if self.report is None else self.report.get("ich_probability")

    @property
    def total_volume_ml(self) -> float | None:
        return None if self.report is None else self.report.get("total_volume_ml")

    def row(self, index: int) -> dict:
        """The case list's row (JSON for the page)."""
        return {"index": index, "name": self.name,
                "ich_probability": None if self.ich_probability is None else round(self.ich_probability, 3),
                "total_volume_ml": None if self.total_volume_ml is None else round(self.total_volume_ml, 2),
                "warnings": len(self.warnings), "problem": self.problem}


def case_warnings(report: dict) -> list[str]:
    """The report's warnings (the engine's input-familiarity warning among them), then the synthetic-training
    notice."""
    warnings = [str(w) for w in report.get("warnings") or []]
    if (report.get("model") or {}).get("synthetic_only"):
        warnings.append(SYNTHETIC_NOTICE)
    return warnings


def find_cases(output_dir: str | Path) -> list[Case]:
    """Every folder under ``output_dir`` (itself included) that holds a ``report.json``, by name.

    A report that cannot be read is listed with its problem rather than hidden.
    """
    root = Path(output_dir)
    if not root.is_dir():
        raise SmartNetError("is not a folder (expected the output folder of smartnet analyze)", root)
    cases = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # staging folders of a run in progress
        if REPORT_FILE not in files:
            continue
        path = Path(folder)
        case = Case(name=path.relative_to(root).as_posix(), folder=path)
        try:
            case.report = read_report(path / REPORT_FILE)
            case.warnings = case_warnings(case.report)
        except SmartNetError as err:
            case.problem = err.problem
        cases.append(case)
    if not cases:
        raise SmartNetError(f"holds no {REPORT_FILE} (run smartnet analyze --output-dir on it first)", root)
    return sorted(cases, key=lambda c: c.name)
