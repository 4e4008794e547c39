"""A multi-frame depixelizer: K frames of a face, registered on the face, in; one face out.

The video attacker of the scorecard (benchmarks/privacy_video.py), after "Neural Alignment for
Face De-pixelization" (arXiv 2009.13856): when consecutive frames sample the face at different
sub-cell phases (a grid placed anew on every frame), their cells together hold detail no single
mosaic does. Each frame goes through a shared encoder; features are fused by their mean and
maximum over the frames (any K, order-free), decoded to a residual on the frames' mean.

Takes (frames (B, K, 3, H, W), or (B, 3, H, W) for one frame; mask (B, 1, H, W), 1 = not
pixelized) and returns (B, 3, H, W) in [0, 1], pixels outside the protected region taken from
the frames' mean.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from streamguard.models.attackers import _ResBlock
from streamguard.models.registry import register_model


class MultiFrameAttacker(nn.Module):
    def __init__(self, width: int = 32, encoder_width: int = 16, encoder_blocks: int = 1,
                 decoder_blocks: int = 3):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(4, encoder_width, 3, padding=1),
                                    nn.ReLU(inplace=True),
                                    *[_ResBlock(encoder_width) for _ in range(encoder_blocks)])
        self.fuse = nn.Conv2d(2 * encoder_width, width, 1)
        self.decode = nn.Sequential(*[_ResBlock(width) for _ in range(decoder_blocks)],
                                    nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if frames.dim() == 4:  # one frame: K = 1, the same call as the single-frame attackers
            frames = frames[:, None]
        if frames.dim() != 5:
            raise ValueError(f"expected frames (B, K, 3, H, W), got {tuple(frames.shape)}")
        b, k, c, h, w = frames.shape
        m = mask[:, None].expand(b, k, 1, h, w)
        feats = self.encode(torch.cat([frames, m], 2).reshape(b * k, c + 1, h, w))
        feats = feats.reshape(b, k, -1, h, w)
        fused = self.fuse(torch.cat([feats.mean(1), feats.amax(1)], 1))
        mean = frames.mean(1)
        pred = (mean + self.decode(fused)).clamp(0, 1)
        return pred * (1 - mask) + mean * mask


@register_model("multiframe", kind="attacker")
def multiframe(**kwargs) -> MultiFrameAttacker:
    return MultiFrameAttacker(**kwargs)


@register_model("multiframe_tiny", kind="attacker")
def multiframe_tiny(**kwargs) -> MultiFrameAttacker:
    return MultiFrameAttacker(**{"width": 8, "encoder_width": 4, "encoder_blocks": 1,
                                 "decoder_blocks": 1, **kwargs})
