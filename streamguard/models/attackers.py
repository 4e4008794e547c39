"""Baseline depixelizers of other families, for transfer tests. Generator training never sees
them: they stand for attackers the defense was not trained against.

Both take (pixelized image, mask) like the IDN and return the recovered image in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn

from streamguard.models.registry import register_model


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetAttacker(nn.Module):
    """A plain U-Net with vanilla convolutions: the paper's "++" adaptation of inpainting nets
    (partial convolutions replaced by vanilla ones)."""

    def __init__(self, width: int = 16, depth: int = 4):
        super().__init__()
        chans = [width * 2 ** i for i in range(depth)]
        self.downs = nn.ModuleList()
        cin = 4
        for c in chans:
            self.downs.append(_block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.mid = _block(chans[-1], chans[-1] * 2)
        self.ups = nn.ModuleList()
        self.upconvs = nn.ModuleList()
        cin = chans[-1] * 2
        for c in reversed(chans):
            self.upconvs.append(nn.ConvTranspose2d(cin, c, 2, 2))
            self.ups.append(_block(2 * c, c))
            cin = c
        self.out = nn.Conv2d(chans[0], 3, 1)
        self.multiple = 2 ** depth

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"U-Net input sides must be multiples of {self.multiple}, got {h}x{w}")
        x = torch.cat([image, mask], dim=1)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.mid(x)
        for upconv, up, skip in zip(self.upconvs, self.ups, reversed(skips)):
            x = up(torch.cat([upconv(x), skip], dim=1))
        pred = torch.sigmoid(self.out(x))
        return pred * (1 - mask) + image * mask


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.body(x)


class ResidualSRAttacker(nn.Module):
    """An EDSR-style residual network at full resolution predicting a residual on the mosaic,
    the super-resolution family's answer (depixelization as ultra-high-factor upsampling)."""

    def __init__(self, width: int = 32, blocks: int = 6):
        super().__init__()
        self.head = nn.Conv2d(4, width, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(width) for _ in range(blocks)],
                                  nn.Conv2d(width, width, 3, padding=1))
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.head(torch.cat([image, mask], dim=1))
        pred = (image + self.tail(x + self.body(x))).clamp(0, 1)
        return pred * (1 - mask) + image * mask


@register_model("unet", kind="attacker")
def unet(**kwargs) -> UNetAttacker:
    return UNetAttacker(**kwargs)


@register_model("unet_tiny", kind="attacker")
def unet_tiny(**kwargs) -> UNetAttacker:
    return UNetAttacker(**{"width": 8, "depth": 2, **kwargs})


@register_model("srres", kind="attacker")
def srres(**kwargs) -> ResidualSRAttacker:
    return ResidualSRAttacker(**kwargs)


@register_model("srres_tiny", kind="attacker")
def srres_tiny(**kwargs) -> ResidualSRAttacker:
    return ResidualSRAttacker(**{"width": 8, "blocks": 2, **kwargs})
