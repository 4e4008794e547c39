"""A TensorFlow Lite graph read from its flatbuffer and run by torch: the BlazeFace models on
any device torch has, batched, without LiteRT.

`read_graph(path)` parses a `.tflite` file (the `tflite` package: the flatbuffer schema as
Python, no TensorFlow) into a `Graph`: its operators in order and its constant tensors as
float32 arrays, float16 weights dequantized and sparse ones (TFLite's CSR sparsity, as the
full-range model stores 46 of its weights) made dense at load. `TfliteModule` runs a `Graph`:
image tensors are kept NCHW, as torch's convolutions want them, and put back in TFLite's
NHWC order where the graph reshapes them (its output heads). Only the operators the two
BlazeFace models use are supported; anything else is refused by name at load.

`save_graph` / `load_graph` keep a converted graph as one safetensors file (the operators in
its metadata): loading it needs neither `tflite` nor the flatbuffer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RELU", "PAD", "MAX_POOL_2D", "RESHAPE",
             "CONCATENATION", "RESIZE_BILINEAR", "DEPTH_TO_SPACE")
_FOLDED = ("DEQUANTIZE", "DENSIFY")  # constant inputs: done once at load
_ACTIVATION = {0: None, 1: "relu"}  # TFLite's fused activations these models use
_NUMPY = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8}


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    ops: list[Op]
    constants: dict[int, np.ndarray]  # tensor index -> float32 / int32 values
    shapes: dict[int, list[int]]  # tensor index -> TFLite (NHWC) shape
    input: int
    outputs: list[int]
    output_names: list[str]


def read_graph(path: str | Path) -> Graph:
    """Parse a .tflite file; ValueError naming what is not supported."""
    import tflite

    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    shapes, constants = {}, {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        shapes[i] = t.ShapeAsNumpy().tolist() if t.ShapeLength() else []
        data = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
        if isinstance(data, np.ndarray) and data.size:
            if t.Type() not in _NUMPY:
                raise ValueError(f"{path}: tensor type {t.Type()} is not supported")
            values = data.view(_NUMPY[t.Type()])
            constants[i] = (values if t.Sparsity() is not None
                            else values.reshape(shapes[i]))
    ops = []
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        outs = [op.Outputs(j) for j in range(op.OutputsLength())]
        if kind == "DENSIFY":
            constants[outs[0]] = _densify(g.Tensors(ins[0]), constants[ins[0]], shapes[ins[0]])
            continue
        if kind == "DEQUANTIZE":  # float16 weights
            constants[outs[0]] = constants[ins[0]].astype(np.float32).reshape(shapes[outs[0]])
            continue
        if kind not in SUPPORTED:
            raise ValueError(f"{path}: operator {kind} is not supported by the torch runtime")
        ops.append(Op(kind, ins, outs, _options(tflite, kind, op)))
    outputs = [g.Outputs(j) for j in range(g.OutputsLength())]
    return Graph(ops, {i: v.astype(np.float32) if v.dtype == np.float16 else v
                       for i, v in constants.items()},
                 shapes, g.Inputs(0), outputs,
                 [g.Tensors(i).Name().decode() for i in outputs])


def _densify(tensor: Any, values: np.ndarray, shape: list[int]) -> np.ndarray:
    """TFLite's sparse layout as these models use it: every dimension dense but the last,
    which is compressed (CSR: per row, a segment of column indices and their values)."""
    import tflite

    sp = tensor.Sparsity()
    order = sp.TraversalOrderAsNumpy().tolist()
    dims = [sp.DimMetadata(d) for d in range(sp.DimMetadataLength())]
    if (order != list(range(len(shape))) or sp.BlockMapLength()
            or any(d.Format() != 0 for d in dims[:-1]) or dims[-1].Format() != 1):
        raise ValueError(f"sparse tensor {tensor.Name().decode()}: this sparsity layout is not "
                         "supported")
    vectors = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}

    def read(kind: int, table: Any) -> np.ndarray:
        vec = vectors[kind]()
        vec.Init(table.Bytes, table.Pos)
        return vec.ValuesAsNumpy().astype(np.int64)

    last = dims[-1]
    segments = read(last.ArraySegmentsType(), last.ArraySegments())
    indices = read(last.ArrayIndicesType(), last.ArrayIndices())
    dense = np.zeros((int(np.prod(shape[:-1])), shape[-1]), values.dtype)
    rows = np.repeat(np.arange(len(segments) - 1), np.diff(segments))
    dense[rows, indices] = values[:len(indices)]
    return dense.reshape(shape)


def _options(tflite: Any, kind: str, op: Any) -> dict[str, Any]:
    raw = op.BuiltinOptions()
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
        o.Init(raw.Bytes, raw.Pos)
        if o.DilationHFactor() != 1 or o.DilationWFactor() != 1:
            raise ValueError(f"{kind} with dilation is not supported")
        return {"same": o.Padding() == 0, "stride": [o.StrideH(), o.StrideW()],
                "act": _activation(o.FusedActivationFunction())}
    if kind == "ADD":
        o = tflite.AddOptions()
        o.Init(raw.Bytes, raw.Pos)
        return {"act": _activation(o.FusedActivationFunction())}
    if kind == "MAX_POOL_2D":
        o = tflite.Pool2DOptions()
        o.Init(raw.Bytes, raw.Pos)
        return {"same": o.Padding() == 0, "stride": [o.StrideH(), o.StrideW()],
                "size": [o.FilterHeight(), o.FilterWidth()],
                "act": _activation(o.FusedActivationFunction())}
    if kind == "CONCATENATION":
        o = tflite.ConcatenationOptions()
        o.Init(raw.Bytes, raw.Pos)
        return {"axis": o.Axis(), "act": _activation(o.FusedActivationFunction())}
    if kind == "RESIZE_BILINEAR":
        o = tflite.ResizeBilinearOptions()
        o.Init(raw.Bytes, raw.Pos)
        if o.AlignCorners() or not o.HalfPixelCenters():
            raise ValueError("RESIZE_BILINEAR other than half-pixel centres is not supported")
        return {}
    if kind == "DEPTH_TO_SPACE":
        o = tflite.DepthToSpaceOptions()
        o.Init(raw.Bytes, raw.Pos)
        return {"block": o.BlockSize()}
    return {}


def _activation(code: int) -> str | None:
    if code not in _ACTIVATION:
        raise ValueError(f"fused activation {code} is not supported")
    return _ACTIVATION[code]


# -- keeping a converted graph ----------------------------------------------------------------

def save_graph(graph: Graph, path: Path, source_sha256: str) -> None:
    """The graph as safetensors: its constants as tensors, the rest as JSON metadata."""
    from safetensors.numpy import save_file

    meta = {"ops": [[op.kind, op.inputs, op.outputs, op.options] for op in graph.ops],
            "shapes": {str(k): v for k, v in graph.shapes.items()}, "input": graph.input,
            "outputs": graph.outputs, "output_names": graph.output_names}
    tmp = path.with_suffix(".partial")
    save_file({str(k): np.ascontiguousarray(v) for k, v in graph.constants.items()}, str(tmp),
              metadata={"graph": json.dumps(meta), "source_sha256": source_sha256})
    tmp.replace(path)


def load_graph(path: Path, source_sha256: str) -> Graph | None:
    """A graph `save_graph` kept from the file with this checksum; None if there is none."""
    from safetensors import safe_open

    if not path.exists():
        return None
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
        if meta.get("source_sha256") != source_sha256:
            return None
        constants = {int(k): f.get_tensor(k) for k in f.keys()}
    g = json.loads(meta["graph"])
    return Graph([Op(*op) for op in g["ops"]], constants,
                 {int(k): v for k, v in g["shapes"].items()}, g["input"], g["outputs"],
                 g["output_names"])


# -- running it -----------------------------------------------------------------------------

def build_module(graph: Graph):
    """A torch module running `graph`: (N, H, W, 3) float input -> its outputs, in order."""
    import torch
    import torch.nn.functional as F

    class TfliteModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ops = graph.ops
            self.input, self.outputs = graph.input, graph.outputs
            self.shapes = graph.shapes
            self._const: dict[int, str] = {}
            for op in graph.ops:
                for i in op.inputs[1:]:
                    if i < 0 or i not in graph.constants:
                        continue
                    value = graph.constants[i]
                    if op.kind == "CONV_2D" and value.ndim == 4:  # OHWI -> OIHW
                        value = value.transpose(0, 3, 1, 2)
                    elif op.kind == "DEPTHWISE_CONV_2D" and value.ndim == 4:  # 1HWO -> O1HW
                        value = value.transpose(3, 0, 1, 2)
                    name = f"c{i}"
                    if name not in self._const.values():
                        self.register_buffer(name, torch.from_numpy(np.array(value)),
                                             persistent=False)
                    self._const[i] = name

        def const(self, i: int):
            return getattr(self, self._const[i])

        def forward(self, x):  # (N, H, W, C), as TFLite takes it
            values = {self.input: x.permute(0, 3, 1, 2)}  # image tensors are NCHW here
            for op in self.ops:
                values[op.outputs[0]] = self._run(op, values, x.shape[0])
            return [values[i] for i in self.outputs]

        def _run(self, op: Op, values: dict, n: int):
            o, x = op.options, values[op.inputs[0]]
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = self.const(op.inputs[1])
                b = self.const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
                if o["same"]:
                    x = _same_pad(x, w.shape[2:], o["stride"])
                groups = x.shape[1] if op.kind == "DEPTHWISE_CONV_2D" else 1
                return _act(F.conv2d(x, w, b, stride=o["stride"], groups=groups), o["act"])
            if op.kind == "ADD":
                y = values[op.inputs[1]] if op.inputs[1] in values else self.const(op.inputs[1])
                return _act(x + y, o["act"])
            if op.kind == "RELU":
                return F.relu(x)
            if op.kind == "PAD":
                pads = graph.constants[op.inputs[1]]  # NHWC: [[n], [h], [w], [c]] (before, after)
                return F.pad(x, (int(pads[2][0]), int(pads[2][1]), int(pads[1][0]),
                                 int(pads[1][1]), int(pads[3][0]), int(pads[3][1])))
            if op.kind == "MAX_POOL_2D":
                if o["same"]:
                    x = _same_pad(x, o["size"], o["stride"], value=float("-inf"))
                return _act(F.max_pool2d(x, o["size"], o["stride"]), o["act"])
            if op.kind == "RESIZE_BILINEAR":
                size = graph.constants[op.inputs[1]].tolist()
                return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            if op.kind == "DEPTH_TO_SPACE":  # TFLite's channel order: (row, column, channel)
                k = o["block"]
                b, c, h, w = x.shape
                x = x.reshape(b, k, k, c // (k * k), h, w).permute(0, 3, 4, 1, 5, 2)
                return x.reshape(b, c // (k * k), h * k, w * k)
            if op.kind == "RESHAPE":  # in TFLite's NHWC order, with this batch
                if x.dim() == 4:
                    x = x.permute(0, 2, 3, 1)
                shape = list(self.shapes[op.outputs[0]])
                return x.reshape(n, *shape[1:])
            if op.kind == "CONCATENATION":
                parts = [values[i] for i in op.inputs]
                return _act(torch.cat(parts, dim=o["axis"]), o["act"])
            raise ValueError(f"operator {op.kind} is not supported")

    def _same_pad(x, kernel, stride, value: float = 0.0):
        """TensorFlow's SAME padding: the extra pixel, if any, after (bottom, right)."""
        pads = []
        for size, k, s in zip(x.shape[2:], kernel, stride):
            total = max((-(-size // s) - 1) * s + int(k) - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.pad(x, (left, right, top, bottom), value=value)

    def _act(x, act: str | None):
        return F.relu(x) if act == "relu" else x

    return TfliteModule().eval()
