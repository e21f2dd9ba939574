"""The engine in a child process, as the modules run it: one command at a time, events polled, cancel.

No Qt: the caller drives :meth:`EngineSession.poll` (a QTimer in the Slicer modules, a loop in
:meth:`EngineSession.waitForCompletion` for tests and scripts). ``onStarted`` tells the caller to start
polling.

With ``warm=True``, ``analyze`` and ``compare`` go to one long-lived ``smartnet serve --stdio`` process
(:class:`WarmWorker`) that keeps the imports and the model loaded, so that only the first run pays for them.
Cancel kills that process (the next run starts a new one); a worker that dies is restarted by the next run and
the run it was doing fails with a message that says so; the worker ends when Slicer closes its stdin.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from SMARTNetLib.client import engine_command
from SMARTNetLib.client.process_runner import EXIT_EVENT, ProcessRunner, RunOutcome

# The folder that contains SMARTNetLib (SMARTNet/, in a source tree and in an installed extension).
ENGINE_PARENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


WARM_COMMANDS = ("analyze", "compare")  # what a warm session sends to its served engine


class WarmWorker:
    """One ``smartnet serve --stdio`` process and the request it runs (see the module docstring)."""

    def __init__(self, python: str, env: Mapping[str, str]) -> None:
        self.python, self.env = python, dict(env)
        self.runner: ProcessRunner | None = None
        self.request: dict[str, Any] | None = None
        self.started = 0  # worker processes started so far
        self._next_id = 0

    @property
    def alive(self) -> bool:
        return self.runner is not None and self.runner.running and not self.runner.finished

    def submit(self, argv: list[str]) -> ProcessRunner:
        """Send one command (``argv`` without the interpreter) to the worker, starting it when needed."""
        if not self.alive:
            self.runner = ProcessRunner(engine_command.serve_command(self.python), env=self.env,
                                        interactive=True).start()
            self.started += 1
        self._next_id += 1
        self.request = {"id": self._next_id, "start": time.monotonic(), "final": None, "cancelled": False}
        try:
            self.runner.send(json.dumps({"id": self._next_id, "argv": [a for a in argv if a != "--events"]}))
        except OSError:  # died at once: its exit event ends the request as failed
            logging.warning("SMART-Net: the engine worker could not take the request")
        return self.runner

    def poll(self) -> tuple[list[dict], RunOutcome | None]:
        """The current request's events since the last call, and its outcome once it ended."""
        events: list[dict] = []
        request = self.request
        if self.runner is None or request is None:
            return events, None
        for event in self.runner.poll():
            kind = event["event"]
            if kind == EXIT_EVENT:
                return events, self._finish(self._ended(event))
            if kind == "done" and event.get("id") == request["id"]:
                return events, self._finish(self._done(event))
            if kind in ("ready", "request", "done"):
                continue
            if kind in ("result", "error"):
                request["final"] = event
            events.append(event)
        return events, None

    def cancel(self) -> None:
        """Stop the current request at once: the worker is killed (the next request starts a new one)."""
        if self.request is not None and self.runner is not None:
            self.request["cancelled"] = True
            self.runner.cancel()

    def close(self) -> None:
        """End the worker (it would also end by itself when its stdin closes with Slicer)."""
        if self.runner is not None and self.alive:
            self.runner.cancel()

    def _finish(self, outcome: RunOutcome) -> RunOutcome:
        self.request = None
        return outcome

    def _common(self) -> dict:
        return {"stderr_tail": self.runner.stderr_tail, "elapsed_s": time.monotonic() - self.request["start"]}

    def _done(self, event: dict) -> RunOutcome:
        code, final = int(event.get("returncode", 1)), self.request["final"]
        if code == 0 and final is not None and final["event"] == "result":
            return RunOutcome("succeeded", code, result=final, **self._common())
        message = final.get("message", "") if final is not None and final["event"] == "error" else \
            f"the engine failed (exit status {code})"
        return RunOutcome("failed", code, message=message, **self._common())

    def _ended(self, event: dict) -> RunOutcome:
        code = event.get("returncode")
        if self.request["cancelled"]:
            return RunOutcome("cancelled", code, message="cancelled", **self._common())
        tail = self.runner.stderr_tail
        last = f": {tail[-1]}" if tail else ""
        return RunOutcome("failed", code, message=f"the engine stopped unexpectedly (exit status {code}); it is "
                          f"started again for the next run{last}", **self._common())


