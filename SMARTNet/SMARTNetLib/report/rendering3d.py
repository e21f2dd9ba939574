"""Offscreen 3D rendering of an analysis with VTK: hemorrhage surfaces and activation inside a translucent skull.

Headless machines have no X display, so the render window must be an offscreen one: EGL (Debian ``libegl1``,
``libegl-mesa0``, ``libgl1-mesa-dri``; Mesa renders in software when there is no GPU) or OSMesa (Debian
``libosmesa6``). The VTK >= 9.4 wheels pick the window class at run time from ``VTK_DEFAULT_OPENGL_WINDOW``.
A missing or broken OpenGL library does not raise in VTK: the process dies (segmentation fault). So the scene
is rendered in a child process (``python -m SMARTNetLib.report.rendering3d scene.npz image.npy``), one back end after
another, and :func:`render_3d` returns ``None`` with a reason when none works, so that the report can still be
written without the 3D view.

All surfaces are built in voxel index space and placed with the image's index-to-LPS matrix
(direction x spacing, origin) as the actor's user matrix, so the world coordinates are LPS millimetres and the
camera is set in patient terms (anterior = -y, left = +x, superior = +z), whatever the direction matrix.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SMARTNetLib.contracts.files import atomic_path

logger = logging.getLogger(__name__)

SKULL_HU = 300.0
# Activation iso-surfaces: (level, colour as in matplotlib's "hot" map, opacity).
ACTIVATION_STYLE = ((0.5, (1.0, 0.92, 0.25), 0.2), (0.8, (0.9, 0.1, 0.02), 0.35))
MAX_CONTEXT_DIM = 128  # skull and activation are shrunk to at most this many voxels along each axis
# Viewing direction in LPS (from the focal point towards the camera): anterior (-y), left (+x), superior (+z).
VIEW_FROM_LPS = (1.0, -1.0, 0.7)
BACKGROUND = (0.06, 0.06, 0.08)
SKULL_COLOR = (0.93, 0.90, 0.82)
SKULL_OPACITY = 0.12
RENDER_TIMEOUT_S = 120.0

# The child process: ``CHILD_COMMAND + [scene.npz, image.npy, width, height]`` (tests replace it to simulate a crash).
CHILD_COMMAND = [sys.executable, "-m", "SMARTNetLib.report.rendering3d"]
_working_backend: str | None = None  # the back end that worked last in this process (tried first next time)


@dataclass
class Render3DResult:
    """An RGB image (H, W, 3) uint8, or None with the reason."""

    image: np.ndarray | None
    backend: str | None = None
    note: str | None = None


def _isotropic(image, spacing: float, sigma: float = 0.0):
    """Resample a SimpleITK image onto an isotropic grid with the same direction and physical box, then smooth it.

    Thick slices (5 mm is common in head CT) give staircase surfaces; resampling to an isotropic grid and a
    Gaussian of about half the slice thickness (``sigma``, mm) before the iso-surface gives smooth shapes.
    """
    import SimpleITK as sitk

    old_spacing = np.array(image.GetSpacing())
    old_size = np.array(image.GetSize())
    size = np.maximum(1, np.ceil(old_size * old_spacing / spacing)).astype(int)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    # Same corner of the box: shift the first voxel centre by half a voxel of the new grid minus the old.
    origin = np.array(image.GetOrigin()) + direction @ ((spacing - old_spacing) / 2.0)
    resampled = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32), [int(n) for n in size], sitk.Transform(), sitk.sitkLinear,
        origin.tolist(), [float(spacing)] * 3, image.GetDirection(), 0.0, sitk.sitkFloat32,
    )
    return sitk.SmoothingRecursiveGaussian(resampled, sigma) if sigma > 0 else resampled


def _context_spacing(image) -> float:
    """Isotropic spacing (mm) for the skull and activation: the longest side over MAX_CONTEXT_DIM voxels."""
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    return max(float(extent.max()) / MAX_CONTEXT_DIM, float(min(image.GetSpacing())))


def prepare_scene(ct, labels, activation, classes: Sequence) -> dict[str, np.ndarray]:
    """Arrays for the child renderer, each [k, j, i] (as SimpleITK gives them) with its index-to-LPS matrix.

    The CT and activation are averaged down (BinShrink) and resampled to an isotropic grid of at most about
    MAX_CONTEXT_DIM voxels a side; each class present in ``labels`` (``HemorrhageClass`` objects give label values
    and colours) becomes a mask in [0, 255] on an isotropic grid over the labels' bounding box.
    """
    import SimpleITK as sitk

    from SMARTNetLib.io.volume import ijk_to_lps

    context = _context_spacing(ct)
    sigma = 0.5 * max(ct.GetSpacing())
    factors = [max(1, int(context // s)) for s in ct.GetSpacing()]
    small_ct = _isotropic(sitk.BinShrink(sitk.Cast(ct, sitk.sitkFloat32), factors), context, sigma)
    scene: dict[str, np.ndarray] = {
        "ct": sitk.GetArrayFromImage(small_ct),
        "ct_matrix": ijk_to_lps(small_ct),
    }
    label_array = sitk.GetArrayViewFromImage(labels)
    present = [c for c in classes if np.any(label_array == c.label_value)] if label_array.any() else []
    if present:
        nonzero = np.nonzero(label_array)
        lo = [max(0, int(a.min()) - 1) for a in nonzero]
        hi = [min(n, int(a.max()) + 2) for a, n in zip(nonzero, label_array.shape, strict=True)]
        crop = labels[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]  # SimpleITK slicing is (i, j, k)
        extent = np.array(crop.GetSize()) * np.array(crop.GetSpacing())
        # About 1 mm, coarser when the box is large (at most ~200^3 voxels per class).
        spacing = max(1.0, float(np.prod(extent)) ** (1 / 3) / 200.0, float(min(crop.GetSpacing())))
        masks = []
        for c in present:
            mask = _isotropic(sitk.Cast(crop == c.label_value, sitk.sitkFloat32) * 255.0, spacing, sigma)
            masks.append(np.clip(sitk.GetArrayFromImage(mask).round(), 0, 255).astype(np.uint8))
            scene["labels_matrix"] = ijk_to_lps(mask)
        scene["label_masks"] = np.stack(masks)
        scene["label_colors"] = np.array([c.color for c in present], dtype=np.float64)
    if activation is not None:
        small = _isotropic(sitk.BinShrink(sitk.Cast(activation, sitk.sitkFloat32), factors), context)
        values = sitk.GetArrayFromImage(small)
        if float(values.max()) >= ACTIVATION_STYLE[0][0]:
            scene["activation"] = values
            scene["activation_matrix"] = ijk_to_lps(small)
    return scene


def _vtk_image(array: np.ndarray):
    """vtkImageData in index space (origin 0, spacing 1) holding a [k, j, i] numpy array."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData

    array = np.ascontiguousarray(array)
    image = vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_to_vtk(array.ravel(), deep=True)
    scalars.SetName("values")
    image.GetPointData().SetScalars(scalars)
    return image


