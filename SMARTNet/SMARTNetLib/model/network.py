"""The SMART-Net network, built from MONAI parts.

Slice level (2D, "upstream"): one encoder (a MONAI ``FlexibleUNet`` backbone) with three heads:
classification (global average + max pooling, dropout, linear), segmentation (the U-Net decoder with
skips) and reconstruction (a decoder from the deepest feature only).

Volume level ("downstream" 3D operators): per-slice vectors pass through a Bi-LSTM (or a transformer
encoder) for the volume decision. The per-slice decoder maps are stacked and refined by a small 3D CNN
whose output is added to the 2D segmentation logits, so that a model trained upstream only already segments
sensibly. The volume classifier's per-slice vectors are, as the card says, the pooled encoder features (as in
the paper), the slice's segmentation evidence (per-class maximum and mean probability), both, or the same
evidence taken from the 3D CNN's refined segmentation ("segmentation-3d", see :meth:`SmartNet.volume_vectors`).
The 3D CNN's probabilities are a sigmoid per class, or exclusive (:func:`exclusive_probabilities`).

Training builds the MONAI blocks; ``torch_only=True`` (what :func:`~SMARTNetLib.model.store.load_model` asks for
at analysis) builds their twins in :mod:`.layers` instead, with the same parameter names, so that an analysis
never imports MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from SMARTNetLib.contracts.model_card import ModelCard
from SMARTNetLib.model import layers

if TYPE_CHECKING:
    from SMARTNetLib.model.finding_classifier import FindingClassifier


def _convolution(torch_only: bool, dims: int, in_channels: int, out_channels: int, kernel_size: int,
                 conv_only: bool = False) -> nn.Module:
    """MONAI's ``Convolution`` (batch norm and ReLU unless ``conv_only``), or its torch-only twin."""
    if torch_only:
        return layers.Convolution(dims, in_channels, out_channels, kernel_size, conv_only=conv_only)
    from monai.networks.blocks import Convolution

    if conv_only:
        return Convolution(dims, in_channels, out_channels, kernel_size=kernel_size, conv_only=True)
    return Convolution(dims, in_channels, out_channels, kernel_size=kernel_size, norm="batch", act="relu")


def _upsample(torch_only: bool, channels: int) -> nn.Module:
    """MONAI's non-trainable bilinear x2 ``UpSample`` keeping the channels, or its torch-only twin."""
    if torch_only:
        return layers.UpSample(channels, channels)
    from monai.networks.blocks import UpSample

    return UpSample(2, channels, channels, scale_factor=2, mode="nontrainable", interp_mode="bilinear")


class ReconstructionDecoder(nn.Sequential):
    """Decoder from the deepest encoder feature alone back to the input (no skips), as in the paper."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 5, width: int = 64,
                 torch_only: bool = False) -> None:
        parts: list[nn.Module] = [_convolution(torch_only, 2, in_channels, width, 1)]
        channels = width
        for _ in range(depth):
            nxt = max(channels // 2, 16)
            parts += [_upsample(torch_only, channels), _convolution(torch_only, 2, channels, nxt, 3)]
            channels = nxt
        parts += [_convolution(torch_only, 2, channels, out_channels, 1, conv_only=True), nn.Sigmoid()]
        super().__init__(*parts)


class VolumeClassifier(nn.Module):
    """Volume-level classification from per-slice feature vectors (B, D, F) of variable depth."""

    def __init__(self, features: int, outputs: int, kind: str = "lstm", hidden: int = 128, layers: int = 1,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.kind = kind
        self.project = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        if kind == "lstm":
            self.sequence = nn.LSTM(hidden, hidden // 2, num_layers=layers, batch_first=True, bidirectional=True)
        else:
            layer = nn.TransformerEncoderLayer(hidden, nhead=4, dim_feedforward=2 * hidden, dropout=dropout,
                                               batch_first=True)
            self.sequence = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, outputs))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(features, lengths))

    def embed(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The volume representation (B, 2 * hidden): mean and max of the sequence outputs over valid slices."""
        batch, depth, _ = features.shape
        if lengths is None:
            lengths = torch.full((batch,), depth, dtype=torch.long)
        lengths = lengths.cpu()
        x = self.project(features)
        mask = torch.arange(depth)[None, :].to(x.device) < lengths[:, None].to(x.device)  # (B, D) valid slices
        if self.kind == "lstm":
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(self.sequence(packed)[0], batch_first=True, total_length=depth)
        else:
            x = self.sequence(x + _positions(depth, x.shape[-1], x), src_key_padding_mask=~mask)
        m = mask[..., None].to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1).clamp(min=1)
        peak = x.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return torch.cat([mean, peak], dim=1)


