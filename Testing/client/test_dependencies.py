"""Dependency check and install plan for Slicer's Python."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from SMARTNetLib.client.dependencies import (
    ENGINE_REQUIREMENTS,
    Problem,
    Requirement,
    check,
    describe,
    install_plan,
    restart_needed,
    torch_version_requirement,
    version_tuple,
)

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_requirements_match_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    parsed = {}
    for dep in deps:
        name, minimum = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", dep).groups()
        parsed[name.lower()] = minimum
    assert {r.distribution.lower(): r.minimum for r in ENGINE_REQUIREMENTS} == parsed


def test_everything_is_present_in_the_test_environment():
    assert check() == []


def test_import_names_are_right():
    # Every requirement's import name belongs to its distribution (e.g. pynrrd -> nrrd).
    for req in ENGINE_REQUIREMENTS:
        if req.import_name == "vtk":
            continue  # Slicer's VTK has no pip metadata; the venv's does, but its top-level list is long
        top_level = importlib.metadata.distribution(req.distribution).read_text("top_level.txt")
        files = importlib.metadata.distribution(req.distribution).files or []
        names = set((top_level or "").split()) | {str(f).split("/")[0] for f in files}
        assert req.import_name in names, req


def test_missing_and_old_packages_are_found():
    reqs = (Requirement("torch", "torch", "2.2"), Requirement("monai", "monai", "1.4"),
            Requirement("nrrd", "pynrrd", "1.0"), Requirement("vtk", "vtk", "9.3", provided_by_slicer=True),
            Requirement("json", "json-has-no-dist", "1.0"))
    present = {"monai", "nrrd", "json"}
    versions = {"monai": "1.3.2", "pynrrd": "1.1.1"}

    def find_spec(name):
        return object() if name in present else None

    def version(dist):
        if dist not in versions:
            raise importlib.metadata.PackageNotFoundError(dist)
        return versions[dist]

    problems = check(reqs, find_spec=find_spec, version=version)
    assert [(p.requirement.import_name, p.installed) for p in problems] == [
        ("torch", None), ("monai", "1.3.2"), ("vtk", None)]
    assert problems[1].reason == "version 1.3.2 is older than 1.4"
    plan = install_plan(problems)
    assert plan.torch == "torch>=2.2" and plan.pip == ["monai>=1.4"] and plan.unfixable == ["vtk>=9.3"]
    assert torch_version_requirement(plan.torch) == ">=2.2"
    assert describe(problems).splitlines() == ["- torch>=2.2: missing", "- monai>=1.4: version 1.3.2 is older than 1.4",
                                              "- vtk>=9.3: missing"]


def test_find_spec_errors_count_as_missing():
    def broken(name):
        raise ValueError("bad spec")

    assert [p.installed for p in check((Requirement("x", "x"),), find_spec=broken)] == [None]


def test_restart_needed_only_for_packages_loaded_in_this_process():
    torch_missing = Problem(Requirement("torch", "torch", "2.2"), None)
    old_monai = Problem(Requirement("monai", "monai", "1.4"), "1.3")
    assert not restart_needed([torch_missing], loaded_modules={"sys": sys})
    assert restart_needed([torch_missing, old_monai], loaded_modules={"monai": object()})
    assert not restart_needed([], loaded_modules=sys.modules)


def test_version_tuple():
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("1.6.1rc1") == (1, 6, 1)
    assert version_tuple("1.10") > version_tuple("1.9")
    assert version_tuple("dev") == ()
