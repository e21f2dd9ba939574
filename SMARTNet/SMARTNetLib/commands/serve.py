"""``smartnet serve --stdio``: a long-lived engine that keeps the model loaded between requests.

One request per line on stdin, a JSON object ``{"id": ..., "argv": ["analyze", "ct.nrrd", "-o", "out"]}``
(any sub-command but ``serve``; ``--events`` is added). Requests run one at a time; each one's events are the
same JSON lines as ``smartnet COMMAND --events`` writes, framed by ``{"event": "request", "id": ...}`` and
``{"event": "done", "id": ..., "returncode": N}``. A failing request ends in its ``error`` event and a non-zero
``returncode``; the engine goes on with the next. End of input ends the engine. The imports and the last
model loaded stay in memory (:func:`SMARTNetLib.model.store.load_model_cached`), which is what makes the second
request fast. To cancel a request, end the process (the client then starts a new one).
"""

from __future__ import annotations

import argparse
import json
import sys

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink, JsonLinesSink

HELP = "a long-lived engine: JSON requests on stdin, the JSON event stream on stdout, the model kept loaded"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stdio", action="store_true", required=True,
                        help="read requests from stdin and write events to stdout (the only transport)")
    parser.add_argument("--preload", metavar="MODEL", nargs="?", const="", default=None,
                        help="import the engine and load MODEL (default: the bundled model) before the first "
                             "request")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    from SMARTNetLib import cli
    from SMARTNetLib.analysis import anatomy_worker
    from SMARTNetLib.analysis.engine_process import retain_freed_memory

    retain_freed_memory()  # each request reuses the last one's memory
    anatomy_worker.start()  # ready before the first head
    out = JsonLinesSink(sys.stdout)
    if args.preload is not None:
        _preload(args.preload or None, out)
    out.emit({"event": "ready"})
    served = failed = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        request_id, argv = None, None
        try:
            request = json.loads(line)
            request_id = request.get("id") if isinstance(request, dict) else None
            argv = _argv(request)
        except (json.JSONDecodeError, SmartNetError) as err:
            out.emit({"event": "error", "message": f"bad request: {err}", "id": request_id})
            out.emit({"event": "done", "id": request_id, "returncode": 2})
            served, failed = served + 1, failed + 1
            continue
        out.emit({"event": "request", "id": request_id, "argv": argv})
        try:
            code = cli.main([*argv, "--events"])
        except SystemExit as exit_:  # argparse: the usage message went to stderr
            code = exit_.code if isinstance(exit_.code, int) else 2
            out.emit({"event": "error", "message": f"bad arguments for {argv[0]} (see stderr)"})
        out.emit({"event": "done", "id": request_id, "returncode": code})
        served += 1
        failed += code != 0
    return {"requests": served, "failed": failed}


def _argv(request) -> list[str]:
    if not isinstance(request, dict) or not isinstance(request.get("argv"), list) or not request["argv"]:
        raise SmartNetError('a request is {"id": ..., "argv": ["analyze", ...]}')
    argv = [str(a) for a in request["argv"]]
    if argv[0] == "serve":
        raise SmartNetError("serve cannot serve itself")
    return [a for a in argv if a != "--events"]


def _preload(model: str | None, out: JsonLinesSink) -> None:
    from SMARTNetLib.analysis.inference import resolve_device
    from SMARTNetLib.model.store import load_model_cached, resolve_model

    model_dir = resolve_model(model)
    load_model_cached(model_dir, resolve_device("auto"))
    out.emit({"event": "log", "level": "info", "message": f"model {model_dir.name} loaded"})


def summarize(result: dict) -> str:
    """The last line on stdout: still one JSON event, so that the stream stays JSON lines throughout."""
    return json.dumps({"event": "result", "command": "serve", **result})
