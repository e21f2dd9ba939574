"""From analyze's result event and report.json to the Slicer module's table, segments and jump target."""

from __future__ import annotations

import json

import pytest
import slicerio.segmentation

from SMARTNetLib.client.analysis_results import (
    DEFAULT_FILES,
    TABLE_HEADER,
    case_from_result,
    findings,
    findings_table,
    largest_finding,
    lps_to_ras,
    progress_text,
    result_files,
    segment_plan,
    summary_text,
    terminology_string,
    verify_files,
)
from SMARTNetLib.contracts.classes import HEMORRHAGE, SUBTYPES, get_class
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.report import read_report
from SMARTNetLib.io import outputs


def make_report(**overrides) -> dict:
    """A report.json following the engine contract (common.md)."""
    report = {
        "input": "/tmp/in/input.nrrd",
        "model": {"name": "smartnet-default", "version": "1.2", "description": "test", "synthetic_only": True},
        "device": "cpu",
        "ich_probability": 0.9312,
        "classes": ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"],
        "findings": {
            "epidural": {"probability": 0.02, "volume_ml": 0.0, "label_value": 1, "largest_slice": None,
                         "centroid_lps": None},
            "intraparenchymal": {"probability": 0.81, "volume_ml": 12.345, "label_value": 2, "largest_slice": 14,
                                 "centroid_lps": [10.0, -20.0, 30.0]},
            "intraventricular": {"probability": 0.10, "volume_ml": 0.0, "label_value": 3, "largest_slice": None,
                                 "centroid_lps": None},
            "subarachnoid": {"probability": 0.05, "volume_ml": 0.0, "label_value": 4, "largest_slice": None,
                             "centroid_lps": None},
            "subdural": {"probability": 0.77, "volume_ml": 31.5, "label_value": 5, "largest_slice": 20,
                         "centroid_lps": [-50.5, 5.0, 42.0]},
        },
        "total_volume_ml": 43.845,
        "slice_probabilities": [0.0, 0.5, 0.9],
        "timing_s": {"inference": 1.2},
        "warnings": ["spacing 5 mm is coarse"],
        "files": {"segmentation": "segmentation.seg.nrrd", "activation": "activation.nrrd", "report": "report.json"},
    }
    report.update(overrides)
    return report


def write_case(folder, report=None, files=("segmentation", "activation")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report or make_report()))
    for key in files:
        (folder / DEFAULT_FILES[key]).write_bytes(b"x")
    return folder


def test_case_from_result_event(tmp_path):
    event = {"event": "result", "command": "analyze", "cases": [
        {"input": "/tmp/in.nrrd", "output_dir": str(tmp_path), "report": str(tmp_path / "report.json"),
         "ich_probability": 0.93}]}
    case = case_from_result(event)
    assert case.output_dir == str(tmp_path) and case.report.endswith("report.json") and case.ich_probability == 0.93
    with pytest.raises(SmartNetError, match="1 analysed case"):
        case_from_result(event, index=1)
    no_report = {"cases": [{"input": "a", "output_dir": str(tmp_path)}]}
    assert case_from_result(no_report).report == str(tmp_path / "report.json")


def test_read_report_and_files(tmp_path):
    folder = write_case(tmp_path / "out")
    report = read_report(folder / "report.json")
    files = result_files(folder, report)
    assert files.segmentation == str(folder / "segmentation.seg.nrrd")
    assert files.activation == str(folder / "activation.nrrd")
    assert files.report == str(folder / "report.json")


def test_missing_activation_is_none(tmp_path):
    folder = write_case(tmp_path / "out", make_report(files={"segmentation": "segmentation.seg.nrrd"}),
                        files=("segmentation",))
    files = result_files(folder, read_report(folder / "report.json"))
    assert files.activation is None and files.segmentation is not None


@pytest.mark.parametrize("content, message", [
    (None, "not found"), ("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"),
    (json.dumps({"model": {}}), "lacks ich_probability, findings"),
])
def test_read_report_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SmartNetError, match=message) as err:
        read_report(path)
    assert str(path) in str(err.value)


def test_findings_table():
    header, rows = findings_table(make_report())
    assert header == TABLE_HEADER == ("Finding", "Probability", "Volume (mL)")
    assert rows[0] == ("Intracranial hemorrhage (any)", "0.931", "43.84")
    by_name = {r[0]: r for r in rows}
    assert by_name["Intraparenchymal (IPH)"] == ("Intraparenchymal (IPH)", "0.810", "12.35")
    assert by_name["Subdural (SDH)"] == ("Subdural (SDH)", "0.770", "31.50")
    assert by_name["Epidural (EDH)"][2] == "0.00"
    assert [r[0] for r in rows[1:6]] == [f"{c.display_name} ({c.abbreviation})" for c in SUBTYPES]
    assert by_name["Model"][1] == "smartnet-default" and by_name["Model version"][1] == "1.2"
    assert by_name["Device"][1] == "cpu" and "synthetic" in by_name["Note"][1]
    assert all(len(r) == len(header) and all(isinstance(v, str) for v in r) for r in rows)


