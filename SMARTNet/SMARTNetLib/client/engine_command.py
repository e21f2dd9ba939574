"""Command lines for running the engine CLI in a child process, as the Slicer modules do.

Standard library only (imported by Slicer's GUI process). The child is Slicer's ``PythonSlicer``
launcher running ``-m SMARTNetLib.cli``; ``SMARTNetLib`` becomes importable there through
``PYTHONPATH`` pointing at the folder that contains it (the scripted module's folder).

Example::

    python = python_slicer_executable()
    args = analyze_command(python, "/tmp/in.nrrd", "/tmp/out", model="/models/m", device="auto")
    env = engine_environment(os.environ, module_dir)
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEVICES: tuple[tuple[str, str], ...] = (("auto", "Auto"), ("cuda", "GPU (CUDA)"), ("cpu", "CPU"))
"""``--device`` values and their labels in the GUI."""


def python_slicer_executable(which: Callable[[str], str | None] = shutil.which,
                             executable: str = sys.executable, os_name: str = os.name) -> str:
    """Path of the ``PythonSlicer`` launcher.

    Inside Slicer it is on ``PATH`` (Slicer's own ``slicer.util.executePythonModule`` relies on
    that); otherwise it sits next to the Python executable. Outside Slicer (tests, plain Python)
    the current interpreter is returned, which runs the engine the same way.
    """
    found = which("PythonSlicer")
    if found:
        return found
    sibling = os.path.join(os.path.dirname(executable), "PythonSlicer" + (".exe" if os_name == "nt" else ""))
    if os.path.isfile(sibling):
        return sibling
    return executable


def engine_environment(base: Mapping[str, str], engine_parent_dir: str, extra: Mapping[str, str] | None = None,
                       ) -> dict[str, str]:
    """``base`` with ``engine_parent_dir`` first on ``PYTHONPATH`` (and ``extra`` variables set).

    ``PYTHONUNBUFFERED`` makes the child's stderr arrive line by line too (stdout events are
    flushed by the engine itself).
    """
    env = dict(base)
    paths = [engine_parent_dir] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and
                                   p != engine_parent_dir]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def cli_command(python: str, command: str, *args: str) -> list[str]:
    """``python -m SMARTNetLib.cli COMMAND ARGS... --events``."""
    return [python, "-m", "SMARTNetLib.cli", command, *args, "--events"]


def analyze_command(python: str, input_path: str, output_dir: str, model: str | None = None,
                    device: str = "auto", explain: str | None = None, output_format: str | None = None) -> list[str]:
    """The ``smartnet analyze`` command line of one Slicer run (report and heat map included);
    ``output_format="dicom-seg"`` for a DICOM folder input adds a DICOM SEG."""
    if device not in {d for d, _ in DEVICES}:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(d for d, _ in DEVICES)}")
    args = [str(input_path), "--output-dir", str(output_dir), "--device", device]
    if output_format:
        args += ["--format", output_format]
    if model:
        args += ["--model", str(model)]
    if explain:
        args += ["--explain", explain]
    return cli_command(python, "analyze", *args)


def compare_command(python: str, baseline: str, followup: str, output_dir: str, model: str | None = None,
                    device: str = "auto") -> list[str]:
    """The ``smartnet compare`` command line (a follow-up CT against its baseline)."""
    if device not in {d for d, _ in DEVICES}:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(d for d, _ in DEVICES)}")
    args = [str(baseline), str(followup), "--output-dir", str(output_dir), "--device", device]
    if model:
        args += ["--model", str(model)]
    return cli_command(python, "compare", *args)


def serve_command(python: str) -> list[str]:
    """The ``smartnet serve --stdio`` command line of the long-lived engine the SMARTNet module reuses."""
    return cli_command(python, "serve", "--stdio")


def models_command(python: str) -> list[str]:
    """The ``smartnet models`` command line (lists bundled and user models)."""
    return cli_command(python, "models")


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model selector."""

    label: str
    value: str  # what ``--model`` receives: the model's folder
    tooltip: str
    synthetic_only: bool
    name: str
    version: str


def model_choices(result_event: Mapping[str, Any]) -> list[ModelChoice]:
    """Selector entries from the final event of ``smartnet models --events``."""
    choices = []
    for model in result_event.get("models", []):
        name, version = str(model.get("name", "?")), str(model.get("version", ""))
        where = "bundled" if model.get("bundled") else "user model"
        label = f"{name} {version}".strip() + ("" if model.get("bundled") else " (user)")
        lines = [f"{name} {version} ({where})".replace("  ", " ")]
        if model.get("description"):
            lines.append(str(model["description"]))
        if model.get("classes"):
            lines.append("Classes: " + ", ".join(map(str, model["classes"])))
        if model.get("synthetic_only"):
            lines.append("Trained on synthetic data only: not for clinical or research conclusions.")
        lines.append(str(model.get("path", "")))
        choices.append(ModelChoice(label, str(model.get("path") or name), "\n".join(lines),
                                   bool(model.get("synthetic_only")), name, version))
    return choices
