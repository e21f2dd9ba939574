"""ProcessRunner with real child processes: events, stray output, failures, cancel of a process tree."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ENGINE_PARENT
from SMARTNetLib.client.engine_command import engine_environment, models_command
from SMARTNetLib.client.process_runner import ProcessRunner


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_events_are_parsed_in_order_and_end_with_exit():
    runner = ProcessRunner(python("""
        import json, sys
        for i in range(3):
            print(json.dumps({"event": "progress", "stage": "inference", "fraction": i / 4, "message": f"{i}"}),
                  flush=True)
        print("a stray line from some library", flush=True)
        print("a warning on stderr", file=sys.stderr, flush=True)
        print(json.dumps({"event": "result", "command": "demo", "value": 42}), flush=True)
    """)).start()
    events = runner.wait(timeout=30)
    kinds = [e["event"] for e in events]
    assert kinds.count("progress") == 3
    assert [e["fraction"] for e in events if e["event"] == "progress"] == [0.0, 0.25, 0.5]
    stray = [e for e in events if e["event"] == "log"]
    assert {(e["stream"], e["message"]) for e in stray} == {("stdout", "a stray line from some library"),
                                                             ("stderr", "a warning on stderr")}
    assert kinds[-1] == "exit" and events[-1]["returncode"] == 0
    outcome = runner.outcome()
    assert outcome.succeeded and outcome.result["value"] == 42 and outcome.elapsed_s > 0
    assert runner.finished and not runner.running


def test_poll_never_blocks_while_child_runs():
    runner = ProcessRunner(python("""
        import json, time
        print(json.dumps({"event": "log", "level": "info", "message": "started"}), flush=True)
        time.sleep(2)
        print(json.dumps({"event": "result", "command": "x"}), flush=True)
    """)).start()
    seen = []
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        t0 = time.monotonic()
        seen = runner.poll()
        assert time.monotonic() - t0 < 0.1
        time.sleep(0.02)
    assert seen[0]["message"] == "started"
    assert runner.running and not runner.finished
    runner.wait(timeout=30)
    assert runner.outcome().succeeded


def test_error_event_gives_failed_outcome_with_message():
    runner = ProcessRunner(python("""
        import json, sys
        print(json.dumps({"event": "error", "message": "scan.nii: not a 3D image", "file": "scan.nii"}))
        sys.exit(2)
    """)).start()
    runner.wait(timeout=30)
    outcome = runner.outcome()
    assert outcome.status == "failed" and outcome.returncode == 2
    assert outcome.message == "scan.nii: not a 3D image"


def test_crash_without_final_event_reports_stderr():
    runner = ProcessRunner(python("import sys; sys.stderr.write('Segmentation fault\\n'); sys.exit(139)")).start()
    runner.wait(timeout=30)
    outcome = runner.outcome()
    assert outcome.status == "failed" and outcome.returncode == 139
    assert "exit status 139" in outcome.message and "Segmentation fault" in outcome.message


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for its parent to reap it counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@pytest.mark.skipif(os.name == "nt", reason="process-tree check uses POSIX signals and /proc")
def test_cancel_kills_child_and_grandchild():
    # The child starts a grandchild (as the PythonSlicer launcher starts the real interpreter) and
    # reports its pid; cancel must kill both.
    runner = ProcessRunner(python("""
        import json, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(json.dumps({"event": "log", "level": "info", "message": str(grandchild.pid)}), flush=True)
        time.sleep(120)
    """)).start()
    grandchild_pid = None
    deadline = time.monotonic() + 20
    while grandchild_pid is None and time.monotonic() < deadline:
        for event in runner.poll():
            if event["event"] == "log" and event.get("stream") is None:
                grandchild_pid = int(event["message"])
        time.sleep(0.02)
    assert grandchild_pid is not None
    child_pid = runner.process.pid
    assert _alive(child_pid) and _alive(grandchild_pid)

    t0 = time.monotonic()
    runner.cancel()
    events = runner.wait(timeout=10)
    assert time.monotonic() - t0 < 10
    assert events[-1] == {"event": "exit", "returncode": events[-1]["returncode"], "cancelled": True}
    assert runner.outcome().status == "cancelled"
    deadline = time.monotonic() + 5
    while _alive(grandchild_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)
    assert not _alive(grandchild_pid)


def test_cancel_after_exit_is_harmless():
    runner = ProcessRunner(python("print('done')")).start()
    runner.wait(timeout=30)
    runner.cancel()
    assert runner.outcome().status == "failed"  # no final event: a plain script is not an engine


def test_real_cli_models_command(tmp_path):
    """The real ``smartnet models --events``, run the way the Slicer module runs it."""
    env = engine_environment(os.environ, ENGINE_PARENT, {"SMARTNET_HOME": str(tmp_path)})
    runner = ProcessRunner(models_command(sys.executable), env=env, cwd=str(tmp_path)).start()
    events = runner.wait(timeout=120)
    outcome = runner.outcome()
    if not outcome.succeeded and "invalid choice: 'models'" in " ".join(outcome.stderr_tail):
        pytest.skip("the models command is not written yet")
    assert outcome.succeeded, (outcome.message, outcome.stderr_tail)
    assert outcome.result["command"] == "models"
    assert isinstance(outcome.result["models"], list)
    for model in outcome.result["models"]:
        assert {"name", "version", "path", "classes", "synthetic_only", "bundled"} <= set(model)
    json.dumps(events)  # every event is plain JSON