class VolumeSegmenter(nn.Module):
    """Two 3D convolutions over the stacked per-slice decoder maps, added to the 2D logits (zero at init)."""

    def __init__(self, channels: int, outputs: int, torch_only: bool = False) -> None:
        super().__init__()
        # Batch (not instance) norm: at inference the volume is processed in slabs, which must not change the result.
        self.refine = _convolution(torch_only, 3, channels, channels, 3)
        self.out = (layers.Conv3d if torch_only else nn.Conv3d)(channels, outputs, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, decoder_maps: torch.Tensor, slice_logits: torch.Tensor) -> torch.Tensor:
        """``decoder_maps`` (B, C, D, H, W) and ``slice_logits`` (B, K, D, H, W) -> logits (B, K, D, H, W)."""
        return slice_logits + self.out(self.refine(decoder_maps))


class SmartNet(nn.Module):
    """SMART-Net: a 2D multi-task network plus volume-level operators, configured by a model card.

    ``torch_only``: build the MONAI parts from :mod:`.layers` (same weights, same outputs; basic-block ResNet
    encoders only, others keep MONAI's). ``finding_classifier`` (not a submodule: its weights are the model
    folder's ``findings.pt``) names each finding of the label map from anatomy, when the card has one
    (:mod:`.finding_classifier`).
    """

    finding_classifier: FindingClassifier | None = None

    def __init__(self, card: ModelCard, torch_only: bool = False) -> None:
        super().__init__()
        arch, n_seg = card.architecture, len(card.classes)
        in_channels = card.preprocessing.in_channels
        torch_only = torch_only and layers.supports(arch.encoder)
        if torch_only:
            self.unet = layers.FlexibleUNet(in_channels, n_seg, arch.encoder, arch.decoder_channels)
        else:
            from monai.networks.nets import FlexibleUNet

            self.unet = FlexibleUNet(in_channels, n_seg, backbone=arch.encoder, pretrained=False,
                                     decoder_channels=arch.decoder_channels, spatial_dims=2,
                                     upsample="nontrainable", interp_mode="bilinear")
        deep = _deepest_channels(arch.encoder)
        n_out = len(card.output_names)
        self.feature_size = 2 * deep
        self.operator_inputs = arch.operator_inputs
        self.exclusive = arch.volume_segmentation == "exclusive"
        self.operator_size = {"encoder": self.feature_size, "segmentation": 2 * n_seg, "segmentation-3d": 2 * n_seg,
                              "both": self.feature_size + 2 * n_seg}[arch.operator_inputs]
        self.classify = nn.Sequential(nn.Dropout(arch.dropout), nn.Linear(self.feature_size, n_out))
        self.reconstruct = ReconstructionDecoder(deep, in_channels, torch_only=torch_only)
        self.volume_classifier = VolumeClassifier(self.operator_size, n_out, arch.volume_operator, arch.operator_hidden,
                                                  arch.operator_layers, arch.dropout)
        self.volume_segmenter = VolumeSegmenter(arch.decoder_channels[-1], n_seg, torch_only=torch_only)

    @staticmethod
    def pool(deep: torch.Tensor) -> torch.Tensor:
        """Per-slice feature vector: global average and max of the deepest encoder map."""
        return torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3))], dim=1)

    @property
    def explain_stage(self) -> int:
        """Index of the encoder feature map Grad-CAM uses: stride 8 on ResNet encoders (finer than the deepest
        map's stride 32, which is a 4x4 grid on a 128-pixel slice), else the deepest map."""
        return 2 if hasattr(self.unet.encoder, "layer4") else -1

    def encoder_tail(self, features: torch.Tensor, stage: int) -> list[torch.Tensor]:
        """Run the encoder from its feature map ``stage`` on: that map and every deeper one (ResNet encoders)."""
        maps = [features]
        if stage == -1:
            return maps
        encoder = self.unet.encoder
        for layer in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4)[stage:]:
            maps.append(layer(maps[-1]))
        return maps

    def operator_input(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """From the encoder maps of a batch of slices: ``features`` (pooled deepest map), ``decoder``, ``seg``
        logits and ``operator``, the per-slice vector the volume classifier reads (absent for "segmentation-3d",
        whose vectors need the neighbouring slices: :meth:`volume_vectors`)."""
        decoder = self.unet.decoder(feats, self.unet.skip_connect)
        seg = self.unet.segmentation_head(decoder)
        pooled = self.pool(feats[-1])
        parts = []
        if self.operator_inputs in ("encoder", "both"):
            parts.append(pooled)
        if self.operator_inputs in ("segmentation", "both"):
            parts.append(segmentation_evidence(seg))
        out = {"features": pooled, "decoder": decoder, "seg": seg}
        if parts:
            out["operator"] = torch.cat(parts, dim=1)
        return out

    @property
    def reads_refined_segmentation(self) -> bool:
        """Whether the volume classifier reads the 3D operator's refined segmentation ("segmentation-3d")."""
        return self.operator_inputs == "segmentation-3d"

    def volume_probabilities(self, logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The volume segmenter's logits -> per-class probabilities (classes along ``dim``): a sigmoid each, or
        :func:`exclusive_probabilities` when the card says "exclusive"."""
        return exclusive_probabilities(logits, dim) if self.exclusive else torch.sigmoid(logits)

    def hemorrhage_probability(self, probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Probability that a voxel is any hemorrhage, from :meth:`volume_probabilities`: the sum over classes
        when they exclude each other, else the largest."""
        return probs.sum(dim) if self.exclusive else probs.amax(dim)

    @property
    def keeps_skips(self) -> bool:
        """Whether explaining reruns the decoder ("both"), so that a 2D pass must keep the shallower encoder maps."""
        return self.operator_inputs == "both"

    @property
    def explains_in_3d(self) -> bool:
        """Whether :meth:`explanation_maps` is one 3D map of the volume (the refined segmentation) rather than a
        2D map per slice: Grad-CAM then averages its gradient over the whole volume."""
        return self.reads_refined_segmentation

    def segment_volume(self, decoder: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The volume segmenter over stacked slices: decoder maps (D, C, H, W) and 2D logits (D, K, H, W) ->
        refined logits (K, D, H, W). Training runs it on whole volumes, inference on slabs with a halo."""
        return self.volume_segmenter(decoder.permute(1, 0, 2, 3)[None], seg.permute(1, 0, 2, 3)[None])[0]

    def classify_volume(self, slices: dict[str, torch.Tensor], refined: torch.Tensor | None = None) -> torch.Tensor:
        """The volume classifier's logits (outputs,) for one volume, from its 2D pass and (for a model that reads
        it) the refined segmentation probabilities (D, K, H, W)."""
        vectors = self.volume_vectors(slices, refined)
        return self.volume_classifier(vectors[None].to(next(self.parameters()).device))[0]

    def explanation_maps(self, slices: dict[str, torch.Tensor], refined: torch.Tensor | None = None) -> torch.Tensor:
        """The last spatial maps the volume classifier reads, which Grad-CAM weights: the refined segmentation
        probabilities (D, K, H, W) for "segmentation-3d", the 2D segmentation probabilities for "segmentation",
        else the encoder map at :attr:`explain_stage`."""
        if self.reads_refined_segmentation:
            if refined is None:
                raise ValueError("this model's volume classifier reads the refined segmentation: pass it")
            return refined
        if self.operator_inputs == "segmentation":
            return torch.sigmoid(slices["seg"])
        return slices["stage"]

    def vectors_from_maps(self, maps: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The volume classifier's input (D, F), differentiably, from :meth:`explanation_maps` (``skips``: the
        2D pass's shallower encoder maps, needed when :attr:`keeps_skips`)."""
        if self.operator_inputs in ("segmentation", "segmentation-3d"):
            return evidence_of_probabilities(maps)
        feats = self.encoder_tail(maps, self.explain_stage)
        if self.operator_inputs == "encoder":
            return self.pool(feats[-1])
        return self.operator_input([*(skips or []), *feats])["operator"]

    def volume_vectors(self, slices: dict[str, torch.Tensor], refined: torch.Tensor | None = None) -> torch.Tensor:
        """The volume classifier's input (D, F) for one volume: the slices' ``operator`` vectors, or for
        "segmentation-3d" the evidence of ``refined``, the volume segmenter's probabilities (D, K, H, W)."""
        if not self.reads_refined_segmentation:
            return slices["operator"]
        if refined is None:
            raise ValueError("this model's volume classifier reads the refined segmentation: pass it")
        return evidence_of_probabilities(refined.float())

    def forward_slices(self, x: torch.Tensor, reconstruct: bool = True) -> dict[str, torch.Tensor]:
        """2D pass over a batch of slices (B, C, H, W).

        Returns ``cls`` (B, outputs) logits, ``seg`` (B, classes, H, W) logits, ``rec`` (B, C, H, W) in [0, 1]
        (when asked), ``features`` (B, F), ``operator`` (the volume classifier's per-slice input), ``decoder``
        (B, C_dec, H, W), ``deep`` (the deepest encoder map), ``stage`` (the encoder map at
        :attr:`explain_stage`) and ``skips`` (the shallower maps, which Grad-CAM needs to rerun the decoder).
        """
        feats = self.unet.encoder(x)
        out = self.operator_input(feats)
        deep = feats[-1]
        out.update(cls=self.classify(out["features"]), deep=deep, stage=feats[self.explain_stage],
                   skips=feats[:self.explain_stage])
        if reconstruct:
            out["rec"] = self.reconstruct(deep)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_slices(x)


EVIDENCE_SCALE = 10.0


def exclusive_probabilities(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Per-class logits -> the class probabilities of a softmax over background and the classes, with the
    background logit fixed at 0 (so that a single class gets the sigmoid of its logit)."""
    background = torch.zeros_like(logits.narrow(dim, 0, 1))
    return torch.softmax(torch.cat([background, logits], dim=dim), dim=dim).narrow(dim, 1, logits.shape[dim])


def segmentation_evidence(seg_logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) segmentation logits -> (B, 2K): per class the maximum and the mean probability, times
    ``EVIDENCE_SCALE`` so that the volume classifier's first layer sees values of order one."""
    return evidence_of_probabilities(torch.sigmoid(seg_logits.float())).to(seg_logits.dtype)


def evidence_of_probabilities(probs: torch.Tensor) -> torch.Tensor:
    """:func:`segmentation_evidence` from (B, K, H, W) probabilities (Grad-CAM differentiates this part)."""
    return EVIDENCE_SCALE * torch.cat([probs.amax(dim=(2, 3)), probs.mean(dim=(2, 3))], dim=1)


def _deepest_channels(backbone: str) -> int:
    """Channels of the deepest feature map of a FlexibleUNet backbone (:mod:`.layers` for the basic-block
    ResNets, else MONAI's registry)."""
    if layers.supports(backbone):
        return layers.RESNET_CHANNELS[-1]
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

    return int(FLEXUNET_BACKBONE.register_dict[backbone]["feature_channel"][-1])


def _positions(depth: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Sinusoidal positional encoding (depth, dim) for the transformer operator."""
    pos = torch.arange(depth, dtype=like.dtype, device=like.device)[:, None]
    i = torch.arange(0, dim, 2, dtype=like.dtype, device=like.device)
    angles = pos / torch.pow(10000.0, i / dim)
    enc = torch.zeros(depth, dim, dtype=like.dtype, device=like.device)
    enc[:, 0::2] = torch.sin(angles)
    enc[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return enc[None]
