"""What people look at: 2D figures, the offscreen 3D rendering, the visual report (PNG and HTML), the comparison
figure."""
