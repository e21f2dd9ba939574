"""The warm engine session the SMARTNet module uses: analyses in one served engine process, cancel and crash
restart it, other commands still run one-shot."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import SimpleITK as sitk

from conftest import child_pids, head_phantom, process_gone
from SMARTNetLib.client import engine_command
from SMARTNetSlicerLib.engine_session import EngineSession


def run(session: EngineSession, args: list[str], timeout: float = 300, cancel_after_event: str | None = None):
    """Start ``args``, poll until it ends (optionally cancelling at the first event of a kind); the outcome and
    the events."""
    events, finished = [], []

    def on_event(event):
        events.append(event)
        if cancel_after_event and event["event"] == cancel_after_event:
            session.cancel()

    session.start(args, onEvent=on_event, onFinished=finished.append, task="analysis")
    session.waitForCompletion(timeout)
    assert len(finished) == 1
    return finished[0], events


def test_analyses_reuse_one_served_engine_and_survive_cancel_and_crash(tiny_model, tmp_path):
    ct = tmp_path / "head.nrrd"
    sitk.WriteImage(head_phantom()[0], str(ct))
    session = EngineSession(os.environ, python=sys.executable, warm=True)

    def analyze(name: str) -> list[str]:
        return engine_command.analyze_command(sys.executable, str(ct), str(tmp_path / name), model=str(tiny_model),
                                              device="cpu", explain="none")

    first, events = run(session, analyze("a"))
    assert first.succeeded, first.message
    assert first.result["command"] == "analyze" and first.result["model_reused"] is False
    assert any(e["event"] == "progress" for e in events) and not any(e["event"] == "done" for e in events)
    worker = session.worker.runner
    second, _ = run(session, analyze("b"))
    assert second.succeeded and second.result["model_reused"] is True
    assert session.worker.runner is worker and session.worker.started == 1  # the same process
    assert (tmp_path / "b" / "report.json").is_file()

    cancelled, _ = run(session, analyze("c"), cancel_after_event="progress")
    assert cancelled.status == "cancelled" and not (tmp_path / "c" / "report.json").exists()
    assert not session.busy and not worker.running

    failed, _ = run(session, engine_command.analyze_command(sys.executable, str(tmp_path / "none.nrrd"),
                                                            str(tmp_path / "x")))
    assert failed.status == "failed" and "file not found" in failed.message and session.worker.started == 2

    # the worker dies during a request: that run fails and says so, the next run starts a new worker
    crashed = []
    session.start(analyze("d"), onFinished=crashed.append)
    time.sleep(0.5)
    helpers = child_pids(session.worker.runner.process.pid)  # the engine's anatomy worker
    assert helpers or not Path("/proc").is_dir()
    os.kill(session.worker.runner.process.pid, 9)
    session.waitForCompletion(60)
    assert crashed[0].status == "failed" and "stopped unexpectedly" in crashed[0].message
    assert all(process_gone(pid) for pid in helpers), "a killed engine left its anatomy worker behind"
    again, _ = run(session, analyze("e"))
    assert again.succeeded and session.worker.started == 3

    # commands that are not served still run in their own process
    models, _ = run(session, engine_command.models_command(sys.executable))
    assert models.succeeded and "models" in models.result and session.worker.started == 3
    session.close()
    deadline = time.monotonic() + 10
    while session.worker.runner.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not session.worker.runner.running
