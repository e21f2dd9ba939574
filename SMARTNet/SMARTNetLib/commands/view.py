"""``smartnet view``: the analysed cases of an output folder in a browser, in Slicer's own views (trame-slicer)."""

from __future__ import annotations

import argparse
from pathlib import Path

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink

HELP = ("review analysis results in a browser: the cases of an output folder, each CT with its segmentation and "
        "activation map in Slicer's slice and 3D views (needs trame-slicer: bash scripts/setup.sh --web)")
DEFAULT_PORT = 8765


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR",
                        help="an output folder of smartnet analyze (one case, or one sub-folder per case)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port of the page (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--max-sessions", type=int, default=4,
                        help="browser sessions open at once (each has its own scene and process; default 4)")
    parser.add_argument("--idle-timeout", type=int, default=60,
                        help="seconds a session's process lives on after its browser tab closed (default 60)")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    from SMARTNetViewer.cases import find_cases
    from SMARTNetViewer.launcher import Launcher, port_problem, web_python

    cases = find_cases(args.output_dir)  # a clear error before anything listens
    python = web_python()
    problem = port_problem(args.host, args.port)
    if problem:
        raise SmartNetError(problem)
    launcher = Launcher(args.output_dir.resolve(), args.host, args.port, python, args.max_sessions,
                        args.idle_timeout)

    def ready(url: str) -> None:
        readable = sum(c.report is not None for c in cases)
        sink.log(f"{readable} analysed case(s) of {args.output_dir} at {url} (Ctrl-C to stop)")

    launcher.serve(ready)
    return {"output_dir": str(args.output_dir), "url": f"http://{args.host}:{args.port}/", "stopped": True}


def summarize(result: dict) -> str:
    return f"smartnet view stopped ({result['url']})"
