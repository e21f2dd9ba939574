"""The contracts between the layers: report.json and model.json against their shipped JSON Schemas and typed
definitions, the report's one reader, and the one atomic writer."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import jsonschema
import pytest
import SimpleITK as sitk

from conftest import events_of, head_phantom, run_cli
from SMARTNetLib.contracts import files
from SMARTNetLib.contracts.classes import SUBTYPE_NAMES
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import AnalyzedCase, AnalyzeResult, parse_event
from SMARTNetLib.contracts.locations import BUNDLED_DIR, MODEL_NAME_PATTERN
from SMARTNetLib.contracts.model_card import (
    CARD_FILE,
    OPERATOR_INPUTS,
    VOLUME_SEGMENTATIONS,
    WINDOWS,
    Architecture,
    ModelCard,
    Preprocessing,
)
from SMARTNetLib.contracts.report import (
    FORMAT_VERSION,
    MODEL_CARD_SCHEMA,
    REPORT_SCHEMA,
    ClassFinding,
    Report,
    ReportModel,
    read_report,
)

REPORT = json.loads(REPORT_SCHEMA.read_text(encoding="utf-8"))
CARD = json.loads(MODEL_CARD_SCHEMA.read_text(encoding="utf-8"))


def validator(schema: dict) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def analysed(tiny_model, tmp_path_factory) -> Path:
    """A real report.json from the CLI (tiny random model, the head phantom, written as NRRD)."""


    folder = tmp_path_factory.mktemp("contract")
    ct, _ = head_phantom()
    sitk.WriteImage(ct, str(folder / "head.nrrd"))
    proc = run_cli("analyze", str(folder / "head.nrrd"), "-o", str(folder / "out"), "--model", str(tiny_model),
                   "--events")
    assert proc.returncode == 0, proc.stderr
    (folder / "result.json").write_text(json.dumps(events_of(proc)[-1]), encoding="utf-8")
    return folder / "out" / files.REPORT_FILE


def test_the_engines_report_validates_against_the_shipped_schema(analysed):
    report = json.loads(analysed.read_text(encoding="utf-8"))
    validator(REPORT).validate(report)
    assert report["format_version"] == FORMAT_VERSION
    assert set(report["sha256"]) == {n for n in report["files"].values() if n != files.REPORT_FILE}


def test_the_schema_refuses_what_readers_could_not_use(analysed):
    check = validator(REPORT)
    good = json.loads(analysed.read_text(encoding="utf-8"))
    for broken in ({**good, "ich_probability": "high"}, {k: v for k, v in good.items() if k != "findings"},
                   {**good, "findings": {"haematoma": next(iter(good["findings"].values()))}},
                   {**good, "files": {**good["files"], "segmentation": "../elsewhere.seg.nrrd"}},
                   {**good, "format_version": FORMAT_VERSION + 1}, {**good, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            check.validate(broken)


def test_typed_report_and_schema_name_the_same_keys():
    hints = typing.get_type_hints(Report)
    assert set(hints) == set(REPORT["properties"]) == set(REPORT["required"])
    assert set(typing.get_type_hints(ReportModel)) == set(REPORT["properties"]["model"]["required"])
    finding = REPORT["properties"]["findings"]["additionalProperties"]
    assert set(typing.get_type_hints(ClassFinding)) == set(finding["required"])
    assert REPORT["$defs"]["className"]["enum"] == list(SUBTYPE_NAMES)


def test_the_result_event_has_the_typed_keys(analysed):
    result = json.loads((analysed.parents[1] / "result.json").read_text(encoding="utf-8"))
    assert parse_event(json.dumps(result))["event"] == "result"
    assert set(result) == set(typing.get_type_hints(AnalyzeResult)) | {"event", "command"}
    (case,) = result["cases"]
    assert set(case) == set(typing.get_type_hints(AnalyzedCase))
    assert Path(case["report"]) == analysed


def test_model_cards_validate_and_the_schema_follows_the_dataclasses():
    check = validator(CARD)
    cards = sorted(BUNDLED_DIR.glob(f"*/{CARD_FILE}"))
    assert cards
    for path in cards:
        check.validate(json.loads(path.read_text(encoding="utf-8")))
    check.validate(ModelCard(name="x").to_dict())
    properties = CARD["properties"]
    assert set(properties) == set(ModelCard.__dataclass_fields__)
    assert set(properties["architecture"]["properties"]) == set(Architecture.__dataclass_fields__)
    assert set(properties["preprocessing"]["properties"]) == set(Preprocessing.__dataclass_fields__)
    assert properties["architecture"]["properties"]["operator_inputs"]["enum"] == list(OPERATOR_INPUTS)
    assert properties["architecture"]["properties"]["volume_segmentation"]["enum"] == list(VOLUME_SEGMENTATIONS)
    assert properties["preprocessing"]["properties"]["windows"]["items"]["enum"] == list(WINDOWS)
    assert properties["name"]["pattern"] == MODEL_NAME_PATTERN.pattern
    with pytest.raises(jsonschema.ValidationError):
        check.validate({**ModelCard(name="x").to_dict(), "architecture": {"volume_operator": "gru"}})


def test_read_report_fills_in_old_reports_and_refuses_newer_ones(analysed, tmp_path):
    assert read_report(analysed)["format_version"] == FORMAT_VERSION
    report = json.loads(analysed.read_text(encoding="utf-8"))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in report.items() if k != "format_version"}))
    assert read_report(old)["format_version"] == 1
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**report, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(SmartNetError, match="newer than this version") as err:
        read_report(newer)
    assert str(newer) in str(err.value)


def test_atomic_writes_replace_whole_files_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "result.seg.nrrd"
    old_umask = os.umask(0o022)
    try:
        files.write_text_atomic(target, "first")
        files.write_json_atomic(target.with_name("a.json"), {"n": 1})
    finally:
        os.umask(old_umask)
    assert target.read_text() == "first"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert json.loads(target.with_name("a.json").read_text(encoding="utf-8")) == {"n": 1}
    seen = []
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            seen.append(tmp)
            assert tmp.name.endswith(".seg.nrrd") and tmp.parent == target.parent
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"  # the old file stands, and no temporary file is left
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json", "result.seg.nrrd"]
    assert not seen[0].exists()


def test_image_stem_strips_one_image_suffix():
    assert [files.image_stem(n) for n in ("a.NII.GZ", "b.nii", "c.seg.nrrd", "d.mhd", "e.txt")] == \
        ["a", "b", "c.seg", "d", "e"]
