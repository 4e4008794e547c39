import numpy as np
import pytest
import torch

from streamguard.config import ProtectConfig
from streamguard.errors import ModelUnavailableError
from streamguard.frames import Faces
from streamguard.protect import build_protector, protect_whole_frame
from streamguard.protect.pixelize import (
    block_size, face_regions, grid_shape, mosaic_region, mosaic_tensor, pixelize, ratio_to_blocks,
)


def noise(h=120, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def cells_are_flat(region: np.ndarray, s: int) -> bool:
    h, w = region.shape[:2]
    for y in range(0, h, s):
        for x in range(0, w, s):
            cell = region[y:y + s, x:x + s].reshape(-1, region.shape[2])
            if not (cell == cell[0]).all():
                return False
    return True


def test_mosaic_is_block_mean_with_partial_edge_cells():
    crop = noise(10, 7)
    out = mosaic_region(crop, 4)
    assert out.shape == crop.shape
    assert np.array_equal(out[0, 0], np.rint(crop[:4, :4].reshape(-1, 3).mean(0)).astype(np.uint8))
    assert np.array_equal(out[9, 6], np.rint(crop[8:, 4:].reshape(-1, 3).mean(0)).astype(np.uint8))
    assert cells_are_flat(out, 4)


def test_blocks_are_counted_across_the_face_not_in_pixels():
    assert block_size(160, 8) == 20
    assert block_size(40, 8) == 5
    assert grid_shape(160, 160, block_size(160, 8)) == (8, 8)
    assert ratio_to_blocks(0.10) == 13


def test_tiny_faces_keep_blocks_of_at_least_the_minimum():
    assert block_size(6, 8, min_block_px=2) == 2
    assert block_size(1, 8, min_block_px=3) == 3


def test_zero_faces_returns_an_equal_copy():
    img = noise()
    out = pixelize(img, Faces.empty(), blocks=8)
    assert np.array_equal(out, img) and out is not img


def test_input_is_never_modified():
    img = noise()
    before = img.copy()
    pixelize(img, Faces.from_boxes([[10, 10, 90, 90]]), blocks=8, margin=0.2)
    assert np.array_equal(img, before)


def test_face_region_is_flat_blocks_and_outside_untouched():
    img = noise()
    out = pixelize(img, Faces.from_boxes([[40, 20, 120, 100]]), blocks=8)
    assert cells_are_flat(out[20:100, 40:120], 10)
    assert np.array_equal(out[:20], img[:20]) and np.array_equal(out[:, :40], img[:, :40])


@pytest.mark.parametrize("box", [
    [-50, -50, -10, -10],      # wholly off-frame: nothing to do
    [150, 100, 400, 300],      # off the bottom-right corner
    [-30, -30, 20, 20],        # off the top-left corner
    [0, 0, 160, 120],          # the whole frame, touching every edge
    [50, 50, 51, 51],          # 1-pixel box
    [60, 60, 61.5, 63],        # smaller than one block
])
def test_awkward_boxes_protect_only_their_visible_part(box):
    img = noise()
    out = pixelize(img, Faces.from_boxes([box]), blocks=8, margin=0.0, min_block_px=2)
    assert out.shape == img.shape and out.dtype == np.uint8
    regions = face_regions(Faces.from_boxes([box]), img.shape, 0.0)
    mask = np.zeros(img.shape[:2], bool)
    for x0, y0, x1, y1, _ in regions:
        mask[y0:y1, x0:x1] = True
        assert x0 >= 0 and y0 >= 0 and x1 <= 160 and y1 <= 120
        # the box (rounded outward) is covered
        assert x0 <= max(box[0], 0) and y0 <= max(box[1], 0)
    assert np.array_equal(out[~mask], img[~mask])
    if regions and (regions[0][2] - regions[0][0]) >= 2:
        x0, y0, x1, y1, w = regions[0]
        assert cells_are_flat(out[y0:y1, x0:x1], block_size(w, 8, 2))


def test_margin_grows_the_region_outward():
    (x0, y0, x1, y1, w), = face_regions(Faces.from_boxes([[40, 40, 80, 80]]), (200, 200, 3), 0.25)
    assert (x0, y0, x1, y1, w) == (30, 30, 90, 90, 40.0)


def test_numpy_and_torch_mosaics_are_the_same_operator():
    """Training and the pipeline share one mosaic: the torch twin must match numpy."""
    crop = noise(37, 29)
    for s in (1, 3, 4, 10):
        ref = mosaic_region(crop, s).astype(np.float32)
        x = torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1)[None]
        got = mosaic_tensor(x, s)[0].permute(1, 2, 0).numpy()
        assert np.abs(np.rint(got) - ref).max() <= 1.0, s


def test_per_block_delta_keeps_cells_flat():
    crop = noise(40, 40)
    rows, cols = grid_shape(40, 40, 8)
    delta = np.random.default_rng(1).uniform(-12, 12, (rows, cols, 3)).astype(np.float32)
    out = mosaic_region(crop, 8, delta)
    assert cells_are_flat(out, 8)
    assert not np.array_equal(out, mosaic_region(crop, 8))
    with pytest.raises(ValueError, match="grid"):
        mosaic_region(crop, 8, delta[:2])


def test_whole_frame_protection_leaves_no_fine_detail():
    img = noise(360, 640)
    out = protect_whole_frame(img, ProtectConfig(frame_blocks=24))
    s = -(-640 // 24)
    assert cells_are_flat(out, s)


@pytest.mark.parametrize("mode", ["mosaic", "blur", "solid"])
def test_modes_change_face_pixels_only(mode):
    img = noise()
    protect = build_protector(ProtectConfig(mode=mode, margin=0.0))
    out = protect(img, Faces.from_boxes([[40, 30, 100, 90]]))
    assert not np.array_equal(out[30:90, 40:100], img[30:90, 40:100])
    assert np.array_equal(out[:30], img[:30]) and np.array_equal(out[90:], img[90:])
    if mode == "solid":
        assert (out[30:90, 40:100] == 0).all()


@pytest.mark.parametrize("mode", ["adversarial-block", "adversarial-identity",
                                  "adversarial-pixel"])
def test_adversarial_modes_refuse_without_weights(mode, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMGUARD_WEIGHTS", str(tmp_path))  # an empty weights folder
    with pytest.raises(ModelUnavailableError, match="no shipped weights"):
        build_protector(ProtectConfig(mode=mode))
