"""Torch-only twins of the MONAI blocks the network runs at inference, so that analysis need not import MONAI.

Importing any MONAI submodule runs its package ``__init__``, which loads every submodule (about 1.8 s of a
cold ``smartnet analyze`` on 2 cores, more than torch itself); ``torch.export`` is no way round it, since
loading an exported program imports ``torch._dynamo`` (about 1.1 s). These modules rebuild exactly what
:class:`~SMARTNetLib.model.network.SmartNet` takes from MONAI (``FlexibleUNet`` with a basic-block ResNet
encoder, ``Convolution``, ``UpSample``) with the same parameter names, so one state dict loads into either and
training keeps MONAI's own blocks. ``Testing/model/test_torch_layers.py`` checks that both give the same
outputs and gradients for the same weights.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# Channels of a basic-block ResNet's feature maps (stem, layer1..4) and blocks per layer, as in MONAI.
RESNET_CHANNELS = (64, 64, 128, 256, 512)
RESNET_LAYERS = {"resnet10": (1, 1, 1, 1), "resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
DECODER_NORM_EPS = 1e-3  # FlexibleUNet's decoder batch norm


def supports(encoder: str) -> bool:
    """Whether these modules can build an encoder (the basic-block ResNets)."""
    return encoder in RESNET_LAYERS


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs oneDNN's kernel on the CPU whatever the input's size. PyTorch's heuristic sends the
    3D operator's convolution (batch 1, 8 channels) to its much slower im2col fallback (``slow_conv3d``); with
    oneDNN the 3D stage of ``benchmarks/analyze.py`` fell from 0.41 to 0.22 s, for the same outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and self.padding_mode == "zeros"
                and torch.backends.mkldnn.is_available() and not isinstance(self.padding, str)):
            return torch.ops.aten.mkldnn_convolution(x.contiguous(), self.weight, self.bias, list(self.padding),
                                                     list(self.stride), list(self.dilation), self.groups)
        return super().forward(x)


class Convolution(nn.Sequential):
    """MONAI's ``Convolution`` with batch norm and ReLU (or ``conv_only``): ``conv`` then ``adn`` (N, A)."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True,
                 conv_only: bool = False, eps: float = 1e-5) -> None:
        conv = (nn.Conv2d, Conv3d)[dims - 2]
        parts = OrderedDict(conv=conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias))
        if not conv_only:
            norm = (nn.BatchNorm2d, nn.BatchNorm3d)[dims - 2]
            parts["adn"] = nn.Sequential(OrderedDict(N=norm(out_channels, eps=eps), A=nn.ReLU()))
        super().__init__(parts)


class UpSample(nn.Module):
    """MONAI's non-trainable ``UpSample``: a 1x1 ``preconv`` when the channels change, then bilinear x2
    (``align_corners`` True by MONAI's default, None as FlexibleUNet's decoder passes it)."""

    def __init__(self, in_channels: int, out_channels: int, align_corners: bool | None = True) -> None:
        super().__init__()
        if in_channels != out_channels:
            self.preconv = nn.Conv2d(in_channels, out_channels, 1)
        self.upsample_non_trainable = nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "preconv"):
            x = self.preconv(x)
        return self.upsample_non_trainable(x)


class ResNetBlock(nn.Module):
    """MONAI's 2D ``ResNetBlock`` (two 3x3 convolutions and the residual)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(out + residual)


class ResNetEncoder(nn.Module):
    """MONAI's 2D ``ResNetEncoder``: the feature maps of the stem and of layer1..4."""

    def __init__(self, encoder: str, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 64
        for index, (blocks, width) in enumerate(zip(RESNET_LAYERS[encoder], RESNET_CHANNELS[1:]), start=1):
            stride = 1 if index == 1 else 2
            layer = [ResNetBlock(channels, width, stride)] + [ResNetBlock(width, width, 1) for _ in range(blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*layer))
            channels = width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


class UpCat(nn.Module):
    """MONAI's ``UpCat``: upsample, concatenate the encoder's skip (replicate-padded to its size), two convs."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        up = in_channels // 2 if skip_channels else in_channels
        self.upsample = UpSample(in_channels, up, align_corners=None)
        self.convs = nn.Sequential(OrderedDict(
            conv_0=Convolution(2, up + skip_channels, out_channels, bias=False, eps=DECODER_NORM_EPS),
            conv_1=Convolution(2, out_channels, out_channels, bias=False, eps=DECODER_NORM_EPS)))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.upsample(x)
        if skip is None:
            return self.convs(x)
        pad = [0, int(skip.shape[-1] != x.shape[-1]), 0, int(skip.shape[-2] != x.shape[-2])]
        if any(pad):
            x = nn.functional.pad(x, pad, "replicate")
        return self.convs(torch.cat([skip, x], dim=1))


class UNetDecoder(nn.Module):
    """MONAI's ``UNetDecoder`` for the five feature maps of a ResNet encoder."""

    def __init__(self, decoder_channels: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        skips = list(RESNET_CHANNELS[:-1][::-1]) + [0] * (len(decoder_channels) - 4)
        ins = [RESNET_CHANNELS[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(UpCat(i, s, o) for i, s, o in zip(ins, skips, decoder_channels))

    def forward(self, features: list[torch.Tensor], skip_connect: int = 4) -> torch.Tensor:
        skips = features[:-1][::-1]
        x = features[-1]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < skip_connect else None)
        return x


class FlexibleUNet(nn.Module):
    """MONAI's 2D ``FlexibleUNet`` with a basic-block ResNet encoder and non-trainable bilinear upsampling."""

    skip_connect = 4

    def __init__(self, in_channels: int, out_channels: int, encoder: str,
                 decoder_channels: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(encoder, in_channels)
        self.decoder = UNetDecoder(decoder_channels)
        self.segmentation_head = nn.Sequential(nn.Conv2d(decoder_channels[-1], out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x), self.skip_connect))
