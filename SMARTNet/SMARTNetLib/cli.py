"""The ``smartnet`` command line: one sub-command per module in ``SMARTNetLib.commands``.

Each command module defines ``HELP`` (one line), ``configure(parser)`` and
``run(args, sink) -> dict``; the returned dict becomes the final ``result`` event. User errors are
raised as :class:`SmartNetError` and end the command with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from types import ModuleType

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink, JsonLinesSink, TerminalSink

# Sub-commands, in the order ``smartnet --help`` lists them; modules are imported lazily so that
# ``smartnet models`` does not pay for importing torch.
COMMANDS = ("analyze", "compare", "models", "demo", "synth", "train", "pretrain", "register", "embed", "serve", "view")
# An analysis names its findings and explains them while the head's frame is registered on a second thread. With
# OpenMP's default spin-waiting, torch's threads then wait on a core that SimpleITK holds (Grad-CAM's backward pass
# was many times slower on 2 cores); passive waiting did not slow the network. Read by OpenMP when torch loads, so
# set before that; a value the user set wins.
PASSIVE_WAIT_COMMANDS = ("analyze", "demo", "serve", "compare")


def _command_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__package__}.commands.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"{__package__}.commands.{name}":
            return None
        raise


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The argument parser with every available sub-command."""
    from SMARTNetLib import __version__

    parser = argparse.ArgumentParser(
        prog="smartnet", description="SMART-Net intracranial hemorrhage analysis of head CT (research use only)."
    )
    parser.add_argument("--version", action="version", version=f"smartnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    for name in COMMANDS:
        module = _command_module(name)
        if module is None:
            continue
        modules[name] = module
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(cmd)
        cmd.add_argument("--events", action="store_true",
                         help="write progress as JSON lines on stdout (see SMARTNetLib.contracts.events)")
        cmd.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser, modules


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that staging folders are cleaned up on the way out."""


def _terminate(_signum, _frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run ``smartnet``; returns the exit status (0 success, 2 user error, 1 internal error)."""
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    sink: EventSink = JsonLinesSink() if args.events else TerminalSink(bar=sys.stderr.isatty())
    module = modules[args.command]
    if args.command in PASSIVE_WAIT_COMMANDS and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        result = module.run(args, sink)
    except SmartNetError as err:
        if args.debug:
            sink.close()
            raise
        sink.error(str(err), err.path)
        return 2
    except Terminated:
        sink.error("terminated")
        return 143
    except KeyboardInterrupt:
        sink.error("interrupted")
        return 130
    except Exception as err:  # an internal error: one line unless --debug
        if args.debug:
            sink.close()
            raise
        sink.error(f"internal error: {type(err).__name__}: {err} (run with --debug for the traceback)")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sink.close()
    if args.events:
        sink.result(command=args.command, **(result or {}))
    else:
        summary = getattr(module, "summarize", None)
        print(summary(result) if summary else json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
