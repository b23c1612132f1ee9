"""``hand-pose export --model NAME --format onnx|tensorrt --out DIR``: a model's network as an
ONNX file (checked against onnxruntime, and for TensorRT-friendliness) or a TensorRT engine.

Design:
- Any registered model (``models.list_models()``) is exported from the module its torch backend
  runs, so the file is exactly the network the pipeline uses; the MediaPipe palm detector,
  which the pipeline runs before the landmark model, is exported as ``palm_detection`` /
  ``palm_detection_lite``.
- ONNX: opset ``onnx_backend.OPSET``; input height/width always static; batch static
  (``--batch N``, default 1) or dynamic 1..N (``--dynamic-batch``); weights embedded unless they
  pass protobuf's 2 GB limit. After export the file is run with onnxruntime on random crops and
  compared with torch (the max difference is printed), and checked for what TensorRT's ONNX
  parser needs (``tensorrt_problems``).
- TensorRT: the same ONNX file, then ``runtime.tensorrt_backend.build_engine`` with one
  optimisation profile; without TensorRT the command ends with one line saying so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# ONNX operators TensorRT's ONNX parser supports (marked "Y"), from onnx/onnx-tensorrt
# docs/operators.md, "Operator Support Matrix" (the TensorRT 8.4 table; every entry is still
# supported in the TensorRT 10 table). https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md
TENSORRT_ONNX_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "AveragePool", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace",
    "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
    "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm",
    "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GRU",
    "HardSigmoid", "Identity", "If", "ImageScaler", "InstanceNormalization", "IsNaN", "LeakyRelu",
    "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool",
    "MatMul", "Max", "MaxPool", "Mean", "Min", "Mul", "Neg", "Not", "Or", "Pad",
    "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomUniform", "RandomUniformLike",
    "Range", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
    "ReverseSequence", "RNN", "Round", "ScaledTanh", "Scan", "Scatter", "ScatterElements",
    "ScatterND", "Selu", "Shape", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax",
    "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan",
    "Tanh", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Unsqueeze", "Upsample", "Where", "Xor",
})
# TensorRT 10's parser reads opsets 9..20 (same document, TensorRT 10.0 header).
TENSORRT_MAX_OPSET = 20
PROTOBUF_LIMIT = 2 << 30
PALM_DETECTORS = {"palm_detection": "full", "palm_detection_lite": "lite"}


def tensorrt_problems(model, dynamic_batch: bool) -> list[str]:
    """Why TensorRT's ONNX parser (or our engine profile) would reject ``model``; [] if none.

    Checked: every op is in ``TENSORRT_ONNX_OPS`` (default domain), opset <= 20, every input is
    (batch, C, H, W)-like with static non-batch axes and a batch axis that is dynamic exactly
    when ``dynamic_batch``, and no tensor is float64 and no output is an integer type.
    """
    import onnx

    problems = []
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > TENSORRT_MAX_OPSET:
            problems.append(f"opset {entry.version} > {TENSORRT_MAX_OPSET}")
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    for domain, op in sorted(ops):
        if domain not in ("", "ai.onnx") or op not in TENSORRT_ONNX_OPS:
            problems.append(f"op {domain + '::' if domain else ''}{op} not supported")
    initializers = {i.name for i in model.graph.initializer}
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        dims = tensor.type.tensor_type.shape.dim
        if not dims:
            problems.append(f"input {tensor.name} has no shape")
            continue
        if any(not d.HasField("dim_value") for d in dims[1:]):
            problems.append(f"input {tensor.name}: non-batch axes must be static")
        if dims[0].HasField("dim_value") == dynamic_batch:
            problems.append(f"input {tensor.name}: batch axis should be "
                            f"{'dynamic' if dynamic_batch else 'static'}")
    typed = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    doubles = [t.name for t in typed if t.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE]
    doubles += [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.DOUBLE]
    if doubles:
        problems.append(f"float64 tensors: {', '.join(doubles[:5])}")
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    for tensor in model.graph.output:
        if tensor.type.tensor_type.elem_type not in floats:
            kind = onnx.TensorProto.DataType.Name(tensor.type.tensor_type.elem_type)
            problems.append(f"output {tensor.name} is {kind}, not float")
    return problems


def network(name: str, config: str | None):
    """(torch module, crop side) of a registered model or of a palm detector."""
    from hand_pose_ros.models import create_model, list_models

    if name in PALM_DETECTORS:
        from hand_pose_ros.models.mediapipe import MediaPipePalmDetector

        detector = MediaPipePalmDetector(PALM_DETECTORS[name], backend="torch")
        return detector.backend.module, detector.input_size
    if name not in list_models():
        raise ValueError(f"unknown model {name!r}; choose one of "
                         f"{sorted([*list_models(), *PALM_DETECTORS])}")
    overrides = {"config": config} if config else {}
    estimator = create_model(name, backend="torch", **overrides)
    return estimator.backend.module, estimator.input_size


def export(name: str, out: Path, *, config: str | None = None, batch: int = 1,
           dynamic_batch: bool = False) -> tuple[Path, dict]:
    """Export ``name`` to ``out/<name>[-<config>].onnx``; returns the path and a report
    (file size, opset, inputs, outputs, onnxruntime-vs-torch max difference, TensorRT
    problems)."""
    import onnx
    import onnxruntime as ort
    import torch

    from hand_pose_ros.runtime.onnx_backend import OPSET, export_onnx

    module, size = network(name, config)
    module = module.float().eval()
    example = (torch.zeros(batch, 3, size, size),)
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    path = out / f"{name}{'-' + config if config else ''}.onnx"
    export_onnx(module, example, path, dynamic_batch=dynamic_batch, max_batch=max(batch, 64),
                opset=OPSET, external_data=weight_bytes >= PROTOBUF_LIMIT)
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path), load_external_data=False)

    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    with torch.inference_mode():
        expected = module(torch.from_numpy(x))
    expected = (expected,) if isinstance(expected, torch.Tensor) else expected
    max_diff = max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))

    def shape(t):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in t.type.tensor_type.shape.dim]

    report = {
        "file": str(path), "bytes": path.stat().st_size, "opset": OPSET,
        "parameters": sum(p.numel() for p in module.parameters()),
        "weights_embedded": weight_bytes < PROTOBUF_LIMIT,
        "inputs": {t.name: shape(t) for t in model.graph.input},
        "outputs": {t.name: shape(t) for t in model.graph.output},
        "onnxruntime_max_abs_diff": max_diff,
        "tensorrt_problems": tensorrt_problems(model, dynamic_batch),
    }
    return path, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="registered model (mediapipe, mediapipe_lite, seed models) or "
                             "palm_detection / palm_detection_lite")
    parser.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--config", default=None, help="model configuration (seed models)")
    parser.add_argument("--batch", type=int, default=1,
                        help="batch size (hands per call): the static batch, or with "
                             "--dynamic-batch the largest one (TensorRT profile max)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="dynamic batch axis (1..--batch) instead of a static one")
    parser.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16",
                        help="TensorRT engine precision")
    parser.add_argument("--calibration-cache", type=Path, default=None,
                        help="int8: TensorRT calibration cache to build from (default "
                             "<out>/<model>-int8.calib; the tensorrt backend writes one to "
                             "<cache>/tensorrt/ when given calibration batches)")


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        print(f"error: --batch must be >= 1, got {args.batch}", file=sys.stderr)
        return 2
    if args.format == "tensorrt":
        from hand_pose_ros.runtime import BackendUnavailableError
        from hand_pose_ros.runtime.tensorrt_backend import check_tensorrt

        try:
            check_tensorrt()  # before the export: fail in one line, at once
        except BackendUnavailableError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    try:
        path, report = export(args.model, args.out, config=args.config, batch=args.batch,
                              dynamic_batch=args.dynamic_batch)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({report['bytes'] / 1e6:.1f} MB, opset {report['opset']}, "
          f"{report['parameters'] / 1e6:.2f} M parameters, weights "
          f"{'embedded' if report['weights_embedded'] else 'in ' + path.name + '.data'})")
    print(f"inputs {report['inputs']}  outputs {report['outputs']}")
    print(f"onnxruntime vs torch: max abs difference {report['onnxruntime_max_abs_diff']:.2e}")
    problems = report["tensorrt_problems"]
    print("TensorRT-friendly: yes" if not problems else
          "TensorRT-friendly: no - " + "; ".join(problems))
    if args.format == "tensorrt":
        from hand_pose_ros.runtime.tensorrt_backend import build_engine, profile_shapes

        (name, dims), = report["inputs"].items()
        shape = (args.batch, *dims[1:])
        profile = (profile_shapes({name: shape}, max_batch=args.batch) if args.dynamic_batch
                   else {name: (shape, shape, shape)})
        try:
            engine = build_engine(path, path.with_name(f"{path.stem}-{args.precision}.engine"),
                                  args.precision, profile,
                                  calibration_cache=(args.calibration_cache or
                                                     path.with_name(f"{path.stem}-int8.calib")))
        except (ValueError, RuntimeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {engine}")
    return 0