def _actor(polydata, matrix: np.ndarray, color, opacity: float, specular: float = 0.2):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

    mapper = vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    user_matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            user_matrix.SetElement(r, c, float(matrix[r, c]))
    actor.SetUserMatrix(user_matrix)
    prop = actor.GetProperty()
    prop.SetColor(*[float(v) for v in color])
    prop.SetOpacity(opacity)
    prop.SetSpecular(specular)
    prop.SetSpecularPower(20)
    return actor


def _smoothed(port, iterations: int):
    """Windowed-sinc smoothing (removes the staircase of thick slices) followed by point normals."""
    from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkWindowedSincPolyDataFilter

    smoother = vtkWindowedSincPolyDataFilter()
    smoother.SetInputConnection(port)
    smoother.SetNumberOfIterations(iterations)
    smoother.SetPassBand(0.05)
    smoother.NonManifoldSmoothingOn()
    smoother.NormalizeCoordinatesOn()
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(smoother.GetOutputPort())
    normals.SplittingOff()
    normals.Update()
    return normals.GetOutput()


def _iso_surface(array: np.ndarray, level: float, iterations: int = 0, largest: bool = False):
    """Iso-surface (flying edges), optionally only its largest connected piece (the skull without the couch)."""
    from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D, vtkPolyDataConnectivityFilter

    contour = vtkFlyingEdges3D()
    contour.SetInputData(_vtk_image(array))
    contour.SetValue(0, level)
    contour.ComputeNormalsOn()
    contour.ComputeScalarsOff()
    port = contour.GetOutputPort()
    if largest:
        connectivity = vtkPolyDataConnectivityFilter()
        connectivity.SetInputConnection(port)
        connectivity.SetExtractionModeToLargestRegion()
        port = connectivity.GetOutputPort()
        contour = connectivity
    if iterations:
        return _smoothed(port, iterations)
    contour.Update()
    return contour.GetOutput()


