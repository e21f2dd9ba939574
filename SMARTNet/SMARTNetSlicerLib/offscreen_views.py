"""Slicer's own slice and 3D views rendered offscreen (slicer-core's displayable managers, no Qt).

What the application's layout manager does for its views, done by hand: a render window per view, the
displayable managers of that view type, and for slice views the slice logic's blended layers (background,
foreground, label) drawn under the managers (segmentation fill and outline). Headless VTK uses EGL on
Mesa; :func:`prefer_egl` selects it before the first window is made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from SMARTNetSlicerLib.scene_context import ModuleLogics

SLICE_MANAGERS = ("vtkMRMLCrosshairDisplayableManager", "vtkMRMLModelSliceDisplayableManager",
                  "vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLOrientationMarkerDisplayableManager",
                  "vtkMRMLRulerDisplayableManager")
THREE_D_MANAGERS = ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                    "vtkMRMLModelDisplayableManager", "vtkMRMLSegmentationsDisplayableManager3D",
                    "vtkMRMLVolumeRenderingDisplayableManager", "vtkMRMLOrientationMarkerDisplayableManager")


def prefer_egl() -> None:
    """Use VTK's EGL window unless the caller chose one (without a display VTK would try X first)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _renderWindow(size: tuple[int, int], layers: int = 1) -> Any:
    import vtk

    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.ShowWindowOff()
    window.SetSize(*size)
    window.SetNumberOfLayers(layers)
    interactor = vtk.vtkGenericRenderWindowInteractor()  # the managers need one (they crash without)
    interactor.SetRenderWindow(window)
    interactor.Initialize()
    return window


def _managerGroup(factory: Any, names: tuple[str, ...], renderer: Any, logics: ModuleLogics) -> Any:
    import slicer

    factory.SetMRMLApplicationLogic(logics.application)
    for name in names:
        if not factory.IsDisplayableManagerRegistered(name):
            factory.RegisterDisplayableManager(name)
    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.Initialize(factory, renderer)
    return group


class SliceView:
    """One slice view: the slice logic's blended layers on layer 0, the displayable managers on layer 1
    (in one renderer the segmentation fill would replace the image instead of blending with it)."""

    def __init__(self, logics: ModuleLogics, sliceLogic: Any, size: tuple[int, int] = (400, 400)) -> None:
        import slicer
        import vtk

        self.logic = sliceLogic
        self.window = _renderWindow(size, layers=2)
        imageRenderer, self.renderer = vtk.vtkRenderer(), vtk.vtkRenderer()
        imageRenderer.SetLayer(0)
        imageRenderer.InteractiveOff()
        self.renderer.SetLayer(1)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window.AddRenderer(imageRenderer)
        self.window.AddRenderer(self.renderer)
        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        self.managers = _managerGroup(factory, SLICE_MANAGERS, self.renderer, logics)
        self.managers.SetMRMLDisplayableNode(sliceLogic.GetSliceNode())
        self.mapper = vtk.vtkImageMapper()  # the slice logic's output is RGBA in 0..255
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        actor = vtk.vtkActor2D()
        actor.SetMapper(self.mapper)
        imageRenderer.AddViewProp(actor)

    def fit(self) -> None:
        """Field of view on the background volume, as Slicer's "reset field of view"."""
        self.logic.ResizeSliceNode(*self.window.GetSize())
        self.logic.FitSliceToBackground()
        self.logic.SnapSliceOffsetToIJK()

    def render(self) -> Any:
        self.mapper.SetInputConnection(self.logic.GetImageDataConnection())
        self.window.Render()
        return self.window


class ThreeDView:
    """One 3D view with the camera, model, segmentation and volume-rendering managers."""

    def __init__(self, logics: ModuleLogics, layoutName: str = "1", size: tuple[int, int] = (500, 500)) -> None:
        import slicer
        import vtk

        self.renderer = vtk.vtkRenderer()
        self.window = _renderWindow(size)
        self.window.AddRenderer(self.renderer)
        factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
        self.managers = _managerGroup(factory, THREE_D_MANAGERS, self.renderer, logics)
        self.logic = slicer.vtkMRMLViewLogic()
        self.logic.SetMRMLApplicationLogic(logics.application)
        logics.application.GetViewLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(logics.scene)
        self.node = self.logic.AddViewNode(layoutName)
        self.node.SetBoxVisible(False)
        self.node.SetAxisLabelsVisible(False)
        self.managers.SetMRMLDisplayableNode(self.node)

    def lookAt(self, bounds: list[float], azimuth: float = 30.0, elevation: float = 20.0, zoom: float = 1.0) -> None:
        """Camera from the front, turned by ``azimuth``/``elevation``, framing ``bounds`` (RAS)."""
        import slicer

        cameraManager = self.managers.GetDisplayableManagerByClassName("vtkMRMLCameraDisplayableManager")
        if cameraManager is not None and cameraManager.GetCameraNode() is not None:
            cameraManager.GetCameraNode().RotateTo(slicer.vtkMRMLCameraNode.Anterior)
        self.renderer.ResetCamera(bounds)
        camera = self.renderer.GetActiveCamera()
        camera.Azimuth(azimuth)
        camera.Elevation(elevation)
        camera.OrthogonalizeViewUp()
        camera.Zoom(zoom)
        self.renderer.ResetCameraClippingRange()

    def render(self) -> Any:
        self.window.Render()
        return self.window


def capture(window: Any, path: str | Path | None = None) -> np.ndarray:
    """The window's pixels as an (height, width, 3) uint8 array (top row first); also a PNG at ``path``."""
    import vtk
    from vtk.util import numpy_support

    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.ReadFrontBufferOff()
    grabber.SetInputBufferTypeToRGB()
    grabber.Update()
    if path is not None:
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputConnection(grabber.GetOutputPort())
        writer.Write()
    image = grabber.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return pixels[::-1, :, :3].copy()


def colour_pixels(pixels: np.ndarray, rgb: tuple[float, float, float], tolerance: float = 24.0,
                  saturation: float = 0.45) -> int:
    """Pixels whose hue is that of ``rgb`` (saturated and not dark): robust to blending and shading."""
    def hue(r, g, b):
        return np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)) % 360

    px = pixels[..., :3].astype(float)
    high, low = px.max(axis=-1), px.min(axis=-1)
    saturated = (high - low) / np.maximum(high, 1) > saturation
    difference = np.abs((hue(px[..., 0], px[..., 1], px[..., 2]) - hue(*rgb) + 180) % 360 - 180)
    return int(((difference < tolerance) & saturated & (high > 60)).sum())