def test_findings_table_binary_model_without_note():
    report = make_report(classes=["hemorrhage"], model={"name": "m", "version": "1", "synthetic_only": False},
                         findings={"hemorrhage": {"probability": 0.5, "volume_ml": 2.0, "label_value": 1,
                                                  "largest_slice": 3, "centroid_lps": [1, 2, 3]}})
    _, rows = findings_table(report)
    assert ("Hemorrhage", "0.500", "2.00") in rows
    assert "Note" not in [r[0] for r in rows]


def test_largest_finding_in_ras():
    target = largest_finding(make_report())
    assert target.name == "subdural" and target.volume_ml == 31.5 and target.largest_slice == 20
    assert target.centroid_ras == (50.5, -5.0, 42.0)
    assert largest_finding(make_report(), min_volume_ml=40) is None
    empty = make_report(findings={k: {**v, "volume_ml": 0.0} for k, v in make_report()["findings"].items()})
    assert largest_finding(empty) is None


def test_lps_to_ras():
    assert lps_to_ras([1, 2, 3]) == (-1.0, -2.0, 3.0)


def test_segment_plan_keeps_found_classes_and_names_them():
    names = [c.display_name for c in SUBTYPES]  # as outputs.write_segmentation names them
    plans = {p.segment_name: p for p in segment_plan(make_report(), names)}
    assert [n for n, p in plans.items() if p.keep] == ["Intraparenchymal", "Subdural"]
    sdh = plans["Subdural"]
    assert sdh.name == "Subdural (SDH)" and sdh.color == get_class("subdural").color
    assert sdh.terminology.split("~")[3] == "99SMARTNET^SDH^Subdural"
    unknown = segment_plan(make_report(), ["Skull"])[0]
    assert unknown.keep and unknown.name == "Skull" and unknown.terminology == ""


def test_terminology_string_matches_slicerio():
    for cls in (*SUBTYPES, HEMORRHAGE):
        assert terminology_string(cls.terminology) == slicerio.segmentation.terminology_entry_to_string(
            cls.terminology)
        assert len(terminology_string(cls.terminology).split("~")) == 7


def test_segment_plan_on_a_real_engine_segmentation(tmp_path):
    """Segment names in a .seg.nrrd written by the engine map back to their classes."""
    import numpy as np
    import SimpleITK as sitk

    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 2, 3] = 5
    image = sitk.GetImageFromArray(labels)
    path = tmp_path / "segmentation.seg.nrrd"
    outputs.write_segmentation(path, image, list(SUBTYPES))
    names = [s["name"] for s in slicerio.read_segmentation(str(path), skip_voxels=True)["segments"]]
    plans = segment_plan(make_report(), names)
    assert {p.segment_name for p in plans if p.keep} == {"Intraparenchymal", "Subdural"}
    assert all(p.terminology for p in plans)


def test_findings_order_follows_classes():
    report = make_report(classes=["subdural", "epidural"])
    assert [f.name for f in findings(report)][:2] == ["subdural", "epidural"]


def test_progress_and_summary_text():
    assert progress_text({"event": "progress", "stage": "inference", "fraction": 0.5, "message": "slice 3/9"}) == \
        "Inference: slice 3/9"
    assert progress_text({"event": "progress", "stage": "write", "fraction": 1.0, "message": ""}) == "Write"
    text = summary_text(make_report())
    assert "0.931" in text and "Subdural (SDH) 31.5 mL" in text and "Warning: spacing 5 mm is coarse" in text
    assert "No hemorrhage" in summary_text(make_report(findings={}))


def test_engine_checksums_catch_a_damaged_file(tmp_path, ct_file, tiny_model):
    """``report.json`` lists each output's SHA-256; a truncated file is named before any reader sees it."""
    from conftest import run_cli

    out = tmp_path / "out"
    proc = run_cli("analyze", str(ct_file), "--output-dir", str(out), "--model", str(tiny_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    report = read_report(out / "report.json")
    assert set(report["sha256"]) == {"segmentation.seg.nrrd", "activation.nrrd"}
    verify_files(out, report)
    verify_files(out, {k: v for k, v in report.items() if k != "sha256"})  # reports from before checksums
    damaged = out / "activation.nrrd"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(SmartNetError, match=r"activation\.nrrd: file is damaged"):
        verify_files(out, report)
