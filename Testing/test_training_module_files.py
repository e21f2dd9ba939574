"""The SMARTNetTraining module's files, checked without Slicer: CMake list, .ui widget names, engine names used."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from test_cmake_lists import STUB

from conftest import ROOT
from SMARTNetLib.client import engine_command, training_command, training_set
from SMARTNetLib.contracts import locations

MODULE = ROOT / "SMARTNetTraining"
SOURCE = (MODULE / "SMARTNetTraining.py").read_text()


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_module_cmake_lists(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(STUB.replace("@MODULE@", MODULE.as_posix()).replace(" SMARTNet)", " Training)"))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["cmake", "-S", str(src), "-B", str(tmp_path / "build"), f"-DOUT_DIR={out}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "SMARTNetTraining.scripts").read_text().split() == ["SMARTNetTraining.py"]
    assert set((out / "SMARTNetTraining.resources").read_text().split()) == {
        "Resources/Icons/SMARTNetTraining.png", "Resources/UI/SMARTNetTraining.ui"}
    assert (out / "SMARTNetTraining.generic").read_text() == "TRUE"
    assert (out / "unittests").read_text().split() == ["SMARTNetTraining.py"]


def test_ui_names_every_widget_the_module_uses():
    ui = ET.parse(MODULE / "Resources" / "UI" / "SMARTNetTraining.ui")
    names = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", SOURCE))
    assert used <= names, used - names
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    assert {w.get("class") for w in ui.iter("widget") if not w.get("class").startswith("Q")} <= declared
    bound = {p.findtext("string") for p in ui.iter("property") if p.get("name") == "SlicerParameterName"}
    fields = set(re.findall(r"^    (\w+): ", SOURCE.split("class SMARTNetTrainingParameterNode")[1].split("#\n")[0],
                            re.MULTILINE))
    assert bound <= fields, bound - fields


def test_engine_names_used_by_the_module_exist():
    modules = {"training_set": training_set, "training_command": training_command, "locations": locations,
               "engine_command": engine_command}
    used = [(n.value.id, n.attr) for n in ast.walk(ast.parse(SOURCE))
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules]
    assert used
    missing = [f"{m}.{a}" for m, a in used if not hasattr(modules[m], a)]
    assert not missing
