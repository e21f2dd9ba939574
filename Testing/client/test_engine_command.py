"""Command lines, environment and model selector entries used by the Slicer modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ENGINE_PARENT
from SMARTNetLib.cli import build_parser
from SMARTNetLib.client.engine_command import (
    DEVICES,
    analyze_command,
    engine_environment,
    model_choices,
    models_command,
    python_slicer_executable,
)


def test_python_slicer_found_on_path_first():
    assert python_slicer_executable(which=lambda name: f"/opt/Slicer/bin/{name}") == "/opt/Slicer/bin/PythonSlicer"


def test_python_slicer_next_to_executable(tmp_path):
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text("")
    found = python_slicer_executable(which=lambda name: None, executable=str(tmp_path / "python-real"),
                                     os_name="posix")
    assert found == str(launcher)


def test_python_slicer_falls_back_to_current_interpreter(tmp_path):
    exe = str(tmp_path / "python3")
    assert python_slicer_executable(which=lambda name: None, executable=exe) == exe


def test_analyze_command_parses_with_the_real_cli():
    args = analyze_command("PythonSlicer", "/tmp/in/input.nrrd", "/tmp/out", model="/m/smartnet-default",
                           device="cpu")
    assert args[:4] == ["PythonSlicer", "-m", "SMARTNetLib.cli", "analyze"]
    parser, modules = build_parser()
    if "analyze" not in modules:
        pytest.skip("analyze command not written yet")
    parsed = parser.parse_args(args[3:])
    assert parsed.command == "analyze" and parsed.events
    assert parsed.device == "cpu" and str(parsed.model) == "/m/smartnet-default"
    assert [str(p) for p in parsed.inputs] == ["/tmp/in/input.nrrd"]
    assert str(parsed.output_dir) == "/tmp/out"


def test_analyze_command_rejects_unknown_device():
    with pytest.raises(ValueError, match="unknown device"):
        analyze_command("py", "a.nrrd", "out", device="tpu")
    assert [d for d, _ in DEVICES] == ["auto", "cuda", "cpu"]


def test_engine_environment_makes_engine_importable_in_a_child(tmp_path):
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base["PYTHONPATH"] = str(tmp_path)
    env = engine_environment(base, ENGINE_PARENT, {"CUDA_VISIBLE_DEVICES": "-1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [ENGINE_PARENT, str(tmp_path)]
    assert env["CUDA_VISIBLE_DEVICES"] == "-1" and base["PYTHONPATH"] == str(tmp_path)
    # The child imports SMARTNetLib from the module folder given on PYTHONPATH.
    out = subprocess.run([sys.executable, "-c", "import SMARTNetLib; print(SMARTNetLib.__file__)"], env=env,
                         capture_output=True, text=True, check=True, cwd=str(tmp_path))
    assert Path(out.stdout.strip()).resolve().is_relative_to(Path(ENGINE_PARENT).resolve())


def test_models_command():
    assert models_command("py") == ["py", "-m", "SMARTNetLib.cli", "models", "--events"]


def test_model_choices_labels_values_and_tooltips():
    event = {"event": "result", "command": "models", "models": [
        {"name": "smartnet-default", "version": "1.0", "path": "/pkg/models/smartnet-default",
         "classes": ["epidural", "subdural"], "description": "Trained on synthetic head CT.",
         "synthetic_only": True, "bundled": True},
        {"name": "my-model", "version": "0.3", "path": "/home/u/.smartnet/models/my-model", "classes": ["hemorrhage"],
         "description": "", "synthetic_only": False, "bundled": False},
    ]}
    bundled, user = model_choices(event)
    assert bundled.label == "smartnet-default 1.0" and user.label == "my-model 0.3 (user)"
    assert bundled.value == "/pkg/models/smartnet-default"
    assert bundled.synthetic_only and not user.synthetic_only
    assert "Trained on synthetic head CT." in bundled.tooltip and "synthetic data only" in bundled.tooltip
    assert "Classes: epidural, subdural" in bundled.tooltip
    assert "synthetic" not in user.tooltip and "user model" in user.tooltip
    assert model_choices({"event": "result", "models": []}) == []
