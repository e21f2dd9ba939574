"""Screenshots of the SMARTNet module's results in Slicer's own views, rendered offscreen with slicer-core.

The sample head CT is analyzed by the engine (a child process, as the module runs it), the results are
loaded by the module's logic (SMARTNetSlicerLib.analysis_logic), and the axial, coronal and sagittal slice
views (CT, segmentation, activation foreground) and the 3D view (segment surfaces, activation volume
rendering) are rendered by Slicer's displayable managers. Writes a montage of the four views
(``slicer-views.png``; ``--each``: one PNG per view too) and ``views.json`` (what each picture shows,
measured on its pixels).

    .venv/bin/python scripts/render_slicer_views.py [--output-dir Resources/Screenshots] [--model M]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SMARTNet"))

from SMARTNetSlicerLib import offscreen_views  # noqa: E402

offscreen_views.prefer_egl()

from SMARTNetLib.client import analysis_results  # noqa: E402
from SMARTNetLib.commands.demo import SAMPLE_CT as SAMPLE  # noqa: E402
from SMARTNetSlicerLib import scene_context  # noqa: E402
from SMARTNetSlicerLib.analysis_logic import AnalysisLogic  # noqa: E402
from SMARTNetSlicerLib.engine_session import EngineSession  # noqa: E402

CT_WINDOW = (80.0, 40.0)  # brain window: width, level
VIEW_NAMES = {"Red": "axial", "Yellow": "sagittal", "Green": "coronal"}
ZOOM = 0.75  # slice field of view relative to the whole volume
FRAME_3D_MM = 45.0  # half-size of the box around the largest finding that the 3D camera frames


def write_png(pixels: np.ndarray, path: Path) -> None:
    import vtk
    from vtk.util import numpy_support

    height, width, _ = pixels.shape
    image = vtk.vtkImageData()
    image.SetDimensions(width, height, 1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(pixels[::-1]).reshape(-1, 3),
                                                               deep=True))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()


def render(output_dir: Path, input_path: Path = SAMPLE, model: str | None = None, size: int = 400,
           each: bool = False) -> dict:
    """Analyze ``input_path``, load the results as the module does and render the four views."""
    output_dir.mkdir(parents=True, exist_ok=True)
    logics = scene_context.standalone()
    sliceLogics = scene_context.addSliceViews(logics)
    sliceViews = [offscreen_views.SliceView(logics, s, (size, size)) for s in sliceLogics]
    view3d = offscreen_views.ThreeDView(logics, size=(size, size))

    ct = logics.volumes.AddArchetypeVolume(str(input_path), "head CT", 4)
    display = ct.GetDisplayNode()
    display.SetAutoWindowLevel(0)
    display.SetWindowLevel(*CT_WINDOW)
    logic = AnalysisLogic(logics, EngineSession(os.environ))
    finished = []
    logic.analyze(ct, model, "cpu", onFinished=lambda *args: finished.append(args))
    logic.waitForCompletion(600)
    outcome, results, error = finished[0]
    if error or results is None:
        raise SystemExit(f"{input_path}: analysis failed: {error or outcome.status}")

    segmentation = results.segmentation
    segmentation.CreateDefaultDisplayNodes()
    segmentation.CreateClosedSurfaceRepresentation()
    segDisplay = segmentation.GetDisplayNode()
    segDisplay.SetOpacity2DFill(0.15)  # outlines over the heat map
    segDisplay.SetOpacity2DOutline(1.0)
    segDisplay.SetOpacity3D(0.6)  # the activation rendering shows through the surfaces
    for sliceLogic in sliceLogics:
        sliceLogic.GetSliceCompositeNode().SetBackgroundVolumeID(ct.GetID())
    logic.showActivation(results.activation, True, 0.5)
    logic.showActivation3D(results.activation, True)

    target = results.largestFinding
    summary = {"input": str(input_path), "model": results.report["model"], "views": {}}
    segments = {}
    seg = segmentation.GetSegmentation()
    for index in range(seg.GetNumberOfSegments()):
        segments[seg.GetNthSegment(index).GetName()] = tuple(seg.GetNthSegment(index).GetColor())
    pictures = []
    for sliceLogic, view in zip(sliceLogics, sliceViews):
        view.fit()
        sliceNode = sliceLogic.GetSliceNode()
        fov = sliceNode.GetFieldOfView()
        sliceNode.SetFieldOfView(fov[0] * ZOOM, fov[1] * ZOOM, fov[2])
        if target is not None:
            sliceLogic.GetSliceNode().JumpSliceByOffsetting(*target.centroid_ras)
        pictures.append((VIEW_NAMES[sliceLogic.GetSliceNode().GetLayoutName()], view.render()))
    if target is not None:  # the 3D view frames the largest finding and what lies around it
        view3d.lookAt([c + d for c in target.centroid_ras for d in (-FRAME_3D_MM, FRAME_3D_MM)])
    pictures.append(("3d", view3d.render()))

    images = []
    for name, window in pictures:
        path = output_dir / f"slicer-{name}.png" if each else None
        pixels = offscreen_views.capture(window, path)
        images.append(pixels)
        summary["views"][name] = {
            "file": path.name if path else None, "columns": [len(images) - 1, len(images)],
            "size": list(pixels.shape[:2]), "std": round(float(pixels.std()), 2),
            "segment_pixels": {n: offscreen_views.colour_pixels(pixels, c) for n, c in segments.items()},
        }
    write_png(np.concatenate(images, axis=1), output_dir / "slicer-views.png")
    summary["montage"] = "slicer-views.png"
    summary["findings"] = {f.display_name: round(f.volume_ml, 2) for f in analysis_results.findings(results.report)
                           if f.volume_ml > 0}
    (output_dir / "views.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "Resources" / "Screenshots")
    parser.add_argument("--input", type=Path, default=SAMPLE)
    parser.add_argument("--model", default=None, help="model folder or name (default: the bundled model)")
    parser.add_argument("--size", type=int, default=400, help="pixels per view (square)")
    parser.add_argument("--each", action="store_true", help="also one PNG per view")
    args = parser.parse_args()
    print(json.dumps(render(args.output_dir, args.input, args.model, args.size, args.each), indent=2))


if __name__ == "__main__":
    main()
