"""The extension's CMake files, configured with stand-ins for Slicer's macros (Slicer is not needed).

The stand-in ``slicerMacroBuildScriptedModule`` checks what the real one checks (every listed file
exists, no unknown keywords) plus what ``ctkMacroCompilePythonScript`` needs (relative paths), and
writes the lists it received, which must cover every engine file.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import ROOT

MODULE = ROOT / "SMARTNet"

STUB = r"""
cmake_minimum_required(VERSION 3.16)
project(StubSlicer NONE)
set(BUILD_TESTING ON)
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "unknown keywords: ${MY_UNPARSED_ARGUMENTS}")
  endif()
  foreach(value ${MY_SCRIPTS} ${MY_RESOURCES})
    if(IS_ABSOLUTE ${value})
      message(FATAL_ERROR "absolute path given: ${value}")
    endif()
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${value})
      message(FATAL_ERROR "nonexistent file: ${value}")
    endif()
  endforeach()
  string(REPLACE ";" "\n" _scripts "${MY_SCRIPTS}")
  string(REPLACE ";" "\n" _resources "${MY_RESOURCES}")
  file(WRITE ${OUT_DIR}/${MY_NAME}.scripts "${_scripts}")
  file(WRITE ${OUT_DIR}/${MY_NAME}.resources "${_resources}")
  file(WRITE ${OUT_DIR}/${MY_NAME}.generic "${MY_WITH_GENERIC_TESTS}")
endmacro()
function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "" ${ARGN})
  file(APPEND ${OUT_DIR}/unittests "${MY_SCRIPT}\n")
endfunction()
add_subdirectory(@MODULE@ SMARTNet)
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_module_cmake_lists_every_engine_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(STUB.replace("@MODULE@", MODULE.as_posix()))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["cmake", "-S", str(src), "-B", str(tmp_path / "build"), f"-DOUT_DIR={out}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    scripts = set((out / "SMARTNet.scripts").read_text().split())
    resources = set((out / "SMARTNet.resources").read_text().split())
    engine_py = {p.relative_to(MODULE).as_posix() for lib in ("SMARTNetLib", "SMARTNetSlicerLib")
                 for p in (MODULE / lib).rglob("*.py") if "__pycache__" not in p.parts}
    assert "SMARTNet.py" in scripts
    assert engine_py <= scripts
    assert {"SMARTNetLib/client/process_runner.py", "SMARTNetLib/cli.py", "SMARTNetLib/commands/__init__.py",
            "SMARTNetSlicerLib/analysis_logic.py"} <= scripts
    assert {"Resources/UI/SMARTNet.ui", "Resources/Icons/SMARTNet.png"} <= resources
    assert not any(r.endswith((".py", ".pyc")) for r in resources)
    bundled = {p.relative_to(MODULE).as_posix() for p in (MODULE / "SMARTNetLib" / "bundled_models").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")} \
        if (MODULE / "SMARTNetLib" / "bundled_models").is_dir() else set()
    assert bundled <= resources
    assert {"SMARTNetLib/contracts/schemas/report.schema.json", "SMARTNetLib/contracts/schemas/model.schema.json"} \
        <= resources
    assert (out / "SMARTNet.generic").read_text() == "TRUE"
    assert (out / "unittests").read_text().split() == ["SMARTNet.py"]


def test_top_level_cmake_has_extension_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert f"set({key} " in text, key
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    assert "add_subdirectory(SMARTNet)" in text and "add_subdirectory(SMARTNetTraining)" in text
    assert "include(${Slicer_EXTENSION_GENERATE_CONFIG})" in text and "include(${Slicer_EXTENSION_CPACK})" in text
    assert (ROOT / "Resources" / "Icons" / "SMARTNet.png").is_file()
    import re

    urls = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]+)"\)', text).group(1).split()
    assert urls and all((ROOT / url.split("/main/", 1)[1]).is_file() for url in urls), urls
    assert "PLACEHOLDERS" in text  # the URLs are not live until the repository is published; say so


def test_ui_file_names_every_widget_the_module_uses():
    import re
    import xml.etree.ElementTree as ET

    ui = ET.parse(MODULE / "Resources" / "UI" / "SMARTNet.ui")
    names = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE / "SMARTNet.py").read_text()))
    assert used <= names, used - names
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    custom = {w.get("class") for w in ui.iter("widget") if not w.get("class").startswith("Q")}
    assert custom <= declared
