"""SMART-Net losses (MONAI and torch parts).

Upstream (slices): BCE(classification) + (Dice + BCE)(segmentation) + L1(reconstruction, input)
+ 0.5 * consistency, where consistency is the MSE between the classification probabilities and a pooled
summary of the segmentation probabilities (max-pool 16x16 at 256 px, scaled to the image size, then
global average), per class and for "any" (the maximum over classes).
Downstream (volumes): BCE(volume classification) + (Dice + BCE)(volume segmentation), or for an "exclusive"
volume segmentation (Dice + cross-entropy over background and the classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from SMARTNetLib.model.network import exclusive_probabilities

CONSISTENCY_WEIGHT = 0.5


class PresentDiceBCELoss(nn.Module):
    """Dice (MONAI, over the whole batch) of the classes present in the batch, plus BCE over all classes.

    Hemorrhage is a small fraction of the slices and one class rarely shares a batch with the others: a
    plain Dice counts every absent class as a loss of about 1 whatever the network does, which drowns
    the signal of the present ones. Absent classes are left to the BCE term, which pushes them to zero.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dice = DiceLoss(sigmoid=True, batch=True, reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return present_dice(self.dice, logits, target) + F.binary_cross_entropy_with_logits(logits, target)


class ExclusiveDiceCELoss(nn.Module):
    """The same for classes that exclude each other (``target`` one-hot or all zero, the background): Dice
    (MONAI) of the present classes on :func:`~SMARTNetLib.model.network.exclusive_probabilities`, plus the
    cross-entropy of the softmax over background (logit 0) and the classes."""

    def __init__(self) -> None:
        super().__init__()
        self.dice = DiceLoss(batch=True, reduction="none")  # of probabilities

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        full = torch.cat([torch.zeros_like(logits[:, :1]), logits], dim=1)
        ranks = torch.arange(1, logits.shape[1] + 1, device=target.device).view(1, -1, *[1] * (target.dim() - 2))
        ce = F.cross_entropy(full, (target * ranks).sum(1).long())
        return present_dice(self.dice, exclusive_probabilities(logits), target) + ce


def present_dice(dice: DiceLoss, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of MONAI's per-class ``dice`` over the classes with a voxel in the batch (0 when none has)."""
    present = target.transpose(0, 1).flatten(1).amax(1) > 0  # (K,)
    if not present.any():
        return inputs.new_zeros(())
    return dice(inputs, target).flatten()[present].mean()


def seg_summary(seg_logits: torch.Tensor, with_any: bool) -> torch.Tensor:
    """(N, K, S, S) segmentation logits -> (N, K [+1]) pooled probabilities ("any" first when asked)."""
    probs = torch.sigmoid(seg_logits.float())
    if with_any:
        probs = torch.cat([probs.amax(1, keepdim=True), probs], dim=1)
    kernel = max(1, round(16 * probs.shape[-1] / 256))
    pooled = F.max_pool2d(probs, kernel_size=kernel, stride=kernel, ceil_mode=True)
    return pooled.mean(dim=(2, 3))


class UpstreamLoss(nn.Module):
    """The multi-task slice loss; returns the total and its parts."""

    def __init__(self) -> None:
        super().__init__()
        self.seg = PresentDiceBCELoss()

    def forward(self, out: dict[str, torch.Tensor], x: torch.Tensor, seg_target: torch.Tensor,
                cls_target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cls_logits, seg_logits = out["cls"].float(), out["seg"].float()
        cls = F.binary_cross_entropy_with_logits(cls_logits, cls_target)
        seg = self.seg(seg_logits, seg_target)
        rec = F.l1_loss(out["rec"].float(), x.float())
        summary = seg_summary(seg_logits, with_any=cls_logits.shape[1] > seg_logits.shape[1])
        consistency = F.mse_loss(torch.sigmoid(cls_logits), summary)
        total = cls + seg + rec + CONSISTENCY_WEIGHT * consistency
        parts = {"cls": cls.item(), "seg": seg.item(), "rec": rec.item(), "consistency": consistency.item()}
        return total, parts


class DownstreamLoss(nn.Module):
    """Volume classification BCE + volume segmentation Dice + BCE (Dice + cross-entropy when ``exclusive``)."""

    def __init__(self, exclusive: bool = False) -> None:
        super().__init__()
        self.seg = ExclusiveDiceCELoss() if exclusive else PresentDiceBCELoss()

    def forward(self, cls_logits: torch.Tensor, seg_logits: torch.Tensor, cls_target: torch.Tensor,
                seg_target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cls = F.binary_cross_entropy_with_logits(cls_logits.float(), cls_target)
        seg = self.seg(seg_logits.float(), seg_target)
        return cls + seg, {"cls": cls.item(), "seg": seg.item()}
