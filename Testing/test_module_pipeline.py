"""The SMARTNet module's whole non-Slicer path: write a volume, run ``analyze`` in a child process
through ProcessRunner exactly as SMARTNetLogic.analyze does, read the results as loadResults does."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import SimpleITK as sitk

from conftest import ENGINE_PARENT, head_phantom
from SMARTNetLib.client import analysis_results, engine_command
from SMARTNetLib.client.process_runner import ProcessRunner
from SMARTNetLib.contracts.report import read_report


def _run(args, tmp_path, timeout):
    env = engine_command.engine_environment(os.environ, ENGINE_PARENT, {"OMP_NUM_THREADS": "1",
                                                                       "SMARTNET_HOME": str(tmp_path / "home")})
    runner = ProcessRunner(args, env=env, cwd=str(tmp_path)).start()
    events = runner.wait(timeout=timeout)
    return runner.outcome(), events


def test_analyze_through_the_runner(tmp_path, tiny_model):
    shutil.copytree(tiny_model, tmp_path / "home" / "models" / "tiny-test")  # a user model, as after training
    outcome, _ = _run(engine_command.models_command(sys.executable), tmp_path, 60)
    assert outcome.succeeded, outcome.message
    choices = [c for c in engine_command.model_choices(outcome.result) if c.name == "tiny-test"]
    assert choices, outcome.result

    image, _ = head_phantom()
    input_path = tmp_path / "input.nrrd"
    sitk.WriteImage(image, str(input_path))
    output_dir = tmp_path / "output"

    args = engine_command.analyze_command(sys.executable, str(input_path), str(output_dir), choices[0].value, "cpu")
    outcome, events = _run(args, tmp_path, 300)
    assert outcome.succeeded, (outcome.message, outcome.stderr_tail)
    assert any(e["event"] == "progress" for e in events)
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions)

    case = analysis_results.case_from_result(outcome.result)
    report = read_report(case.report)
    files = analysis_results.result_files(case.output_dir, report)
    assert files.segmentation is not None
    header, rows = analysis_results.findings_table(report)
    assert rows[0][0] == "Intracranial hemorrhage (any)" and 0.0 <= float(rows[0][1]) <= 1.0
    if files.activation:
        heat = sitk.ReadImage(files.activation)
        assert heat.GetSize() == image.GetSize()
        assert np.allclose(heat.GetOrigin(), image.GetOrigin()) and np.allclose(heat.GetSpacing(), image.GetSpacing())
