"""Which of the engine's Python packages are missing in an interpreter, and how to install them.

The Slicer module calls :func:`check` in Slicer's own Python (where the engine's child process will
run), asks the user, then installs torch through the PyTorch extension's ``PyTorchUtils`` (it picks
the CUDA build that fits the driver) and the rest with pip. Nothing is imported to check: torch is
large, and a half-installed package must not break Slicer's GUI process.

Standard library only (imported by Slicer's GUI process).

Example::

    problems = check()
    if problems:
        plan = install_plan(problems)      # InstallPlan(torch="torch>=2.2", pip=["monai>=1.4", ...])
        print(describe(problems))
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Requirement:
    """One engine dependency."""

    import_name: str
    distribution: str
    minimum: str = ""
    provided_by_slicer: bool = False  # ships with Slicer: never pip-install it over Slicer's own copy

    @property
    def spec(self) -> str:
        return f"{self.distribution}>={self.minimum}" if self.minimum else self.distribution


# Same packages and minimum versions as pyproject.toml's [project] dependencies (a test checks it).
ENGINE_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("torch", "torch", "2.2"),
    Requirement("monai", "monai", "1.4"),
    Requirement("numpy", "numpy", "1.24", provided_by_slicer=True),
    Requirement("SimpleITK", "SimpleITK", "2.3", provided_by_slicer=True),
    Requirement("slicerio", "slicerio", "1.4"),
    Requirement("nrrd", "pynrrd", "1.0"),
    Requirement("pydicom", "pydicom", "2.4", provided_by_slicer=True),
    Requirement("tqdm", "tqdm", "4.60"),
    Requirement("sklearn", "scikit-learn", "1.3"),
    Requirement("scipy", "scipy", "1.10", provided_by_slicer=True),
    Requirement("matplotlib", "matplotlib", "3.7"),
    Requirement("vtk", "vtk", "9.3", provided_by_slicer=True),
    Requirement("nibabel", "nibabel", "5"),
)


@dataclass(frozen=True)
class Problem:
    """A requirement that is not met: ``installed`` is None when the package is missing."""

    requirement: Requirement
    installed: str | None

    @property
    def reason(self) -> str:
        if self.installed is None:
            return "missing"
        return f"version {self.installed} is older than {self.requirement.minimum}"


@dataclass
class InstallPlan:
    """How to fix problems: ``torch`` (a requirement string or None), pip requirement strings,
    and packages that only a Slicer reinstall can fix."""

    torch: str | None = None
    pip: list[str] = field(default_factory=list)
    unfixable: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.torch is None and not self.pip and not self.unfixable


def check(requirements: Iterable[Requirement] = ENGINE_REQUIREMENTS,
          find_spec: Callable[[str], object] = importlib.util.find_spec,
          version: Callable[[str], str] = importlib.metadata.version) -> list[Problem]:
    """Requirements that are missing or too old in this interpreter (nothing is imported).

    Packages without distribution metadata (Slicer builds VTK itself) count as present when they
    can be found; their version is not checked.
    """
    importlib.invalidate_caches()
    problems = []
    for req in requirements:
        try:
            found = find_spec(req.import_name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            problems.append(Problem(req, None))
            continue
        try:
            installed = version(req.distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
        if req.minimum and version_tuple(installed) < version_tuple(req.minimum):
            problems.append(Problem(req, installed))
    return problems


def install_plan(problems: Iterable[Problem]) -> InstallPlan:
    plan = InstallPlan()
    for p in problems:
        if p.requirement.provided_by_slicer:
            plan.unfixable.append(p.requirement.spec)
        elif p.requirement.import_name == "torch":
            plan.torch = p.requirement.spec
        else:
            plan.pip.append(p.requirement.spec)
    return plan


def torch_version_requirement(spec: str) -> str:
    """``"torch>=2.2"`` -> ``">=2.2"`` (the form ``PyTorchUtilsLogic.installTorch`` takes)."""
    return spec[len("torch"):] if spec.startswith("torch") else spec


def restart_needed(problems: Iterable[Problem], loaded_modules: Mapping[str, object] | None = None) -> bool:
    """True when a package to be updated is already imported in this process.

    The engine runs in a child process, so newly installed packages need no restart; only an old
    version already loaded in Slicer's own process (e.g. torch imported by another extension) does.
    """
    loaded = sys.modules if loaded_modules is None else loaded_modules
    return any(p.requirement.import_name in loaded for p in problems if not p.requirement.provided_by_slicer)


def describe(problems: Iterable[Problem]) -> str:
    """One line per problem, for the confirmation dialog."""
    return "\n".join(f"- {p.requirement.spec}: {p.reason}" for p in problems)


def version_tuple(text: str) -> tuple[int, ...]:
    """Leading numeric parts of a version (``"2.13.0+cpu"`` -> ``(2, 13, 0)``).

    Hand-written: the ``>=X.Y`` checks here need nothing more, and ``packaging`` is not guaranteed
    in every interpreter this runs in.
    """
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)
