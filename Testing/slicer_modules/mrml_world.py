"""A real MRML scene from slicer-core (no Slicer application, no Qt), with the module logics injected the
way the SMARTNet modules take them, and the real engine run as a child process.

This folder is not called ``slicer``: slicer-core's ``slicer`` meta-package extends its ``__path__`` with
every ``slicer`` folder on ``sys.path`` and imports what it finds there, tests included. It has no
``conftest.py`` either (a second module named ``conftest`` would shadow ``Testing/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from SMARTNetLib.commands.demo import SAMPLE_CT
from SMARTNetSlicerLib import scene_context
from SMARTNetSlicerLib.analysis_logic import AnalysisLogic
from SMARTNetSlicerLib.engine_session import EngineSession

SAMPLE_HEAD = SAMPLE_CT  # the bundled sample head CT


class SceneUnderTest:
    """Module logics on a fresh scene plus the three slice views."""

    def __init__(self) -> None:
        self.logics = scene_context.standalone()
        self.scene = self.logics.scene
        self.sliceLogics = scene_context.addSliceViews(self.logics)

    def nodeIDs(self) -> set[str]:
        return {self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())}

    def loadVolume(self, path: Path | str, name: str = "head") -> object:
        node = self.logics.volumes.AddArchetypeVolume(str(path), name, 4)  # 4: this file only
        assert node is not None, f"slicer-core could not read {path}"
        return node


def new_engine() -> EngineSession:
    """The engine in a child process: this interpreter, which has the engine installed (Slicer: PythonSlicer)."""
    return EngineSession(os.environ)


def run_analysis(logic: AnalysisLogic, volume, model: str | None = None, timeout: float = 300) -> tuple:
    """Analyze ``volume`` as the module does and wait; returns (outcome, results, error, events)."""
    events, finished = [], []
    logic.analyze(volume, model, "cpu", onEvent=events.append, onFinished=lambda *args: finished.append(args))
    logic.waitForCompletion(timeout)
    assert len(finished) == 1, "onFinished must be called exactly once"
    outcome, results, error = finished[0]
    return outcome, results, error, events


