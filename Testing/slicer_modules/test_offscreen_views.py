"""The screenshot script: Slicer's own views of an analysis, rendered offscreen, show what they should."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import vtk
from vtk.util import numpy_support

from conftest import ROOT


def read_png(path: Path) -> np.ndarray:
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    width, height, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[::-1]


def test_views_are_rendered_and_show_the_segments(tmp_path):
    out = tmp_path / "shots"
    # the bundled model: it finds the sample's bleeds, so there are segments to see
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_slicer_views.py"), "--output-dir", str(out),
                           "--size", "200", "--each"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "views.json").read_text())
    assert set(summary["views"]) == {"axial", "coronal", "sagittal", "3d"}
    montage = read_png(out / summary["montage"])
    assert montage.shape[:2] == (200, 800)
    for name, view in summary["views"].items():
        pixels = read_png(out / view["file"])
        assert pixels.shape[:2] == (200, 200)
        left, right = view["columns"]
        assert np.array_equal(montage[:, 200 * left:200 * right, :3], pixels[..., :3]), name
        assert pixels.std() > 10, f"{name} is blank"
    # the largest finding is centred in every slice view and framed by the 3D view: its colour shows there
    largest = max(summary["findings"], key=summary["findings"].get)
    for name, view in summary["views"].items():
        assert view["segment_pixels"][largest] > 20, (name, view["segment_pixels"])
