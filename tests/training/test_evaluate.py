"""The paper's metrics on inputs whose answers are known."""

import numpy as np
import pytest
import torch

from train.evaluate import (
    FID, DlibIdentity, cosine, frechet_distance, psnr, ssim,
)


def test_psnr_and_ssim_on_known_cases():
    a = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(a, a), torch.ones(2))
    noisy = (a + 0.1).clamp(0, 1)
    assert float(psnr(a, a + 0.1)[0]) == pytest.approx(20.0, abs=1e-3)
    assert float(ssim(a, noisy).mean()) < 0.99
    assert float(ssim(a, torch.rand_like(a)).mean()) < 0.1


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    f1 = rng.normal(0, 1, (4000, 3))
    f2 = rng.normal(0.5, 2, (4000, 3))
    # ||Δμ||² + Σ (1 + 4 - 2·2) = 3·0.25 + 3·1
    assert frechet_distance(f1, f2) == pytest.approx(3.75, rel=0.05)
    assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-6)


def test_fid_ranks_a_blurred_set_further_than_a_noisy_copy(face_folder_images):
    images = face_folder_images
    fid = FID()
    noisy = (images + 0.01 * torch.randn_like(images)).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(images, 9, 1, 4)
    assert fid(images, noisy) < fid(images, blurred)


@pytest.fixture(scope="module")
def face_folder_images(crops):
    import cv2

    return torch.stack([torch.from_numpy(cv2.resize(c, (128, 128))).permute(2, 0, 1).float() / 255
                        for c in crops])


def test_identity_recognizer_prefers_the_same_face(face_folder_images):
    ident = DlibIdentity()
    x = face_folder_images
    flipped = x.flip(-1)
    same = cosine(ident.embed(x, x), ident.embed(flipped, flipped))
    other = cosine(ident.embed(x, x), ident.embed(x.roll(1, 0), x.roll(1, 0)))
    assert same.mean() > other.mean() + 0.1
