"""``smartnet view`` without a browser: the case list of an output folder, the command's one-line errors, and the
viewer's import rules (the launcher and the case list run in the engine's environment, without trame)."""

from __future__ import annotations

import ast
import json
import shutil
import socket
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetViewer.cases import SYNTHETIC_NOTICE, find_cases

VIEWER = ROOT / "SMARTNet" / "SMARTNetViewer"


@pytest.fixture(scope="module")
def two_cases(tmp_path_factory, tiny_model) -> Path:
    """A real batch output (two phantoms analysed by the CLI with the tiny model)."""
    import SimpleITK as sitk

    from conftest import head_phantom

    root = tmp_path_factory.mktemp("cases")
    inputs = []
    for name, bleed in (("b_bleed.nrrd", True), ("a_clean.nrrd", False)):
        ct, _ = head_phantom(bleed=bleed)
        sitk.WriteImage(ct, str(root / name))
        inputs.append(str(root / name))
    proc = run_cli("analyze", *inputs, "-o", str(root / "out"), "--model", str(tiny_model), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return root / "out"


def test_cases_are_every_report_by_name_with_broken_ones_listed(two_cases, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_cases, out)
    (out / "c_broken").mkdir()
    (out / "c_broken" / "report.json").write_text("{not json")
    (out / ".stage-x").mkdir()  # a run in progress: not a case
    shutil.copy(out / "a_clean" / "report.json", out / ".stage-x" / "report.json")

    cases = find_cases(out)
    assert [c.name for c in cases] == ["a_clean", "b_bleed", "c_broken"]
    assert cases[2].report is None and "not valid JSON" in cases[2].problem
    assert cases[2].row(2) == {"index": 2, "name": "c_broken", "ich_probability": None, "total_volume_ml": None,
                               "warnings": 0, "problem": cases[2].problem}
    for case in cases[:2]:
        assert case.report["input"].endswith(f"{case.name}.nrrd") and Path(case.report["input"]).is_absolute()
        assert case.row(0)["ich_probability"] == round(case.report["ich_probability"], 3)
        assert case.report["model"]["synthetic_only"]  # so the notice follows the report's warnings
        assert case.warnings == [*case.report["warnings"], SYNTHETIC_NOTICE]

    single = find_cases(out / "a_clean")  # a one-case folder is its own case
    assert [c.name for c in single] == ["."]


def test_folders_without_cases_are_refused(tmp_path):
    with pytest.raises(SmartNetError, match="holds no report.json"):
        find_cases(tmp_path)
    with pytest.raises(SmartNetError, match="is not a folder"):
        find_cases(tmp_path / "missing")


def test_view_errors_are_one_line_with_exit_status_2(two_cases, tmp_path):
    missing = run_cli("view", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert str(tmp_path / "nothing") in missing.stderr and "is not a folder" in missing.stderr

    no_web = run_cli("view", str(two_cases), env={"SMARTNET_WEB_PYTHON": str(tmp_path / "no-python")})
    assert no_web.returncode == 2 and "SMARTNET_WEB_PYTHON names no file" in no_web.stderr
    assert no_web.stderr.strip().count("\n") == 0

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli("view", str(two_cases), "--port", str(port), env={"SMARTNET_WEB_PYTHON": sys.executable})
    assert busy.returncode == 2, busy.stderr
    assert f"port {port} on 127.0.0.1 is in use" in busy.stderr and busy.stderr.strip().count("\n") == 0
    assert sorted(p.name for p in two_cases.iterdir()) == ["a_clean", "b_bleed", "summary.csv", "summary.json"]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_viewer_uses_only_the_light_engine_packages_and_the_launcher_needs_no_trame():
    engine = {m for path in VIEWER.glob("*.py") for m in imports(path) if m.startswith("SMARTNetLib")}
    assert engine and all(m.startswith(("SMARTNetLib.contracts", "SMARTNetLib.client")) for m in engine), engine
    for name in ("cases.py", "launcher.py"):
        outside = {m for m in imports(VIEWER / name) if m.split(".")[0] not in sys.stdlib_module_names
                   and not m.startswith(("SMARTNetLib.contracts", "SMARTNetLib.client", "SMARTNetViewer.cases",
                                         "__future__"))}
        assert outside == set(), (name, outside)


def test_a_case_becomes_the_modules_nodes_and_a_missing_ct_is_named(two_cases, tmp_path):
    """:class:`CaseScene` on slicer-core's MRML (the viewer's scene logic, without trame): the CT, the module's
    segmentation, table and activation nodes, the CT behind every slice view; a case whose CT is gone fails with
    the CT's path and leaves the scene as it was."""
    from SMARTNetSlicerLib import scene_context
    from SMARTNetSlicerLib.scene_context import nodesByClass
    from SMARTNetViewer.case_scene import CaseScene

    logics = scene_context.standalone()
    scene_context.addSliceViews(logics)
    scene = CaseScene(logics)

    def node_ids() -> set[str]:
        return {logics.scene.GetNthNode(i).GetID() for i in range(logics.scene.GetNumberOfNodes())}

    cases = {c.name: c for c in find_cases(two_cases)}
    nodes = scene.load(cases["b_bleed"])
    assert nodes.segmentation is not None and nodes.table is not None and nodes.activation is not None
    assert scene.ct.GetName() == "b_bleed" and scene.ct.GetDisplayNode().GetWindow() == 80.0
    composites = nodesByClass(logics.scene, "vtkMRMLSliceCompositeNode")
    assert len(composites) == 3 and {c.GetBackgroundVolumeID() for c in composites} == {scene.ct.GetID()}
    scene.show(segmentation=True, activation=True, activation_3d=False, opacity=0.4)
    assert {c.GetForegroundVolumeID() for c in composites} == {nodes.activation.GetID()}
    assert {round(c.GetForegroundOpacity(), 2) for c in composites} == {0.4}

    moved = tmp_path / "moved"
    shutil.copytree(two_cases / "a_clean", moved / "a_clean")
    report = json.loads((moved / "a_clean" / "report.json").read_text())
    report["input"] = str(tmp_path / "gone.nrrd")
    (moved / "a_clean" / "report.json").write_text(json.dumps(report))
    before = node_ids()
    with pytest.raises(SmartNetError, match="the analysed CT is gone") as error:
        scene.load(find_cases(moved)[0])
    assert str(tmp_path / "gone.nrrd") in str(error.value)
    assert node_ids() == before and scene.ct.GetName() == "b_bleed"  # the shown case stays
    scene.clear()
    assert scene.ct is None and not nodesByClass(logics.scene, "vtkMRMLSegmentationNode")