def render_scene(scene: dict[str, np.ndarray], size: tuple[int, int] = (800, 800)) -> np.ndarray:
    """Render a scene from :func:`prepare_scene` offscreen in this process; RGB (H, W, 3) uint8.

    Needs a working OpenGL back end (see the module docstring): call it through :func:`render_3d`.
    """
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL render window factories)
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkObject
    from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow, vtkWindowToImageFilter

    vtkObject.GlobalWarningDisplayOff()
    renderer = vtkRenderer()
    renderer.SetBackground(*BACKGROUND)
    renderer.SetUseDepthPeeling(True)
    renderer.SetMaximumNumberOfPeels(6)
    renderer.SetOcclusionRatio(0.05)

    skull = _iso_surface(scene["ct"], SKULL_HU, iterations=10, largest=True)
    if skull.GetNumberOfPoints():
        renderer.AddActor(_actor(skull, scene["ct_matrix"], SKULL_COLOR, SKULL_OPACITY, specular=0.1))
    if "label_masks" in scene:
        for mask, color in zip(scene["label_masks"], scene["label_colors"], strict=True):
            # Half of the peak for findings smaller than the smoothing, which would vanish at 127.5.
            surface = _iso_surface(mask, min(127.5, 0.5 * float(mask.max())), iterations=10)
            if surface.GetNumberOfPoints():
                renderer.AddActor(_actor(surface, scene["labels_matrix"], color, 1.0, specular=0.3))
    if "activation" in scene:
        for level, color, opacity in ACTIVATION_STYLE:
            surface = _iso_surface(scene["activation"], level)
            if surface.GetNumberOfPoints():
                renderer.AddActor(_actor(surface, scene["activation_matrix"], color, opacity))

    # Camera in LPS: look from anterior-left-superior, superior up, then fit the visible surfaces.
    camera = renderer.GetActiveCamera()
    camera.SetViewAngle(30.0)
    camera.SetFocalPoint(0.0, 0.0, 0.0)
    camera.SetPosition(*VIEW_FROM_LPS)
    camera.SetViewUp(0.0, 0.0, 1.0)
    renderer.ResetCamera()
    camera.Zoom(1.25)
    renderer.ResetCameraClippingRange()

    window = vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetMultiSamples(0)
    window.SetAlphaBitPlanes(True)
    window.SetSize(int(size[0]), int(size[1]))
    window.AddRenderer(renderer)
    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    output = grab.GetOutput()
    width, height, _ = output.GetDimensions()
    pixels = vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1)[:, :, :3]
    window.Finalize()
    if renderer.GetActors().GetNumberOfItems() and float(pixels.std()) < 1.0:
        raise RuntimeError(f"blank image from {window.GetClassName()}")  # a context that draws nothing
    return np.ascontiguousarray(pixels[::-1])  # VTK's first row is the bottom one


def _backends() -> list[str | None]:
    """Render window classes to try, best first (None: VTK's own default, e.g. the native one on Windows/macOS)."""
    preferred = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW") or None
    if not sys.platform.startswith("linux"):
        candidates: list[str | None] = [preferred, None]
    else:
        candidates = [preferred, _working_backend, "vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow"]
        if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
            candidates.append("vtkXOpenGLRenderWindow")
    unique: list[str | None] = []
    for c in candidates:
        if c not in unique and (c is not None or not sys.platform.startswith("linux")):
            unique.append(c)
    return unique


def _child_env(backend: str | None) -> dict[str, str]:
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.pop("VTK_DEFAULT_OPENGL_WINDOW", None)
    if backend:
        env["VTK_DEFAULT_OPENGL_WINDOW"] = backend
    return env


def render_3d(ct, labels, activation, classes: Sequence, size: tuple[int, int] = (800, 800)) -> Render3DResult:
    """Render the 3D view offscreen in a child process, trying EGL, then OSMesa (then X where there is a display).

    Never raises for a missing OpenGL: returns ``Render3DResult(None, note=...)`` instead.
    """
    global _working_backend
    scene = prepare_scene(ct, labels, activation, classes)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="smartnet-render-") as tmp:
        scene_path, image_path = Path(tmp) / "scene.npz", Path(tmp) / "image.npy"
        np.savez(scene_path, **scene)
        for backend in _backends():
            image_path.unlink(missing_ok=True)
            command = [*CHILD_COMMAND, str(scene_path), str(image_path), str(size[0]), str(size[1])]
            try:
                done = subprocess.run(command, env=_child_env(backend), capture_output=True, text=True,
                                      timeout=RENDER_TIMEOUT_S, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                failures.append(f"{backend}: timed out")
                continue
            if done.returncode != 0 or not image_path.exists():
                last = (done.stderr.strip().splitlines() or ["no message"])[-1][-200:]
                failures.append(f"{backend}: exit code {done.returncode} ({last})")
                continue
            image = np.load(image_path)
            _working_backend = backend
            return Render3DResult(image, backend=backend or "default")
    note = ("3D view unavailable: offscreen OpenGL rendering failed (on Debian/Ubuntu install libegl1, "
            "libegl-mesa0 and libgl1-mesa-dri, or libosmesa6)")
    logger.warning("%s; tried %s", note, "; ".join(failures))
    return Render3DResult(None, note=note)


def _main(argv: list[str]) -> int:
    """Child entry point: ``scene.npz image.npy [width height]``."""
    scene_path, image_path = argv[0], argv[1]
    size = (int(argv[2]), int(argv[3])) if len(argv) >= 4 else (800, 800)
    with np.load(scene_path) as data:
        scene = {key: data[key] for key in data.files}
    image = render_scene(scene, size)
    with atomic_path(image_path) as tmp:
        np.save(tmp, image)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
