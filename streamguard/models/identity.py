"""A differentiable identity network for training: fr_feature.onnx (MobileFaceNet, 512-d) run
in PyTorch by a minimal interpreter of its four ONNX ops (Conv, PRelu, Add, Reshape).

(onnx2torch would do this, but it imports torchvision, which PyPI cannot provide for the pinned
CPU torch.) Used only in training losses; evaluation uses other recognizers (train/evaluate.py).

Input: aligned 112 x 112 faces, (B, 3, 112, 112) RGB in [0, 1]; the network expects BGR
scaled by (x - 127.5) / 128, which `forward` applies. Output: unit-norm (B, 512).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from streamguard.assets import asset_path


class OnnxIdentityNet(nn.Module):
    def __init__(self, path: str | None = None):
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path or asset_path("fr_feature.onnx")))
        self._names: dict[str, str] = {}
        for i, init in enumerate(model.graph.initializer):
            key = f"w{i}"
            self.register_buffer(key, torch.from_numpy(numpy_helper.to_array(init).copy()))
            self._names[init.name] = key
        self._nodes = []
        for node in model.graph.node:
            if node.op_type not in ("Conv", "PRelu", "Add", "Reshape"):
                raise ValueError(f"unsupported op {node.op_type} in {path}")
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            self._nodes.append((node.op_type, list(node.input), node.output[0], attrs))
        self._input = model.graph.input[0].name
        self._output = model.graph.output[0].name
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> OnnxIdentityNet:
        return super().train(False)

    def _get(self, env: dict, name: str) -> torch.Tensor:
        return env[name] if name in env else getattr(self, self._names[name])

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        x = (rgb01.flip(1) * 255 - 127.5) / 128
        env = {self._input: x}
        for op, inputs, output, attrs in self._nodes:
            a = self._get(env, inputs[0])
            if op == "Conv":
                w = self._get(env, inputs[1])
                b = self._get(env, inputs[2]) if len(inputs) > 2 else None
                pads = attrs.get("pads", [0, 0, 0, 0])
                env[output] = F.conv2d(a, w, b, stride=attrs.get("strides", [1, 1]),
                                       padding=(pads[0], pads[1]),
                                       dilation=attrs.get("dilations", [1, 1]),
                                       groups=attrs.get("group", 1))
            elif op == "PRelu":
                slope = self._get(env, inputs[1])
                env[output] = torch.where(a >= 0, a, a * slope)
            elif op == "Add":
                env[output] = a + self._get(env, inputs[1])
            else:  # Reshape: the graph was traced at batch 1; keep the batch dimension
                env[output] = a.reshape(a.shape[0], -1)
        return F.normalize(env[self._output], dim=1)
