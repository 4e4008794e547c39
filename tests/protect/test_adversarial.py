"""Shipped generators: checksummed loading, bounded flat perturbations, no silent fallback."""

import shutil

import numpy as np
import pytest

from streamguard.config import ProtectConfig
from streamguard.errors import ModelUnavailableError
from streamguard.frames import Faces
from streamguard.models.weights import PACKAGE_WEIGHTS, available, card, load_shipped
from streamguard.protect.adversarial import ADVERSARIAL_WEIGHTS
from streamguard.protect import build_protector
from streamguard.protect.pixelize import block_size, face_regions, pixelize

SHIPPED = available(PACKAGE_WEIGHTS)
MODES = [m for m, w in ADVERSARIAL_WEIGHTS.items() if w in SHIPPED]


def test_weights_are_shipped_for_every_adversarial_mode():
    assert sorted(ADVERSARIAL_WEIGHTS.values()) == sorted(
        w for w in SHIPPED if w in ADVERSARIAL_WEIGHTS.values())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_with_checksum_and_have_a_card(name):
    info = card(name)
    for key in ("model_args", "sha256", "trained_steps", "wall_time_s", "data", "limits"):
        assert key in info, key
    assert info["bytes"] < 8_000_000  # small fp16 files
    model = load_shipped(name)
    assert model.model_args["name"] == info["model_args"]["name"]


def _face_image(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    img[60:180, 100:220] = rng.integers(90, 200, (120, 120, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("mode", MODES)
def test_adversarial_output_changes_the_mosaic_within_the_bound(mode):
    cfg = ProtectConfig(mode=mode, blocks=8, margin=0.25)
    img = _face_image()
    faces = Faces.from_boxes([[120, 80, 200, 160]])
    out = build_protector(cfg)(img, faces)
    bare = pixelize(img, faces, blocks=8, margin=0.25)
    eps = load_shipped(ADVERSARIAL_WEIGHTS[mode]).eps * 255
    diff = np.abs(out.astype(int) - bare.astype(int))
    assert diff.max() <= np.ceil(eps) + 1
    assert diff.max() >= 1  # the generator did something
    x0, y0, x1, y1, _ = face_regions(faces, img.shape, 0.25)[0]
    outside = np.ones(img.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], img[outside])


@pytest.mark.parametrize("mode", [m for m in MODES if m != "adversarial-pixel"])
def test_blockwise_outputs_are_flat_inside_every_block(mode):
    cfg = ProtectConfig(mode=mode, blocks=8, margin=0.25)
    img = _face_image(1)
    faces = Faces.from_boxes([[120, 80, 200, 160], [10, 10, 50, 50]])  # two grids, batched
    out = build_protector(cfg)(img, faces)
    for x0, y0, x1, y1, fw in face_regions(faces, img.shape, 0.25):
        s = block_size(fw, 8, 2)
        region = out[y0:y1, x0:x1]
        for y in range(0, y1 - y0, s):
            for x in range(0, x1 - x0, s):
                cell = region[y:y + s, x:x + s].reshape(-1, 3)
                assert (cell == cell[0]).all()


@pytest.mark.parametrize("mode", MODES)
def test_missing_or_corrupt_weights_refuse_to_start(mode, tmp_path, monkeypatch):
    name = ADVERSARIAL_WEIGHTS[mode]
    for ext in (".json", ".safetensors"):
        shutil.copy(PACKAGE_WEIGHTS / f"{name}{ext}", tmp_path / f"{name}{ext}")
    monkeypatch.setenv("STREAMGUARD_WEIGHTS", str(tmp_path))
    build_protector(ProtectConfig(mode=mode))  # the intact copy loads
    blob = bytearray((tmp_path / f"{name}.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / f"{name}.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ModelUnavailableError, match="corrupt"):
        build_protector(ProtectConfig(mode=mode))
    (tmp_path / f"{name}.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="missing"):
        build_protector(ProtectConfig(mode=mode))
