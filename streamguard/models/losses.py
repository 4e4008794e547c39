"""The paper's objectives.

Depixelization (Eq. 5-10), weights (6, 1, 0.05, 120, 0.1) by default:
    L = λ_pix L_pixelized + λ_non L_non-pixelized + λ_per L_perceptual + λ_sty L_style + λ_tv L_TV
Adversarial (Eq. 11-14): L_adv = λ1 L1 + λ2 L2, with
    L1 = ||G(I_pix + δ) - I_pix||_1 (the attacker's output should stay the mosaic)
    L2 = ||δ||_1 (the perturbation should stay small)

Normalization of Eq. 11/13. The paper writes unnormalized L1 norms, which fixes only their
ratio per element. Averaging both per pixel makes λ2 = 8 (block-wise) a per-pixel price that a
depixelizer's gain rarely exceeds, so δ = 0 is optimal and the paper's weights mean nothing.
We measure each norm over the tensor it is a norm of, both divided by the image's H·W·C:
    L1 = Σ_pixels |G(I_pix + δ) - I_pix| / HWC           (as Eq. 5)
    L2 = Σ_{degrees of freedom of δ} |δ| / HWC
For the pixel-wise generator the degrees of freedom are pixels (the per-pixel ratio λ2/λ1 = 3);
for the block-wise generator they are blocks: one offset per block, each counted once, since a
flat offset of a block is one change of one mosaic cell. Its per-pixel price becomes λ2 / s²
(s = block side), so the paper's λ2 = 8 buys a visible but bounded δ. Tests check that under
this normalization the paper's weights give a non-trivial δ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class DepixWeights:
    pixelized: float = 6.0
    non_pixelized: float = 1.0
    perceptual: float = 0.05
    style: float = 120.0
    tv: float = 0.1


def _l1_mean(x: torch.Tensor) -> torch.Tensor:
    return x.abs().mean()


def gram(phi: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix normalized by H·W·C (Eq. 8)."""
    b, c, h, w = phi.shape
    f = phi.flatten(2)
    return f @ f.transpose(1, 2) / (h * w * c)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Eq. 9: mean absolute horizontal plus vertical differences."""
    b, c, h, w = x.shape
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum()
    return (dx + dy) / (b * c * h * w)


def depixelization_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
                        backbone: nn.Module | None, w: DepixWeights = DepixWeights()):
    """Eq. 10. Returns (total, {term: value}). mask: 1 = non-pixelized."""
    terms = {
        "pixelized": _l1_mean((gt - pred) * (1 - mask)),
        "non_pixelized": _l1_mean((gt - pred) * mask),
        "tv": total_variation(pred),
    }
    if backbone is not None:
        f_pred = backbone(pred)
        with torch.no_grad():
            f_gt = backbone(gt)
        terms["perceptual"] = sum(_l1_mean(a - b) for a, b in zip(f_gt, f_pred))
        terms["style"] = sum(_l1_mean(gram(a) - gram(b)) for a, b in zip(f_gt, f_pred))
    total = sum(getattr(w, k) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def adversarial_loss(recovered: torch.Tensor, pixelized: torch.Tensor, delta_dof: torch.Tensor,
                     lambda1: float, lambda2: float):
    """Eq. 14 under the normalization above.

    recovered: G(I_pix + δ), (B, 3, H, W); pixelized: I_pix; delta_dof: δ at its own degrees of
    freedom — (B, 3, H, W) for pixel-wise, (B, 3, rows, cols) cell offsets for block-wise.
    """
    hwc = pixelized[0].numel()
    l1 = (recovered - pixelized).abs().flatten(1).sum(1).mean() / hwc
    l2 = delta_dof.abs().flatten(1).sum(1).mean() / hwc
    return lambda1 * l1 + lambda2 * l2, {"l1": float(l1.detach()), "l2": float(l2.detach())}
