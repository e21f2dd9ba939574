"""Progress events shared by the CLI, the Slicer modules and training.

With ``--events`` a command writes one JSON object per line on stdout, nothing else:

``{"event": "progress", "stage": "inference", "fraction": 0.42, "message": "slice 12/32"}``
    ``fraction`` is the progress of the whole command in [0, 1]; ``stage`` names the current step
    (``load``, ``preprocess``, ``inference``, ``explain``, ``write``, ``train``, ``validate``...).
``{"event": "log", "level": "info" | "warning", "message": "..."}``
    Something the user should read; warnings also go into the report.
``{"event": "metrics", "epoch": 3, "epochs": 20, "train_loss": 0.41, "val_dice": 0.62, ...}``
    Training only: one per epoch (and per logged step with ``"step"``).
``{"event": "result", ...}``
    The last line of a successful command, with its outputs (command-specific fields).
``{"event": "error", "message": "scan.nii: not a 3D image", "file": "scan.nii"}``
    The last line of a failed command; the exit status is non-zero.

Every stream ends with exactly one ``result`` or ``error`` event.

``smartnet serve --stdio`` adds three framing events: ``{"event": "ready"}`` once it reads requests,
``{"event": "request", "id": ..., "argv": [...]}`` before a request's own stream and
``{"event": "done", "id": ..., "returncode": 0}`` after it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal, TextIO, TypedDict

EVENT_TYPES = ("progress", "log", "metrics", "result", "error", "ready", "request", "done")
FINAL_EVENTS = ("result", "error")


class ProgressEvent(TypedDict):
    event: Literal["progress"]
    stage: str
    fraction: float  # of the whole command, in [0, 1]
    message: str


class LogEvent(TypedDict):
    event: Literal["log"]
    level: Literal["info", "warning"]
    message: str


class ErrorEvent(TypedDict):
    event: Literal["error"]
    message: str
    file: str | None  # the file the problem is about, when there is one


class AnalyzedCase(TypedDict):
    """One analysed input in the ``result`` event of ``smartnet analyze``."""

    input: str
    output_dir: str
    report: str  # path of its report.json (SMARTNetLib.contracts.report)
    ich_probability: float
    total_volume_ml: float
    findings: dict[str, float]  # class -> mL, classes with blood only
    warnings: list[str]
    clinical: dict[str, Any]


class AnalyzeResult(TypedDict):
    """The ``result`` event of ``smartnet analyze`` (``event`` and ``command`` added by the CLI)."""

    model: dict[str, str]  # name, version
    device: str
    cases: list[AnalyzedCase]
    model_reused: bool  # the served engine kept the model loaded
    volumes_per_minute: float  # analysed volumes per minute of this command (after the model was loaded)


class EventSink:
    """Receives events; this base class drops them (library use)."""

    def emit(self, event: dict[str, Any]) -> None:  # noqa: D102
        pass

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.emit(ProgressEvent(event="progress", stage=stage, fraction=round(min(max(fraction, 0.0), 1.0), 4),
                                message=message))

    def log(self, message: str, level: str = "info") -> None:
        self.emit(LogEvent(event="log", level=level, message=message))

    def warning(self, message: str) -> None:
        self.log(message, "warning")

    def metrics(self, **values: Any) -> None:
        self.emit({"event": "metrics", **values})

    def result(self, **payload: Any) -> None:
        self.emit({"event": "result", **payload})

    def error(self, message: str, file: str | None = None) -> None:
        self.emit(ErrorEvent(event="error", message=message, file=file))

    def close(self) -> None:
        pass


class JsonLinesSink(EventSink):
    """Writes each event as one JSON line, flushed at once (for a parent process to read)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event, default=_jsonable) + "\n")
        self.stream.flush()


class TerminalSink(EventSink):
    """A progress bar on stderr (tqdm) with log lines above it; the result is printed by the caller."""

    def __init__(self, stream: TextIO | None = None, bar: bool = True) -> None:
        self.stream = stream or sys.stderr
        self._bar = None
        self._use_bar = bar

    def emit(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "progress":
            if self._use_bar:
                self._update_bar(event)
        elif kind == "log":
            prefix = "warning: " if event["level"] == "warning" else ""
            self._write(prefix + event["message"])
        elif kind == "metrics":
            self._write("  ".join(f"{k}={_fmt(v)}" for k, v in event.items() if k != "event"))
        elif kind == "error":
            self.close()
            self._write(f"error: {event['message']}")

    def _update_bar(self, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=1000, file=self.stream, leave=False, dynamic_ncols=True,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self._bar.n = int(event["fraction"] * 1000)
        self._bar.set_description_str(f"{event['stage']}: {event['message']}"[:60], refresh=False)
        self._bar.refresh()

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class StageProgress:
    """Maps a stage's own progress in [0, 1] onto a slice ``[start, end]`` of the command's progress."""

    def __init__(self, sink: EventSink, stage: str, start: float, end: float) -> None:
        self.sink, self.stage, self.start, self.end = sink, stage, start, end

    def __call__(self, fraction: float, message: str = "") -> None:
        self.sink.progress(self.stage, self.start + (self.end - self.start) * fraction, message)


def parse_event(line: str) -> dict[str, Any]:
    """Parse and check one event line; raises ``ValueError`` for anything that is not an event."""
    event = json.loads(line)
    if not isinstance(event, dict) or event.get("event") not in EVENT_TYPES:
        raise ValueError(f"not a SMART-Net event: {line.strip()[:200]}")
    if event["event"] == "progress":
        fraction = event.get("fraction")
        if not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0 or "stage" not in event:
            raise ValueError(f"bad progress event: {line.strip()[:200]}")
    if event["event"] == "error" and not isinstance(event.get("message"), str):
        raise ValueError(f"error event without a message: {line.strip()[:200]}")
    return event


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
