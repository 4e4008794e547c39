"""The paper's building blocks: dynamic dilated convolution (Eq. 3), the mask update (Eq. 4),
cross-stage attention (Eq. 1) and cross-stage fusion (Eq. 2).

Masks are (B, 1, H, W) float tensors with 1 = non-pixelized (known) and 0 = pixelized.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def update_mask(mask: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Eq. 4: a window holding any non-pixelized pixel becomes non-pixelized.

    A max-pool over the (stride 1, same-padded) sliding window, so the pixelized region shrinks
    by kernel_size // 2 pixels per side per call.
    """
    return F.max_pool2d(mask, kernel_size, stride=1, padding=kernel_size // 2)


class DynamicDilatedConv2d(nn.Module):
    """Eq. 3: X' = W_vanilla^T (X ⊙ S) + W_dilated^T (X ⊙ (1 - S)).

    Non-pixelized positions (S = 1) are read by a vanilla k x k kernel, pixelized ones (S = 0)
    by a dilated kernel that strides over the runs of identical pixels inside a mosaic block.
    One bias is shared, so an all-ones mask gives exactly a vanilla convolution and an all-zeros
    mask exactly a dilated one. `mode` selects the ablations of Table 2: "dynamic" (the paper),
    "vanilla" or "dilated" (the plain convolutions).
    Returns the features and the mask updated by Eq. 4 (over the vanilla window).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, dilation: int = 2,
                 mode: str = "dynamic"):
        super().__init__()
        if mode not in ("dynamic", "vanilla", "dilated"):
            raise ValueError(f"mode must be dynamic, vanilla or dilated, got '{mode}'")
        self.mode = mode
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.vanilla = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)
        self.dilated = nn.Conv2d(in_ch, out_ch, kernel_size, padding=dilation * (kernel_size // 2),
                                 dilation=dilation, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "vanilla":
            out = self.vanilla(x)
        elif self.mode == "dilated":
            out = self.dilated(x)
        else:
            out = self.vanilla(x * mask) + self.dilated(x * (1 - mask))
        return out + self.bias.view(1, -1, 1, 1), update_mask(mask, self.kernel_size)


def cross_stage_fusion(features: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 2: F = Σ F_i ⊙ M_i / Σ M_i (element-wise); positions no stage recovered give 0."""
    num = sum(f * m for f, m in zip(features, masks))
    den = sum(masks)
    return num / den.clamp_min(1e-6) * (den > 0)


def average_fusion(features: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
    """Ablation: a plain mean of every stage's features."""
    return sum(features) / len(features)


class CrossStageAttention(nn.Module):
    """Contextual attention that borrows features from known positions, shared across stages.

    Scores are cosine similarities between every position (query) and every known position
    (key), softmax-normalized with a temperature; Eq. 1 mixes each stage's scores with the
    previous stage's: score_i = λ_i score_i + (1 - λ_i) score_{i-1}, λ_i = sigmoid(a learnable
    scalar per stage). Attended features replace the unknown positions after a 1x1 fusion.
    Patch size 1 on the feature map it is given (the IDN applies it at 1/8 resolution, where one
    position covers an 8 x 8 image patch). `cross_stage=False` is the "ordinary attention"
    ablation (no mixing).
    """

    def __init__(self, channels: int, stages: int, temperature: float = 10.0,
                 cross_stage: bool = True):
        super().__init__()
        self.temperature = temperature
        self.cross_stage = cross_stage
        self.mix = nn.Parameter(torch.zeros(stages))  # sigmoid(0) = 0.5 at start
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor, known: torch.Tensor, stage: int,
                previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        flat = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        unit = F.normalize(flat, dim=2)
        logits = unit @ unit.transpose(1, 2) * self.temperature  # (B, HW, HW)
        key_known = known.flatten(2)  # (B, 1, HW)
        logits = logits.masked_fill(key_known < 0.5, float("-inf"))
        has_key = key_known.amax(dim=2, keepdim=True) > 0.5  # (B, 1, 1)
        scores = torch.where(has_key, logits.softmax(dim=2), torch.zeros_like(logits))
        scores = torch.nan_to_num(scores)
        if self.cross_stage and previous is not None:
            lam = torch.sigmoid(self.mix[stage])
            scores = lam * scores + (1 - lam) * previous
        borrowed = (scores @ flat).transpose(1, 2).reshape(b, c, h, w)
        merged = self.fuse(torch.cat([x, borrowed], dim=1))
        return x * known + merged * (1 - known), scores
