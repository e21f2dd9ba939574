"""The engine's stage packages keep their rules: the Slicer modules import only the light packages
(``contracts`` and ``client``, standard library only), and those import nothing heavier."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LIB = ROOT / "SMARTNet" / "SMARTNetLib"
LIGHT = ("SMARTNetLib.contracts", "SMARTNetLib.client")
SLICER_SIDE = [ROOT / "SMARTNet" / "SMARTNet.py", ROOT / "SMARTNetTraining" / "SMARTNetTraining.py",
               *sorted((ROOT / "SMARTNet" / "SMARTNetSlicerLib").glob("*.py"))]
HEAVY = ("torch", "monai", "SimpleITK", "numpy", "scipy", "vtk", "matplotlib", "slicerio", "nibabel", "pydicom",
         "sklearn")


def imported_modules(path: Path, at_import_time: bool = False) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names in the file: at any depth (functions included), or
    only those run when the module is imported (``at_import_time``: module level, ``try`` blocks included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = ast.walk(tree)
    if at_import_time:
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                                                ast.If)) for n in ast.walk(top)]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "SMARTNetLib"}
    return found


def engine_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m == "SMARTNetLib" or m.startswith("SMARTNetLib.")}


def light_modules() -> list[str]:
    return sorted(f"SMARTNetLib.{p.relative_to(LIB).with_suffix('').as_posix().replace('/', '.')}"
                  for package in ("contracts", "client") for p in (LIB / package).glob("*.py"))


def test_slicer_modules_import_only_the_light_packages():
    used = {f"{path.name}: {m}" for path in SLICER_SIDE for m in engine_imports(path)}
    assert len(used) >= 10
    assert sorted(u for u in used if not u.split(": ")[1].startswith(LIGHT)) == []


def test_light_packages_import_only_the_standard_library_and_each_other():
    """At import time; a function may import an optional package it needs (``training_set`` exports with
    SimpleITK, which Slicer has), and ``if TYPE_CHECKING:`` blocks are not run."""
    allowed = {"contracts": ("SMARTNetLib.contracts",), "client": LIGHT}
    problems = []
    for package, inside in allowed.items():
        for path in sorted((LIB / package).glob("*.py")):
            for module in imported_modules(path, at_import_time=True):
                top = module.split(".")[0]
                if top == "SMARTNetLib" and not module.startswith(inside):
                    problems.append(f"{package}/{path.name}: {module}")
                elif top != "SMARTNetLib" and top not in sys.stdlib_module_names:
                    problems.append(f"{package}/{path.name}: {module}")
    assert problems == []


def test_light_packages_import_with_the_heavy_packages_unimportable():
    """The Slicer GUI imports these at start-up, before the engine's packages may be installed."""
    modules = light_modules()
    assert len(modules) >= 12
    code = f"""
import importlib, importlib.abc, sys
HEAVY = {HEAVY!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{{name}} is blocked")
sys.meta_path.insert(0, Blocker())
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the blocker let torch through")
for name in {modules!r}:
    importlib.import_module(name)
print(len({modules!r}), "imported;", sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{len(modules)} imported; []"


def test_the_import_rules_see_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from SMARTNetLib.analysis import inference\n"
                      "    from SMARTNetLib import cli\n")
    assert engine_imports(sample) == {"SMARTNetLib.analysis", "SMARTNetLib", "SMARTNetLib.cli"}
    assert not all(m.startswith(LIGHT) for m in engine_imports(sample))
    assert imported_modules(sample, at_import_time=True) == {"os"}
