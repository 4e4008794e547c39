"""Adversarial perturbation generators (paper §4, Fig. 5).

Both are convolutional encoder-decoders whose output δ is bounded, δ = ε · tanh(·), and lives
only where the image is pixelized.

- `PixelwiseGenerator(image, mask) -> δ (B, 3, H, W)`: one value per pixel, zero where mask = 1.
- `BlockwiseGenerator(crop, block) -> δ (B, 3, H, W)` for a pixelized face region whose block
  grid (cells of `block` pixels) is anchored at the crop's top-left corner, exactly as
  `protect.pixelize.mosaic_region` builds it: the "down-sampling layer" average-pools the
  features onto that grid (partial edge cells included), a few convolutions mix neighbouring
  cells, and the "up-sampling layer" repeats each cell's value over its pixels. δ is therefore
  constant inside every block, and adding it keeps the output a clean mosaic.

ε is in image units ([0, 1] images): the default 12/255.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from streamguard.models.registry import register_model
from streamguard.protect.pixelize import cell_pool, upsample_cells

DEFAULT_EPS = 12 / 255


def _conv(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding=(k - 1) // 2), nn.ReLU(inplace=True))


class PixelwiseGenerator(nn.Module):
    def __init__(self, width: int = 32, eps: float = DEFAULT_EPS):
        super().__init__()
        self.eps = eps
        self.enc = nn.Sequential(_conv(4, width), _conv(width, 2 * width, 4, 2),
                                 _conv(2 * width, 4 * width, 4, 2), _conv(4 * width, 4 * width))
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(width + 4, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(f"pixel-wise generator sides must be multiples of 4, got {h}x{w}")
        x = torch.cat([image, mask], dim=1)
        y = self.dec(self.enc(x))
        delta = self.eps * torch.tanh(self.out(torch.cat([y, x], dim=1)))
        return delta * (1 - mask)


class BlockwiseGenerator(nn.Module):
    """Fig. 5b with the down-sampling layer first: the pixelized region is average-pooled onto
    its own block grid (for a mosaic that is exactly its cell colours), the encoder-decoder
    works at one position per block, and the up-sampling layer repeats each block's δ over its
    pixels. Working at cell resolution makes the cost independent of the face's pixel size
    (a 13 x 13 grid whatever the face) and δ flat in every block by construction.
    """

    def __init__(self, width: int = 64, depth: int = 4, eps: float = DEFAULT_EPS):
        super().__init__()
        self.eps = eps
        layers = [_conv(3, width)]
        for i in range(depth - 1):
            layers.append(_conv(width, width, 3, 1))
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width + 3, 3, 3, padding=1)

    def forward(self, crop: torch.Tensor, block: int) -> torch.Tensor:
        h, w = crop.shape[-2:]
        # up-sampling layer: one value per block
        return upsample_cells(self.cell_delta(crop, block), block, h, w)

    def cell_delta(self, crop: torch.Tensor, block: int) -> torch.Tensor:
        """δ per cell, (B, 3, rows, cols): what the pipeline adds to the mosaic's cell means."""
        # down-sampling layer: the real block grid (partial edge cells included)
        cells = cell_pool(crop, block)
        return self.cells_to_delta(cells)

    def cells_to_delta(self, cells: torch.Tensor) -> torch.Tensor:
        """The network proper, on cell colours (B, 3, rows, cols) in [0, 1]."""
        y = self.body(cells * 2 - 1)
        return self.eps * torch.tanh(self.out(torch.cat([y, cells * 2 - 1], dim=1)))


class CellsToDelta(nn.Module):
    """The block-wise generator seen as an engine sees it: cells (B, 3, rows, cols) in [0, 1]
    -> δ per cell. Batch and grid size vary; nothing else runs."""

    def __init__(self, generator: BlockwiseGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        return self.generator.cells_to_delta(cells)


@register_model("pixelwise", kind="generator")
def pixelwise(**kwargs) -> PixelwiseGenerator:
    return PixelwiseGenerator(**kwargs)


@register_model("blockwise", kind="generator")
def blockwise(**kwargs) -> BlockwiseGenerator:
    return BlockwiseGenerator(**kwargs)


@register_model("pixelwise_tiny", kind="generator")
def pixelwise_tiny(**kwargs) -> PixelwiseGenerator:
    return PixelwiseGenerator(**{"width": 8, **kwargs})


@register_model("blockwise_tiny", kind="generator")
def blockwise_tiny(**kwargs) -> BlockwiseGenerator:
    return BlockwiseGenerator(**{"width": 8, "depth": 2, **kwargs})
