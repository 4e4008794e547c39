"""The Iterative Depixelization Network (paper §3, Fig. 3).

Input: a pixelized image (B, 3, H, W) in [0, 1] and its mask (B, 1, H, W), 1 = non-pixelized.
Output: the recovered image in [0, 1]; non-pixelized pixels are passed through unchanged.

    head (2 strided convs) -> features at 1/4 resolution, mask min-pooled to match
    N recurrences of the DFR module, sharing weights:
        `dd_layers` dynamic dilated convs (each shrinks the mask, Eq. 4)
        encoder-decoder with skip connections (1/4 -> 1/8 -> 1/16 -> 1/8 -> 1/4),
        cross-stage attention (Eq. 1) at 1/8 resolution in the decoder
        -> features F_i and mask M_i
    cross-stage fusion (Eq. 2) of all F_i, then a decoder back to full resolution.

Choices the paper leaves open, made here: width 64 at 1/4 resolution (128 and 256 deeper);
3 dynamic dilated layers per recurrence with dilation 2 (so six recurrences shrink a 128 px
region, 32 feature px wide, to nothing: 6 x 3 = 18 >= 16 per side); no normalization,
LeakyReLU convs; attention patch size 1 at 1/8 resolution (an 8 x 8 image patch) with
temperature 10; the output is a zero-initialized residual added to the mosaic (a direct
sigmoid output, tried first, had not even reached the mosaic's own fidelity after 2,300 CPU
steps), clamped to [0, 1] and pasted into the pixelized region.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from streamguard.models.layers import (
    CrossStageAttention,
    DynamicDilatedConv2d,
    average_fusion,
    cross_stage_fusion,
)
from streamguard.models.registry import register_model


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _conv(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding=(k - 1) // 2), _act())


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, padding=1), _act())


def _down_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    # a feature position counts as known only if every pixel under it is known
    return -F.max_pool2d(-mask, factor, factor)


class DFRModule(nn.Module):
    """Dynamic Feature Recovering module: one recurrence of the IDN."""

    def __init__(self, width: int, stages: int, dd_layers: int, dilation: int, conv: str,
                 attention: str):
        super().__init__()
        self.dd = nn.ModuleList(
            DynamicDilatedConv2d(width, width, 3, dilation, mode=conv) for _ in range(dd_layers)
        )
        self.act = _act()
        self.enc1 = _conv(width, 2 * width, 4, 2)  # 1/8
        self.enc2 = _conv(2 * width, 4 * width, 4, 2)  # 1/16
        self.mid = _conv(4 * width, 4 * width)
        self.dec2 = _up(4 * width, 2 * width)  # 1/8
        self.attn = (
            None if attention == "none"
            else CrossStageAttention(2 * width, stages, cross_stage=attention == "cross_stage")
        )
        self.dec1 = _up(4 * width, width)  # 1/4 (after the skip concat)
        self.out = _conv(2 * width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, stage: int,
                scores: torch.Tensor | None):
        for layer in self.dd:
            x, mask = layer(x, mask)
            x = self.act(x)
        e1 = self.enc1(x)
        e2 = self.mid(self.enc2(e1))
        d2 = self.dec2(e2)
        if self.attn is not None:
            d2, scores = self.attn(d2, _down_mask(mask, 2), stage, scores)
        d1 = self.dec1(torch.cat([d2, e1], dim=1))
        return self.out(torch.cat([d1, x], dim=1)), mask, scores


class IterativeDepixelizationNetwork(nn.Module):
    def __init__(self, width: int = 64, stages: int = 6, dd_layers: int = 3, dilation: int = 2,
                 conv: str = "dynamic", attention: str = "cross_stage",
                 fusion: str = "cross_stage"):
        super().__init__()
        if attention not in ("cross_stage", "ordinary", "none"):
            raise ValueError(f"attention must be cross_stage, ordinary or none, got '{attention}'")
        if fusion not in ("cross_stage", "average", "last"):
            raise ValueError(f"fusion must be cross_stage, average or last, got '{fusion}'")
        self.stages = stages
        self.fusion = fusion
        self.head = nn.Sequential(_conv(4, width // 2, 5), _conv(width // 2, width, 4, 2),
                                  _conv(width, width, 4, 2))
        self.dfr = DFRModule(width, stages, dd_layers, dilation, conv, attention)
        self.up = nn.Sequential(_up(width, width // 2), _up(width // 2, width // 2))
        self.to_rgb = nn.Conv2d(width // 2 + 3, 3, 3, padding=1)
        # the output is a residual on the mosaic, starting at zero: an untrained IDN returns the
        # mosaic itself, and training only has to learn what the mosaic lacks
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"IDN input sides must be multiples of 16, got {h}x{w}")
        x = self.head(torch.cat([image, mask], dim=1))
        m = _down_mask(mask, 4)
        features, masks, scores = [], [], None
        for stage in range(self.stages):
            x, m, scores = self.dfr(x, m, stage, scores)
            features.append(x)
            masks.append(m)
        if self.fusion == "cross_stage":
            fused = cross_stage_fusion(features, masks)
        elif self.fusion == "average":
            fused = average_fusion(features, masks)
        else:
            fused = features[-1]
        residual = self.to_rgb(torch.cat([self.up(fused), image], dim=1))
        pred = (image + residual).clamp(0, 1)
        return pred * (1 - mask) + image * mask


@register_model("idn", kind="attacker")
def idn(**kwargs) -> IterativeDepixelizationNetwork:
    """The paper's IDN: 6 recurrences, dynamic dilated conv, cross-stage attention and fusion."""
    return IterativeDepixelizationNetwork(**kwargs)


@register_model("idn_small", kind="attacker")
def idn_small(**kwargs) -> IterativeDepixelizationNetwork:
    """Half width, for CPU training on 128 px faces."""
    return IterativeDepixelizationNetwork(**{"width": 32, **kwargs})


@register_model("idn_tiny", kind="attacker")
def idn_tiny(**kwargs) -> IterativeDepixelizationNetwork:
    """For tests: width 8, 2 recurrences."""
    return IterativeDepixelizationNetwork(**{"width": 8, "stages": 2, "dd_layers": 2, **kwargs})
