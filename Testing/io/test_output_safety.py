"""Nothing lost, nothing partial: concurrent runs into one folder, SIGTERM and SIGKILL at any point, a full
or read-only disk. After each, the output folder holds one complete result (its files match the report's
checksums), the previous one or nothing; never a mix."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from conftest import head_phantom, run_cli
from SMARTNetLib.client.analysis_results import verify_files
from SMARTNetLib.contracts.report import read_report
from SMARTNetLib.io import outputs


def start(ct: Path, out: Path, model: Path, pause: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "SMARTNET_COMMIT_PAUSE_S": str(pause)}
    return subprocess.Popen([sys.executable, "-m", "SMARTNetLib.cli", "analyze", str(ct), "--output-dir", str(out),
                             "--model", str(model), "--device", "cpu"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def complete_result(out: Path) -> str:
    """The input whose complete result ``out`` holds (raises if the files do not match the report)."""
    report = read_report(out / "report.json")
    verify_files(out, report)
    assert set(report["sha256"]) <= {p.name for p in out.iterdir()}
    assert not list(out.glob(outputs.STAGE_PREFIX + "*")) and not (out / outputs.COMMIT_JOURNAL).exists()
    return report["input"]


@pytest.fixture()
def two_cts(tmp_path) -> tuple[Path, Path]:
    paths = []
    for name, bleed in (("a.nrrd", True), ("b.nrrd", False)):
        ct, _ = head_phantom(bleed=bleed)
        sitk.WriteImage(ct, str(tmp_path / name))
        paths.append(tmp_path / name)
    return paths[0], paths[1]


def test_two_runs_into_one_folder_at_once_leave_one_complete_result(two_cts, tiny_model, tmp_path):
    out = tmp_path / "out"
    runs = [start(ct, out, tiny_model, pause=0.3) for ct in two_cts]  # the pause makes the moves overlap
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    assert complete_result(out) in {str(p) for p in two_cts}


def test_a_run_killed_while_moving_is_finished_by_the_next(two_cts, tiny_model, tmp_path):
    a, b = two_cts
    out = tmp_path / "out"
    assert run_cli("analyze", str(a), "-o", str(out), "--model", str(tiny_model), "--device", "cpu").returncode == 0
    run = start(b, out, tiny_model, pause=1.0)
    deadline = time.time() + 120
    while not (out / outputs.COMMIT_JOURNAL).exists() and time.time() < deadline and run.poll() is None:
        time.sleep(0.01)
    time.sleep(0.5)  # in the middle of the moves
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert (out / outputs.COMMIT_JOURNAL).exists(), "the kill came too late to test the move"
    assert outputs.finish_interrupted_commit(out)  # what the next run into the folder does first
    assert complete_result(out) == str(b)


@pytest.mark.parametrize("seed", range(4))
def test_sigterm_or_sigkill_at_a_random_point(two_cts, tiny_model, tmp_path, seed):
    a, b = two_cts
    rng = random.Random(seed)
    out = tmp_path / "out"
    assert run_cli("analyze", str(a), "-o", str(out), "--model", str(tiny_model), "--device", "cpu").returncode == 0
    kind = signal.SIGTERM if seed % 2 else signal.SIGKILL
    run = start(b, out, tiny_model, pause=rng.choice([0.0, 0.2]))
    time.sleep(rng.uniform(0.5, 5.0))
    run.send_signal(kind)
    _, err = run.communicate(timeout=120)
    if kind == signal.SIGTERM and run.returncode == 143:
        assert err.strip().splitlines()[-1].endswith("terminated")
    outputs.finish_interrupted_commit(out)
    if kind == signal.SIGKILL:  # its staging folder is removed by the next run into the folder
        with outputs.folder_lock(out):
            outputs._remove_stale_stages(out)
    assert complete_result(out) in {str(a), str(b)}


def _mount_tmpfs(path: Path, size: str, *options: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={size}", *options)), "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture()
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "160k"):
        pytest.skip("needs root to mount a small tmpfs")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_gives_one_line_and_keeps_the_previous_result(small_disk, two_cts, tiny_model, tmp_path):
    a, _b = two_cts
    ct, _ = head_phantom(size=(96, 80, 20))  # its outputs do not fit in 160 kB
    big = tmp_path / "big.nrrd"
    sitk.WriteImage(ct, str(big))
    out = small_disk / "out"
    assert run_cli("analyze", str(a), "-o", str(out), "--model", str(tiny_model), "--device", "cpu").returncode == 0
    proc = run_cli("analyze", str(big), "-o", str(out), "--model", str(tiny_model), "--device", "cpu")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no space left" in proc.stderr and str(out) in proc.stderr
    assert complete_result(out) == str(a)
    fresh = small_disk / "fresh"
    proc = run_cli("analyze", str(big), "-o", str(fresh), "--model", str(tiny_model), "--device", "cpu")
    assert proc.returncode == 2 and not fresh.exists()


def test_a_read_only_folder_gives_one_line(small_disk, two_cts, tiny_model):
    a, _b = two_cts
    out = small_disk / "out"
    assert run_cli("analyze", str(a), "-o", str(out), "--model", str(tiny_model), "--device", "cpu").returncode == 0
    before = json.loads((out / "report.json").read_text())
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True).returncode == 0
    proc = run_cli("analyze", str(a), "-o", str(out), "--model", str(tiny_model), "--device", "cpu")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "not writable" in proc.stderr or "Read-only" in proc.stderr
    assert json.loads((out / "report.json").read_text()) == before
