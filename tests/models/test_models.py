"""The paper's building blocks against their equations, and every registered model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamguard.errors import ConfigError
from streamguard.models.layers import (
    CrossStageAttention, DynamicDilatedConv2d, cross_stage_fusion, update_mask,
)
from streamguard.models import create_model, list_models, model_kind, register_model
from streamguard.protect.pixelize import grid_shape, pixelize_regions


def test_dynamic_dilated_conv_is_vanilla_on_known_and_dilated_on_pixelized():
    torch.manual_seed(0)
    conv = DynamicDilatedConv2d(4, 6, 3, dilation=3)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 4, 16, 16)
    ones, zeros = torch.ones(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    vanilla = F.conv2d(x, conv.vanilla.weight, conv.bias, padding=1)
    dilated = F.conv2d(x, conv.dilated.weight, conv.bias, padding=3, dilation=3)
    assert torch.allclose(conv(x, ones)[0], vanilla, atol=1e-5)
    assert torch.allclose(conv(x, zeros)[0], dilated, atol=1e-5)
    # a mixed mask is neither
    mixed = ones.clone()
    mixed[..., 4:12, 4:12] = 0
    out = conv(x, mixed)[0]
    assert not torch.allclose(out, vanilla) and not torch.allclose(out, dilated)


def test_mask_update_matches_eq4_on_a_hand_made_mask():
    m = torch.zeros(1, 1, 7, 7)
    m[0, 0, 0, 0] = 1  # one known pixel in a corner
    m[0, 0, 6, 3] = 1  # one on the bottom edge
    expected = torch.zeros(7, 7)
    expected[0:2, 0:2] = 1  # every 3x3 window touching (0, 0)
    expected[5:7, 2:5] = 1  # every window touching (6, 3)
    assert torch.equal(update_mask(m, 3)[0, 0], expected)


def test_the_mask_shrinks_every_recurrence_until_nothing_is_pixelized():
    m = torch.ones(1, 1, 32, 32)
    m[..., 4:28, 4:28] = 0
    unknown = [int((m == 0).sum())]
    for _ in range(12):
        m = update_mask(m, 3)
        unknown.append(int((m == 0).sum()))
    assert all(b < a for a, b in zip(unknown, unknown[1:]) if a > 0)
    assert unknown[-1] == 0


def test_cross_stage_fusion_matches_eq2():
    f = [torch.full((1, 2, 2, 2), v) for v in (1.0, 3.0, 5.0)]
    m = [torch.tensor([[[[1.0, 0], [0, 0]]]]), torch.tensor([[[[1.0, 1], [0, 0]]]]),
         torch.tensor([[[[1.0, 1], [1, 0]]]])]
    out = cross_stage_fusion(f, m)[0, 0]
    assert out[0, 0] == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert out[0, 1] == pytest.approx(4.0)  # (3 + 5) / 2
    assert out[1, 0] == pytest.approx(5.0)
    assert out[1, 1] == 0.0  # never recovered


def test_cross_stage_attention_mixes_scores_as_eq1_and_borrows_only_known_positions():
    torch.manual_seed(0)
    att = CrossStageAttention(4, stages=3)
    with torch.no_grad():
        att.mix[1] = 2.0
    x = torch.randn(1, 4, 4, 4)
    known = torch.ones(1, 1, 4, 4)
    known[..., 1:3, 1:3] = 0
    _, s0 = att(x, known, 0, None)
    assert torch.allclose(s0.sum(-1), torch.ones(1, 16))
    unknown_keys = (known.flatten() == 0)
    assert s0[..., unknown_keys].abs().max() == 0
    _, s1_raw = CrossStageAttention(4, 3, cross_stage=False)(x, known, 1, None)
    _, s1 = att(x, known, 1, s0)
    lam = torch.sigmoid(torch.tensor(2.0))
    assert torch.allclose(s1, lam * s1_raw + (1 - lam) * s0, atol=1e-6)
    out, _ = att(x, known, 0, None)
    assert torch.equal(out * known, x * known)  # known features pass through


def _inputs(name, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(2, 3, size, size, generator=g)
    boxes = torch.tensor([[4, 4, 28, 28], [8, 6, 32, 30]])
    pix, mask, blocks = pixelize_regions(img, boxes, 0.12)
    return img, pix, mask, boxes, blocks


def _run(model, name, pix, mask, boxes):
    if model_kind(name) == "attacker":
        return model(pix, mask)
    if name.startswith("blockwise"):
        return model(pix[..., 4:28, 4:28], 3)
    return model(pix, mask)


TINY = [n for n in list_models() if n.endswith("_tiny")]
FULL = [n for n in list_models() if not n.endswith("_tiny")]


def test_registry_holds_the_paper_models_and_rejects_duplicates():
    assert {"idn", "unet", "srres", "pixelwise", "blockwise"} <= set(list_models())
    with pytest.raises(ValueError, match="already registered"):
        register_model("idn", kind="attacker")(lambda: None)
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("nope")


@pytest.mark.parametrize("name", TINY + FULL)
def test_every_model_runs_forward_and_backward_without_nan(name):
    torch.manual_seed(0)
    model = create_model(name)
    img, pix, mask, boxes, _ = _inputs(name)
    out = _run(model, name, pix, mask, boxes)
    assert torch.isfinite(out).all()
    loss = (out - img[..., : out.shape[-2], : out.shape[-1]]).abs().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    assert model.model_args["name"] == name


@pytest.mark.parametrize("name", TINY)
def test_models_are_deterministic_under_a_seed(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = create_model(name).eval()
        _, pix, mask, boxes, _ = _inputs(name)
        with torch.no_grad():
            outs.append(_run(model, name, pix, mask, boxes))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", [n for n in list_models() if model_kind(n) == "attacker"])
def test_attackers_keep_the_non_pixelized_pixels(name):
    model = create_model(name).eval()
    img, pix, mask, boxes, _ = _inputs(name)
    with torch.no_grad():
        out = model(pix, mask)
    assert torch.allclose(out * mask, pix * mask)


@pytest.mark.parametrize("name", ["blockwise_tiny", "blockwise"])
def test_blockwise_delta_is_constant_in_every_block_and_bounded(name):
    torch.manual_seed(0)
    model = create_model(name, eps=0.05)
    with torch.no_grad():  # make δ large so flatness is tested on real values
        model.out.bias.fill_(3.0)
    crop = torch.rand(2, 3, 37, 29)
    s = 5
    delta = model(crop, s)
    rows, cols = grid_shape(37, 29, s)
    cells = model.cell_delta(crop, s)
    assert cells.shape == (2, 3, rows, cols)
    for r in range(rows):
        for c in range(cols):
            block = delta[..., r * s:(r + 1) * s, c * s:(c + 1) * s]
            assert torch.allclose(block, cells[..., r:r + 1, c:c + 1].expand_as(block))
    assert delta.abs().max() <= 0.05 + 1e-6 and delta.abs().max() > 0.04


def test_pixelwise_delta_is_zero_outside_the_pixelized_region_and_bounded():
    torch.manual_seed(0)
    model = create_model("pixelwise_tiny", eps=0.03)
    img, pix, mask, boxes, _ = _inputs("pixelwise_tiny")
    delta = model(pix, mask)
    assert delta[mask.expand_as(delta) > 0].abs().max() == 0
    assert delta.abs().max() <= 0.03 + 1e-6


@pytest.mark.parametrize("name", ["blockwise", "pixelwise", "blockwise_tiny", "pixelwise_tiny"])
def test_generators_export_with_torch_export_and_onnx(name, tmp_path):
    model = create_model(name).eval()

    class Fixed(torch.nn.Module):  # the block size is fixed per exported engine
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, mask):
            return self.m(x, 4) if name.startswith("blockwise") else self.m(x, mask)

    wrapped = Fixed(model).eval()
    x = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    with torch.no_grad():
        ref = wrapped(x, mask)
    ep = torch.export.export(wrapped, (x, mask))
    assert torch.allclose(ep.module()(x, mask), ref, atol=1e-5)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(wrapped, (x, mask), str(path), input_names=["image", "mask"],
                      output_names=["delta"], dynamo=False)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"image": x.numpy(), "mask": mask.numpy()}
    got = sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})[0]
    assert np.abs(got - ref.numpy()).max() < 1e-4


def test_attacker_exports_saves_and_reloads_with_torch_export(tmp_path):
    model = create_model("idn_tiny").eval()
    _, pix, mask, _, _ = _inputs("idn_tiny")
    ep = torch.export.export(model, (pix, mask))
    torch.export.save(ep, tmp_path / "idn.pt2")
    loaded = torch.export.load(tmp_path / "idn.pt2")
    with torch.no_grad():
        assert torch.allclose(loaded.module()(pix, mask), model(pix, mask), atol=1e-5)


def test_the_multiframe_attacker_takes_any_number_of_frames_in_any_order():
    torch.manual_seed(0)
    model = create_model("multiframe_tiny").eval()
    frames = torch.rand(2, 5, 3, 32, 32)
    mask = torch.ones(2, 1, 32, 32)
    mask[..., 4:28, 4:28] = 0
    with torch.no_grad():
        out = model(frames, mask)
        shuffled = model(frames[:, [3, 0, 4, 2, 1]], mask)
        one = model(frames[:, 0], mask)
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out, shuffled, atol=1e-6)  # fused by mean and max: order-free
    assert torch.allclose(out * mask, frames.mean(1) * mask)  # known pixels: the frames' mean
    assert one.shape == (2, 3, 32, 32)
