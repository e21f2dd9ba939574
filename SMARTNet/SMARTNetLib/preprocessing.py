"""From a canonical CT volume to network input: in-plane resizing, HU windows, neighbouring slices.

Training and inference both go through :class:`SliceGrid` and :func:`slice_channels`, so a model always
sees what it was trained on. Slices are padded to a square (aspect ratio kept) and resized to the
model's ``image_size``; results are mapped back with :meth:`SliceGrid.restore`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model_card import WINDOWS, Preprocessing

AIR_HU = -1024.0


@dataclass(frozen=True)
class SliceGrid:
    """The mapping between an input slice (height, width) and the model's square slice."""

    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding that makes the slice square."""
        dw, dh = self.side - self.width, self.side - self.height
        return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2

    def to_model(self, slices: torch.Tensor, fill: float = AIR_HU, mode: str = "bilinear") -> torch.Tensor:
        """(N, C, height, width) -> (N, C, size, size): pad to square with ``fill``, then resize."""
        x = F.pad(slices, self.padding, value=fill)
        if self.side == self.size:
            return x
        if mode == "nearest":
            return F.interpolate(x, size=(self.size, self.size), mode="nearest-exact")
        return F.interpolate(x, size=(self.size, self.size), mode=mode, align_corners=False,
                             antialias=self.side > self.size)

    def restore(self, slices: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """(N, C, size, size) -> (N, C, height, width): resize back and crop the padding."""
        x = slices
        if self.side != self.size and mode == "nearest":
            x = F.interpolate(x, size=(self.side, self.side), mode="nearest-exact")
        elif self.side != self.size:
            x = F.interpolate(x, size=(self.side, self.side), mode=mode, align_corners=False)
        left, _, top, _ = self.padding
        return x[..., top: top + self.height, left: left + self.width]


def apply_windows(hu: torch.Tensor, windows: tuple[str, ...]) -> torch.Tensor:
    """(D, H, W) HU -> (D, len(windows), H, W) in [0, 1], one channel per named window."""
    channels = []
    for name in windows:
        center, width = WINDOWS[name]
        channels.append(((hu - (center - width / 2)) / width).clamp_(0.0, 1.0))
    return torch.stack(channels, dim=1)


def slice_channels(windowed: torch.Tensor, index: torch.Tensor, context: int) -> torch.Tensor:
    """Input of the slices ``index`` (N,): windowed slices of the neighbours ``-context..context`` as channels.

    ``windowed`` is (D, W, H, W'); the result is (N, (2 * context + 1) * W, H, W'), edges repeated.
    """
    depth = windowed.shape[0]
    offsets = torch.arange(-context, context + 1)
    neighbours = (index[:, None] + offsets[None, :]).clamp_(0, depth - 1)  # (N, 2c+1)
    x = windowed[neighbours]  # (N, 2c+1, W, H, W')
    return x.flatten(1, 2)


def prepare_volume(hu: torch.Tensor, prep: Preprocessing, size: int) -> tuple[torch.Tensor, SliceGrid]:
    """(D, H, W) HU of a canonical volume -> windowed model-size slices (D, W, size, size) and the grid."""
    grid = SliceGrid(int(hu.shape[1]), int(hu.shape[2]), size)
    resized = torch.cat([grid.to_model(chunk[:, None].float())[:, 0] for chunk in hu.split(16)])
    return apply_windows(resized, prep.windows), grid
