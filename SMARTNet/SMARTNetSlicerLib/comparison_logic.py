"""Compare with prior: write two volume nodes, run ``smartnet compare`` in a child process, load the follow-up's
segmentation on the prior's grid and the comparison table.

The nodes are tagged as results of the prior (baseline) volume with their own roles, so that a new comparison
replaces them and an analysis of the same volume leaves them alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from SMARTNetLib.client import analysis_results, engine_command
from SMARTNetLib.contracts import files
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetSlicerLib.analysis_logic import (
    AnalysisLogic,
    loadSegmentation,
    loadThenClean,
    markResult,
    removeWithHelpers,
    resultNodes,
    textTable,
)
from SMARTNetSlicerLib.engine_session import EngineClient, EngineSession

ROLES = ("comparison-segmentation", "comparison-table")
FOLLOWUP_ATTRIBUTE = "SMARTNet.FollowupVolumeID"


@dataclass
class ComparisonNodes:
    """The nodes and numbers of one finished comparison."""

    prior: Any
    current: Any
    segmentation: Any  # the current (follow-up) scan's hemorrhage on the prior's grid
    table: Any
    result: dict  # comparison.json


class ComparisonLogic(EngineClient):
    """Runs ``smartnet compare`` on a prior and a current volume node (no GUI)."""

    def __init__(self, analysis: AnalysisLogic, session: EngineSession) -> None:
        """``analysis``: the module's analysis logic (its scene, module logics and volume writer)."""
        self.analysis = analysis
        self.session = session

    @property
    def scene(self) -> Any:
        return self.analysis.scene

    def compare(self, priorVolume: Any, currentVolume: Any, model: str | None = None, device: str = "auto",
                onEvent: Callable[[dict], None] | None = None,
                onFinished: Callable[[Any, ComparisonNodes | None, str], None] | None = None) -> None:
        """Start the comparison; returns at once. ``onFinished(outcome, nodes, errorMessage)`` as
        :meth:`AnalysisLogic.analyze`'s; the temp folder is removed in every case."""
        if priorVolume is None or currentVolume is None:
            raise ValueError("Select the prior scan and the current scan.")
        if priorVolume.GetID() == currentVolume.GetID():
            raise ValueError("The prior scan and the current scan are the same volume.")
        tempDir = tempfile.mkdtemp(prefix="SMARTNet-compare-")
        try:
            paths = {}
            for role, volume in (("prior", priorVolume), ("current", currentVolume)):
                paths[role] = os.path.join(tempDir, f"{role}.nrrd")
                self.analysis.writeVolume(volume, paths[role])
            outputDir = os.path.join(tempDir, "output")
            args = engine_command.compare_command(self.session.python, paths["prior"], paths["current"], outputDir,
                                                  model, device)
            ids = (priorVolume.GetID(), currentVolume.GetID())

            def load(outcome: Any) -> ComparisonNodes:
                return self.loadComparison(*(self.scene.GetNodeByID(i) for i in ids), outputDir)

            self.session.start(args, onEvent=onEvent, onFinished=loadThenClean(load, tempDir, onFinished),
                               task="comparison")
        except Exception:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise

    def loadComparison(self, priorVolume: Any, currentVolume: Any, outputDir: str) -> ComparisonNodes:
        """The follow-up segmentation (on the prior's grid) and the comparison table from ``outputDir``;
        replaces an earlier comparison of ``priorVolume``. Files are checked before Slicer's readers see them."""
        if priorVolume is None or currentVolume is None:
            raise ValueError("A compared volume was removed during the comparison.")
        path = os.path.join(outputDir, files.COMPARISON_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                result = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise SmartNetError(f"cannot read the comparison ({err})", path) from None
        analysis_results.verify_files(outputDir, result)
        name = f"{currentVolume.GetName()} on {priorVolume.GetName()}"
        segmentationPath = os.path.join(outputDir, result["files"]["followup_in_baseline"])
        segmentation = loadSegmentation(self.analysis.logics, segmentationPath,
                                        analysis_results.comparison_report(result), priorVolume, f"{name} hemorrhage")
        try:
            header, rows = analysis_results.comparison_table(result)
            table = textTable(self.scene, f"{name} comparison", header, rows)
        except Exception:
            removeWithHelpers(self.scene, segmentation)
            raise
        self.removeComparison(priorVolume)
        for role, node in zip(ROLES, (segmentation, table)):
            markResult(self.scene, node, role, priorVolume)
            node.SetAttribute(FOLLOWUP_ATTRIBUTE, currentVolume.GetID())
        return ComparisonNodes(priorVolume, currentVolume, segmentation, table, result)

    def comparisonNodes(self, priorVolume: Any) -> list:
        return resultNodes(self.scene, priorVolume, ROLES)

    def removeComparison(self, priorVolume: Any) -> None:
        for node in self.comparisonNodes(priorVolume):
            removeWithHelpers(self.scene, node)
