"""benchmarks/gpu_analyze.py runs where no GPU is (``--device cpu``), so that it is ready when one is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT


def test_gpu_benchmark_script_runs_on_the_cpu_and_keeps_the_result(tmp_path, tiny_model):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_analyze.py"), "--device", "cpu",
                           "--model", str(tiny_model), "--repeats", "1", "--variants", "fp32,channels_last",
                           "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"fp32", "channels_last"}
    for values in result["variants"].values():
        assert values["median_s"] > 0 and "inference_2d" in values["stages_median_s"]
    assert result["variants"]["channels_last"]["ich_probability_change"] <= 1e-3  # a memory layout, same numbers


def test_gpu_benchmark_without_cuda_says_so_and_writes_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the script measures instead")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_analyze.py"), "--output", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "no CUDA device" in proc.stdout
    assert not out.exists()
