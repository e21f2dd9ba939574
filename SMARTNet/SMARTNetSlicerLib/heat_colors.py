"""The activation map's colour table, built in code so that Slicer and slicer-core show the same colours.

Slicer's Inferno and ColdToHotRainbow tables are files that only the application installs; this table
interpolates matplotlib's "inferno" (sampled at nine points) over 256 entries.
"""

from __future__ import annotations

from typing import Any

HEAT_COLOR_NAME = "SMARTNet heat"
HEAT_COLOR_SINGLETON_TAG = "SMARTNetHeat"
NUMBER_OF_COLORS = 256
# matplotlib's inferno at 0, 1/8, ..., 1 (RGB in [0, 1]).
INFERNO_POINTS = (
    (0.001, 0.000, 0.014), (0.129, 0.047, 0.291), (0.342, 0.062, 0.429), (0.541, 0.135, 0.415),
    (0.736, 0.216, 0.330), (0.894, 0.353, 0.194), (0.978, 0.558, 0.035), (0.975, 0.798, 0.206),
    (0.988, 0.998, 0.645),
)


def heat_rgb(fraction: float) -> tuple[float, float, float]:
    """Inferno colour at ``fraction`` in [0, 1] (linear between the sampled points)."""
    x = min(max(float(fraction), 0.0), 1.0) * (len(INFERNO_POINTS) - 1)
    low = min(int(x), len(INFERNO_POINTS) - 2)
    t = x - low
    a, b = INFERNO_POINTS[low], INFERNO_POINTS[low + 1]
    return tuple(a[i] + t * (b[i] - a[i]) for i in range(3))


def heatColorNode(scene: Any) -> Any:
    """The scene's heat colour table node, added on first use (one per scene, found by its singleton tag)."""
    import slicer

    nodeID = "vtkMRMLColorTableNode" + HEAT_COLOR_SINGLETON_TAG
    existing = scene.GetNodeByID(nodeID)
    if existing is not None:
        return existing
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(HEAT_COLOR_NAME)
    node.SetSingletonTag(HEAT_COLOR_SINGLETON_TAG)
    node.SetTypeToUser()
    node.SetNumberOfColors(NUMBER_OF_COLORS)
    for index in range(NUMBER_OF_COLORS):
        node.SetColor(index, f"heat {index}", *heat_rgb(index / (NUMBER_OF_COLORS - 1)), 1.0)
    return scene.AddNode(node)
