"""SMARTNetSlicerLib runs in Slicer and on slicer-core alike: no Qt, no application, no global scene."""

from __future__ import annotations

import ast
import re
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "SMARTNet" / "SMARTNetSlicerLib"
FORBIDDEN = re.compile(r"^(qt|ctk|slicer\.app|slicer\.modules|slicer\.mrmlScene|slicer\.util\.load\w*|"
                       r"slicer\.util\.getNode\w*|slicer\.util\.setSliceViewerLayers)$")


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def test_slicer_lib_uses_only_injected_logics():
    files = sorted(LIB.glob("*.py"))
    assert len(files) >= 6
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Attribute):
                names = [dotted(node)]
            found += [f"{path.name}: {name}" for name in names if FORBIDDEN.match(name)]
    assert found == []


def test_the_rule_catches_what_it_forbids():
    assert all(FORBIDDEN.match(n) for n in ("qt", "slicer.app", "slicer.modules", "slicer.util.loadVolume",
                                            "slicer.mrmlScene"))
    assert not FORBIDDEN.match("slicer.vtkMRMLSliceLogic")


def test_slicer_side_imports_no_engine_heavy_package():
    """The modules import this package at Slicer's start-up, before the engine's packages may be installed."""
    import subprocess
    import sys

    modules = ", ".join(f"SMARTNetSlicerLib.{p.stem}" for p in sorted(LIB.glob("*.py"))
                        if p.stem not in ("__init__", "offscreen_views"))
    code = (f"import sys, {modules}; "
            "print(sorted(m for m in ('torch', 'monai', 'SimpleITK', 'slicerio', 'scipy') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
