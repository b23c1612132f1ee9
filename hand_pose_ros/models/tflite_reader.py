"""Read the parameters of a ``.tflite`` graph as numpy arrays, in graph order.

Design: the pure-Python ``tflite`` package parses the flatbuffer. We only need the constant
tensors (weights, biases, PReLU slopes) of the layers that carry parameters, in the order the
graph runs them; the PyTorch modules in ``blaze.py`` list their layers in the same order and
``load_layers`` copies the arrays in with a shape check per tensor. fp16 weights (stored behind
DEQUANTIZE ops) are widened to float32 here, exactly as the reference interpreter does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

PARAM_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "PRELU")

# tflite TensorType -> numpy dtype, for the types these graphs use.
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}


@dataclass
class TfliteLayer:
    """One parameterised op: its kind and constant inputs (weight first, then bias if any)."""

    op: str
    params: list[np.ndarray]


def read_param_layers(path: str | Path) -> list[TfliteLayer]:
    """Every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / PRELU of the graph, in graph order.

    Arrays keep TFLite's layouts: conv (O, kh, kw, I), depthwise (1, kh, kw, C), dense (O, I),
    PReLU (1, 1, C). All float32.
    """
    import tflite  # parsing dependency, needed only when building a model from a .tflite file
    from tflite.BuiltinOperator import BuiltinOperator

    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)

    def constant(index: int) -> np.ndarray | None:
        tensor = graph.Tensors(index)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:  # no buffer: an activation
            return None
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy())
        return np.frombuffer(data.tobytes(), dtype=_DTYPES[tensor.Type()]).reshape(shape)

    # DEQUANTIZE ops turn fp16 constants into fp32 tensors: follow them back to the constant.
    dequantized: dict[int, np.ndarray] = {}
    layers: list[TfliteLayer] = []
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        inputs = [op.Inputs(i) for i in range(op.InputsLength())]
        if name == "DEQUANTIZE":
            dequantized[op.Outputs(0)] = constant(inputs[0]).astype(np.float32)
        elif name in PARAM_OPS:
            params = []
            for index in inputs[1:]:
                if index < 0:
                    continue
                array = dequantized.get(index)
                if array is None:
                    array = constant(index)
                if array is None:
                    raise ValueError(f"{path}: op {k} ({name}) has a non-constant parameter")
                params.append(array.astype(np.float32))
            layers.append(TfliteLayer(name, params))
    return layers


def _to_torch(layer: TfliteLayer, module: nn.Module) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Pairs (torch parameter, array in torch layout) for one layer."""
    if isinstance(module, nn.Conv2d):
        expected = "DEPTHWISE_CONV_2D" if module.groups > 1 else "CONV_2D"
        if layer.op != expected:
            raise ValueError(f"expected {expected}, the graph has {layer.op}")
        weight, bias = layer.params
        # conv: (O, kh, kw, I) -> (O, I, kh, kw); depthwise: (1, kh, kw, C) -> (C, 1, kh, kw)
        weight = weight.transpose(3, 0, 1, 2) if module.groups > 1 else weight.transpose(0, 3, 1, 2)
        return [(module.weight, weight), (module.bias, bias)]
    if isinstance(module, nn.Linear):
        if layer.op != "FULLY_CONNECTED":
            raise ValueError(f"expected FULLY_CONNECTED, the graph has {layer.op}")
        weight, bias = layer.params
        return [(module.weight, weight), (module.bias, bias)]
    if isinstance(module, nn.PReLU):
        if layer.op != "PRELU":
            raise ValueError(f"expected PRELU, the graph has {layer.op}")
        return [(module.weight, layer.params[0].reshape(-1))]
    raise TypeError(f"no TFLite mapping for {type(module).__name__}")


def load_layers(modules: list[nn.Module], layers: list[TfliteLayer], source: str) -> None:
    """Copy TFLite parameters into ``modules`` (same order as ``layers``), checking every shape.

    Raises:
        ValueError: when the counts, op kinds or shapes differ; the message names the layer.
    """
    if len(modules) != len(layers):
        raise ValueError(f"{source}: the model has {len(modules)} parameterised layers, "
                         f"the graph {len(layers)}")
    with torch.no_grad():
        for i, (module, layer) in enumerate(zip(modules, layers, strict=True)):
            try:
                pairs = _to_torch(layer, module)
            except ValueError as exc:
                raise ValueError(f"{source}: layer {i}: {exc}") from None
            for param, array in pairs:
                if tuple(param.shape) != array.shape:
                    raise ValueError(f"{source}: layer {i} ({layer.op}): shape "
                                     f"{array.shape} does not fit {tuple(param.shape)}")
                param.copy_(torch.from_numpy(np.ascontiguousarray(array)))
