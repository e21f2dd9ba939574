"""Run a command in a child process and read its JSON-lines events without blocking the caller.

The Slicer modules run the engine CLI (``smartnet ... --events``) through this class: two reader
threads (stdout and stderr) fill a queue, and the GUI thread drains it with :meth:`ProcessRunner.poll`
from a timer. :meth:`ProcessRunner.cancel` kills the whole process tree, which matters because
``PythonSlicer`` is a launcher that starts the real Python interpreter as its own child.

Standard library only: this module is imported by Slicer's GUI process, before the engine's
dependencies (torch, MONAI...) may be installed.

Example::

    runner = ProcessRunner([sys.executable, "-m", "SMARTNetLib.cli", "models", "--events"])
    runner.start()
    while not runner.finished:
        for event in runner.poll():
            print(event)
        time.sleep(0.1)
    outcome = runner.outcome()          # RunOutcome(status="succeeded", result={...}, ...)
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from SMARTNetLib.contracts.events import parse_event

# Event the runner adds itself, after the child's last line: the exit status of the child.
EXIT_EVENT = "exit"
_STDERR_TAIL_LINES = 20


@dataclass
class RunOutcome:
    """How a finished run ended.

    ``status`` is ``"succeeded"`` (a ``result`` event and exit status 0), ``"cancelled"``,
    or ``"failed"`` (an ``error`` event, or the child ended without a final event).
    """

    status: str
    returncode: int | None
    result: dict[str, Any] | None = None
    message: str = ""
    stderr_tail: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class ProcessRunner:
    """A child process whose stdout is a stream of SMART-Net events (see :mod:`SMARTNetLib.contracts.events`).

    Lines on stdout that are not events, and every line on stderr, are delivered as
    ``{"event": "log", "level": "output", "message": line, "stream": "stdout"|"stderr"}``.
    After both streams closed and the child exited, one ``{"event": "exit", "returncode": int,
    "cancelled": bool}`` ends what :meth:`poll` returns.
    """

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None,
                 interactive: bool = False) -> None:
        """``interactive``: the child's stdin is a pipe that :meth:`send` writes to (else it reads nothing)."""
        self.args = [str(a) for a in args]
        self.interactive = interactive
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.cancelled = False
        self.final_event: dict[str, Any] | None = None
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._exit_seen = False
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._start_time: float | None = None
        self._end_time: float | None = None

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> ProcessRunner:
        """Start the child and its reader threads; returns self."""
        if self.process is not None:
            raise RuntimeError("the process was already started")
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            # No console window; a process group of its own so that it can be killed as a tree.
            info = subprocess.STARTUPINFO()
            info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
            info.wShowWindow = 0
            kwargs["startupinfo"] = info
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            # A session (and process group) of its own: cancel() signals the whole group.
            kwargs["start_new_session"] = True
        self._start_time = time.monotonic()
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdin=subprocess.PIPE if self.interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs,
        )
        self._threads = [
            threading.Thread(target=self._read, args=(self.process.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, "stderr"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._wait, daemon=True).start()
        return self

    def send(self, line: str) -> None:
        """Write one line to the child's stdin (``interactive`` runners); OSError when the child is gone."""
        if not self.interactive or self.process is None or self.process.stdin is None:
            raise RuntimeError("this runner has no stdin to write to")
        self.process.stdin.write(line.rstrip("\n") + "\n")
        self.process.stdin.flush()

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    def poll(self) -> list[dict[str, Any]]:
        """Events received since the last call (never blocks)."""
        events = []
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return events
            if event["event"] in ("result", "error"):
                self.final_event = event
            elif event["event"] == EXIT_EVENT:
                self._exit_seen = True
                self._end_time = time.monotonic()
            events.append(event)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def finished(self) -> bool:
        """True once :meth:`poll` has returned the final ``exit`` event."""
        return self._exit_seen

    @property
    def elapsed_s(self) -> float:
        """Seconds from start to the exit event (or to now while running)."""
        if self._start_time is None:
            return 0.0
        return (self._end_time or time.monotonic()) - self._start_time

    def wait(self, timeout: float | None = None, poll_interval: float = 0.05) -> list[dict[str, Any]]:
        """Block until finished (for scripts and tests); returns every event not yet polled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while not self.finished:
            events.extend(self.poll())
            if self.finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.args[0]} still running after {timeout} s")
            time.sleep(poll_interval)
        return events

    def cancel(self, timeout: float = 5.0) -> None:
        """Kill the child and everything it started; waits up to ``timeout`` seconds for it to end."""
        if self.process is None or self.process.poll() is not None:
            return
        self.cancelled = True
        kill_process_tree(self.process.pid)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def outcome(self) -> RunOutcome:
        """How the run ended; only meaningful once :attr:`finished` is True."""
        code = self.process.returncode if self.process is not None else None
        common = {"stderr_tail": list(self._stderr_tail), "elapsed_s": self.elapsed_s}
        final = self.final_event
        if self.cancelled:
            return RunOutcome("cancelled", code, message="cancelled", **common)
        if final is not None and final["event"] == "result" and code == 0:
            return RunOutcome("succeeded", code, result=final, **common)
        if final is not None and final["event"] == "error":
            return RunOutcome("failed", code, message=final.get("message", ""), **common)
        last = f": {common['stderr_tail'][-1]}" if common["stderr_tail"] else ""
        return RunOutcome("failed", code, message=f"the engine stopped unexpectedly (exit status {code}){last}",
                          **common)

    # -- threads ---------------------------------------------------------------------------------
    def _read(self, stream, name: str) -> None:
        for line in iter(stream.readline, ""):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if name == "stdout":
                try:
                    self._queue.put(parse_event(line))
                    continue
                except ValueError:  # json.JSONDecodeError is a ValueError
                    pass
            else:
                self._stderr_tail.append(line)
            self._queue.put({"event": "log", "level": "output", "message": line, "stream": name})
        stream.close()

    def _wait(self) -> None:
        for thread in self._threads:
            thread.join()
        code = self.process.wait()
        self._queue.put({"event": EXIT_EVENT, "returncode": code, "cancelled": self.cancelled})


def kill_process_tree(pid: int) -> None:
    """Kill process ``pid`` and all its descendants.

    POSIX: the runner starts the child in a new session, so one ``killpg`` reaches every process
    that stayed in the group; descendants that left it are found with psutil when it is installed.
    Windows: ``taskkill /T`` kills the tree (psutil is not needed there).
    """
    descendants = _descendants(pid)
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    else:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for child in descendants:
        try:
            child.kill()
        except Exception:  # already gone (psutil.NoSuchProcess) or not ours
            pass


def _descendants(pid: int) -> list:
    try:
        import psutil
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []

