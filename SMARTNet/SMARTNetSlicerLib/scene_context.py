"""The MRML scene and the module logics that the SMART-Net logics use, passed in rather than looked up.

In Slicer the module builds them from ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()``;
:func:`standalone` builds the same from ``slicer-core`` alone (tests, screenshots, a browser view).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CPU_RAY_CAST = "vtkMRMLCPURayCastVolumeRenderingDisplayNode"
SLICE_VIEWS = (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))  # Slicer's conventional layout


@dataclass
class ModuleLogics:
    """A scene with its volumes, segmentations, volume rendering and (optional) plots logics.

    ``volumeRenderingMethod``: display node class for new volume renderings, or None for the logic's
    default (the user's choice in Slicer). Headless Mesa needs CPU ray casting: GPU ray casting never ends.
    ``application``: the application logic when :func:`standalone` made one (kept alive with the scene).
    """

    scene: Any
    volumes: Any
    segmentations: Any
    volumeRendering: Any
    plots: Any = None
    volumeRenderingMethod: str | None = None
    application: Any = None


def standalone(scene: Any = None) -> ModuleLogics:
    """Module logics on a new (or the given) scene without the Slicer application: colours with their
    default nodes, volumes, segmentations, volume rendering (CPU ray casting) and plots."""
    import slicer
    import vtk

    scene = scene if scene is not None else slicer.vtkMRMLScene()
    if scene.GetFirstNodeByClass("vtkMRMLCrosshairNode") is None:  # slice views expect the default crosshair
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetCrosshairName("default")
        scene.AddNode(crosshair)
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)  # else the volumes logic cannot assign colour nodes

    def register(logic: Any, name: str) -> Any:
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        return logic

    return ModuleLogics(
        scene=scene,
        volumes=register(slicer.vtkSlicerVolumesLogic(), "Volumes"),
        segmentations=register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations"),
        volumeRendering=register(slicer.vtkSlicerVolumeRenderingLogic(), "VolumeRendering"),
        plots=register(slicer.vtkSlicerPlotsLogic(), "Plots"),
        volumeRenderingMethod=CPU_RAY_CAST,
        application=app,
    )


def addSliceViews(logics: ModuleLogics, views: tuple = SLICE_VIEWS) -> list:
    """Slice logics (with their slice and composite nodes) for the conventional three views, as Slicer's
    layout manager makes them; without the application there are none until a caller adds them."""
    import slicer

    sliceLogics = []
    for layoutName, orientation in views:
        sliceLogic = slicer.vtkMRMLSliceLogic()
        sliceLogic.SetMRMLApplicationLogic(logics.application)
        logics.application.GetSliceLogics().AddItem(sliceLogic)
        sliceLogic.SetMRMLScene(logics.scene)
        sliceLogic.AddSliceNode(layoutName).SetOrientation(orientation)
        sliceLogics.append(sliceLogic)
    return sliceLogics


def nodesByClass(scene: Any, className: str) -> list:
    """Nodes of ``className`` (and its subclasses) in ``scene``, as a list."""
    collection = scene.GetNodesByClass(className)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