class EngineSession:
    """Runs engine commands one at a time; events go to ``onEvent``, ``onFinished(outcome)`` at the end."""

    def __init__(self, environment: Mapping[str, str], python: str | None = None,
                 onStarted: Callable[[], None] | None = None, warm: bool = False) -> None:
        """``warm``: ``analyze`` and ``compare`` run in one long-lived engine process (:class:`WarmWorker`)."""
        self.environment = dict(environment)
        self.python = python or engine_command.python_slicer_executable()
        self.onStarted = onStarted
        self.runner: ProcessRunner | None = None
        self.task = ""  # e.g. "models", "analysis", "training", "register" while a command runs
        self._onEvent: Callable[[dict], None] | None = None
        self._onFinished: Callable[[RunOutcome], None] | None = None
        env = engine_command.engine_environment(self.environment, ENGINE_PARENT_DIR)
        self.worker = WarmWorker(self.python, env) if warm else None

    @property
    def busy(self) -> bool:
        return self.runner is not None or (self.worker is not None and self.worker.request is not None)

    def start(self, args: list[str], onEvent: Callable[[dict], None] | None = None,
              onFinished: Callable[[RunOutcome], None] | None = None, task: str = "") -> ProcessRunner:
        """Start ``args`` with SMARTNetLib importable; raises RuntimeError while another command runs."""
        if self.busy:
            raise RuntimeError("The engine is already running.")
        logging.info("SMART-Net: running %s", " ".join(args))
        prefix = engine_command.cli_command(self.python, "")[:3]
        if self.worker is not None and args[:3] == prefix and len(args) > 3 and args[3] in WARM_COMMANDS:
            runner = self.worker.submit(args[3:])
        else:
            env = engine_command.engine_environment(self.environment, ENGINE_PARENT_DIR)
            runner = self.runner = ProcessRunner(args, env=env).start()
        self.task = task
        self._onEvent, self._onFinished = onEvent, onFinished
        if self.onStarted:
            self.onStarted()
        return runner

    def poll(self) -> bool:
        """Deliver the events that arrived; True while the command still runs."""
        if self.worker is not None and self.worker.request is not None:
            events, outcome = self.worker.poll()
            for event in events:
                if self._onEvent:
                    self._onEvent(event)
            if outcome is None:
                return True
            self._end(outcome)
            return False
        runner = self.runner
        if runner is None:
            return False
        for event in runner.poll():
            if self._onEvent and event["event"] != EXIT_EVENT:
                self._onEvent(event)
        if not runner.finished:
            return True
        self.runner = None
        self._end(runner.outcome())
        return False

    def _end(self, outcome: RunOutcome) -> None:
        onFinished, self._onFinished, self._onEvent = self._onFinished, None, None
        self.task = ""
        if onFinished:
            onFinished(outcome)

    def cancel(self) -> None:
        """Kill the command's process tree; ``onFinished`` follows with the status ``cancelled``."""
        if self.worker is not None and self.worker.request is not None:
            self.worker.cancel()
        if self.runner is not None:
            self.runner.cancel()

    def close(self) -> None:
        """Cancel what runs and end the warm worker (module cleanup, Slicer closing)."""
        self.cancel()
        if self.worker is not None:
            self.worker.close()

    def waitForCompletion(self, timeoutSeconds: float = 600.0, interval: float = 0.02) -> None:
        """Poll until the command ended (cancel it and raise TimeoutError after ``timeoutSeconds``)."""
        deadline = time.monotonic() + timeoutSeconds
        while self.poll():
            if time.monotonic() > deadline:
                self.cancel()
                self.poll()
                raise TimeoutError(f"the SMART-Net engine did not finish in {timeoutSeconds} s")
            time.sleep(interval)

    def listModels(self, onDone: Callable[[list, str], None]) -> None:
        """``onDone(choices, errorMessage)`` with the models ``smartnet models`` finds."""

        def finished(outcome: RunOutcome) -> None:
            if outcome.succeeded:
                onDone(engine_command.model_choices(outcome.result), "")
            else:
                onDone([], outcome.message)

        if self.busy:
            onDone([], "the engine is busy")
            return
        self.start(engine_command.models_command(self.python), onFinished=finished, task="models")


class EngineClient:
    """What a module logic that runs the engine offers its widget, delegated to its :class:`EngineSession`."""

    session: EngineSession

    @property
    def busy(self) -> bool:
        return self.session.busy

    def cancel(self) -> None:
        self.session.cancel()

    def waitForCompletion(self, timeoutSeconds: float = 600.0) -> None:
        self.session.waitForCompletion(timeoutSeconds)

    def listModels(self, onDone: Callable[[list, str], None]) -> None:
        self.session.listModels(onDone)
