"""SMARTNetLib: the SMART-Net hemorrhage analysis engine (no Slicer imports)."""

__version__ = "0.1.0"
