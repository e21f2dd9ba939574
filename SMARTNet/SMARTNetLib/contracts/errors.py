"""The engine's user-facing error: one line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class SmartNetError(Exception):
    """An error the user can act on. ``str(err)`` is the one-line message shown to them."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
