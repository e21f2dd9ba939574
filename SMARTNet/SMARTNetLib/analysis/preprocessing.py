"""From a canonical CT volume to network input: thin-slice pooling, in-plane resizing, HU windows,
neighbouring slices.

Training and inference both go through :class:`SliceGrid` and :func:`slice_channels`, so a model always
sees what it was trained on. Slices are padded to a square (aspect ratio kept) and resized to the
model's ``image_size``; results are mapped back with :meth:`SliceGrid.restore`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from SMARTNetLib.contracts.model_card import WINDOWS, Preprocessing

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


def slab_groups(depth: int, spacing_mm: float, slab_mm: float) -> list[tuple[int, int]]:
    """Consecutive slices grouped into slabs of about ``slab_mm`` (one slice per group when already thick).

    Models see slices of a consistent thickness whatever the scanner's (thin 1 mm series read as ~4 mm slabs,
    as radiologists read them), and a 150-slice series costs no more than a 40-slice one.
    """
    size = max(1, int(slab_mm / spacing_mm + 0.5)) if slab_mm > 0 and spacing_mm > 0 else 1
    return [(start, min(start + size, depth)) for start in range(0, depth, size)]


def pool_slabs(hu: torch.Tensor, groups: list[tuple[int, int]]) -> torch.Tensor:
    """(D, H, W) -> (len(groups), H, W): the mean of each group (a thick-slice reconstruction)."""
    if len(groups) == hu.shape[0]:
        return hu
    return torch.stack([hu[a:b].float().mean(dim=0) for a, b in groups])


def pool_label_slabs(labels: torch.Tensor, groups: list[tuple[int, int]], values: list[int]) -> torch.Tensor:
    """(D, H, W) label values -> per slab: the class covering at least half of the slab's slices (else 0)."""
    if len(groups) == labels.shape[0]:
        return labels
    out = torch.zeros((len(groups), *labels.shape[1:]), dtype=labels.dtype)
    if not values:
        return out
    for n, (a, b) in enumerate(groups):
        fractions = torch.stack([(labels[a:b] == v).float().mean(dim=0) for v in values])  # (K, H, W)
        best, which = fractions.max(dim=0)
        out[n] = torch.where(best >= 0.5, torch.tensor(values, dtype=labels.dtype)[which], 0)
    return out


def slab_weights(groups: list[tuple[int, int]], depth: int) -> torch.Tensor | None:
    """(depth, slabs) linear-interpolation weights from slab centres back to every slice (None: identity)."""
    if len(groups) == depth:
        return None
    centres = torch.tensor([(a + b - 1) / 2 for a, b in groups])
    weights = torch.zeros(depth, len(groups))
    for s in range(depth):
        right = int(torch.searchsorted(centres, torch.tensor(float(s))))
        if right == 0 or right == len(groups):
            weights[s, min(right, len(groups) - 1)] = 1.0
        else:
            t = (s - centres[right - 1]) / (centres[right] - centres[right - 1])
            weights[s, right - 1], weights[s, right] = 1 - t, t
    return weights


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


def model_size_hu(hu: torch.Tensor, size: int) -> tuple[torch.Tensor, SliceGrid]:
    """(D, H, W) HU of a canonical (slab-pooled) volume -> (D, size, size) HU at model size, rounded to whole HU,
    and the grid. The one resizing step of training (which stores these HU as int16) and inference."""
    grid = SliceGrid(int(hu.shape[1]), int(hu.shape[2]), size)
    resized = torch.cat([grid.to_model(chunk[:, None].float(), fill=AIR_HU)[:, 0] for chunk in hu.split(16)])
    return resized.round_().clamp_(-32768, 32767), grid


def prepare_volume(hu: torch.Tensor, prep: Preprocessing, size: int) -> tuple[torch.Tensor, SliceGrid]:
    """(D, H, W) HU of a canonical volume -> windowed model-size slices (D, W, size, size) and the grid."""
    resized, grid = model_size_hu(hu, size)
    return apply_windows(resized, prep.windows), grid
