"""``smartnet serve --stdio``: one engine process, several requests, the model loaded once, errors contained."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import head_phantom


def serve(requests: list[dict], env: dict | None = None, *extra: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    """Run the real engine with ``requests`` on stdin (then end of input); its events, in order."""
    stdin = "".join(json.dumps(r) + "\n" for r in requests) + "not json\n"
    proc = subprocess.run([sys.executable, "-m", "SMARTNetLib.cli", "serve", "--stdio", *extra], input=stdin,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")], proc


def requests_of(events: list[dict]) -> dict:
    """Events grouped by request id, between its ``request`` and ``done`` events."""
    grouped, current = {}, None
    for event in events:
        key = event["id"] if "id" in event else current
        if event["event"] == "request":
            current = key
        if key is not None:
            grouped.setdefault(key, []).append(event)
        if event["event"] == "done":
            current = None
    return grouped


def test_two_analyses_share_one_loaded_model_and_a_bad_request_is_contained(tiny_model, tmp_path):
    ct = tmp_path / "head.nrrd"
    import SimpleITK as sitk

    sitk.WriteImage(head_phantom()[0], str(ct))
    analyze = ["analyze", str(ct), "--model", str(tiny_model), "--explain", "none", "-o"]
    events, proc = serve([{"id": 1, "argv": [*analyze, str(tmp_path / "a")]},
                          {"id": 2, "argv": ["analyze", str(tmp_path / "missing.nrrd"), "-o", str(tmp_path / "x")]},
                          {"id": 3, "argv": [*analyze, str(tmp_path / "b")]},
                          {"id": 4, "argv": ["serve", "--stdio"]}])
    assert proc.returncode == 0, proc.stderr
    assert events[0]["event"] == "ready"
    grouped = requests_of(events)
    first, missing, second, recursive = (grouped[i] for i in (1, 2, 3, 4))
    assert first[-1] == {"event": "done", "id": 1, "returncode": 0}
    assert first[-2]["event"] == "result" and first[-2]["model_reused"] is False
    assert second[-2]["event"] == "result" and second[-2]["model_reused"] is True  # kept from request 1
    assert any(e["event"] == "progress" for e in second)
    for name in ("a", "b"):
        assert (tmp_path / name / "report.json").is_file()
    assert missing[-1]["returncode"] == 2 and any(e["event"] == "error" and "file not found" in e["message"]
                                                  for e in missing)
    assert not (tmp_path / "x").exists()
    assert recursive[-1]["returncode"] == 2 and "cannot serve itself" in recursive[-2]["message"]
    bad = [e for e in events if e["event"] == "error" and "bad request" in e.get("message", "") and e["id"] is None]
    assert len(bad) == 1  # the "not json" line; the engine then ends at end of input
    assert events[-1]["event"] == "result" and events[-1]["requests"] == 5 and events[-1]["failed"] == 3


def test_another_model_replaces_the_loaded_one(tiny_model, tmp_path):
    import shutil

    import SimpleITK as sitk

    other = shutil.copytree(tiny_model, tmp_path / "other-model")
    ct = tmp_path / "head.nrrd"
    sitk.WriteImage(head_phantom()[0], str(ct))
    base = ["analyze", str(ct), "--explain", "none", "-o"]
    events, proc = serve([{"id": "a", "argv": [*base, str(tmp_path / "1"), "--model", str(tiny_model)]},
                          {"id": "b", "argv": [*base, str(tmp_path / "2"), "--model", str(other)]},
                          {"id": "c", "argv": [*base, str(tmp_path / "3"), "--model", str(other)]}],
                         None, "--preload", str(tiny_model))
    assert proc.returncode == 0, proc.stderr
    results = {k: v[-2] for k, v in requests_of(events).items()}
    assert [results[k]["model_reused"] for k in "abc"] == [True, False, True]
