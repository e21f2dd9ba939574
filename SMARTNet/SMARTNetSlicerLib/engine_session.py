"""The engine in a child process, as the modules run it: one command at a time, events polled, cancel.

No Qt: the caller drives :meth:`EngineSession.poll` (a QTimer in the Slicer modules, a loop in
:meth:`EngineSession.waitForCompletion` for tests and scripts). ``onStarted`` tells the caller to start
polling.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

from SMARTNetLib import engine_command
from SMARTNetLib.process_runner import EXIT_EVENT, ProcessRunner, RunOutcome

# The folder that contains SMARTNetLib (SMARTNet/, in a source tree and in an installed extension).
ENGINE_PARENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EngineSession:
    """Runs engine commands one at a time; events go to ``onEvent``, ``onFinished(outcome)`` at the end."""

    def __init__(self, environment: Mapping[str, str], python: str | None = None,
                 onStarted: Callable[[], None] | None = None) -> None:
        self.environment = dict(environment)
        self.python = python or engine_command.python_slicer_executable()
        self.onStarted = onStarted
        self.runner: ProcessRunner | None = None
        self.task = ""  # e.g. "models", "analysis", "training", "register" while a command runs
        self._onEvent: Callable[[dict], None] | None = None
        self._onFinished: Callable[[RunOutcome], None] | None = None

    @property
    def busy(self) -> bool:
        return self.runner is not None

    def start(self, args: list[str], onEvent: Callable[[dict], None] | None = None,
              onFinished: Callable[[RunOutcome], None] | None = None, task: str = "") -> ProcessRunner:
        """Start ``args`` with SMARTNetLib importable; raises RuntimeError while another command runs."""
        if self.busy:
            raise RuntimeError("The engine is already running.")
        env = engine_command.engine_environment(self.environment, ENGINE_PARENT_DIR)
        logging.info("SMART-Net: running %s", " ".join(args))
        self.runner = ProcessRunner(args, env=env).start()
        self.task = task
        self._onEvent, self._onFinished = onEvent, onFinished
        if self.onStarted:
            self.onStarted()
        return self.runner

    def poll(self) -> bool:
        """Deliver the events that arrived; True while the command still runs."""
        runner = self.runner
        if runner is None:
            return False
        for event in runner.poll():
            if self._onEvent and event["event"] != EXIT_EVENT:
                self._onEvent(event)
        if not runner.finished:
            return True
        onFinished, self._onFinished, self._onEvent, self.runner = self._onFinished, None, None, None
        self.task = ""
        if onFinished:
            onFinished(runner.outcome())
        return False

    def cancel(self) -> None:
        """Kill the command's process tree; ``onFinished`` follows with the status ``cancelled``."""
        if self.runner is not None:
            self.runner.cancel()

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
