"""Edge TPU readiness of a `.tflite` model: op check against the Edge TPU's supported set, and the compiler.

Supported operations are those listed by Coral, "TensorFlow models on the Edge TPU",
https://coral.ai/docs/edgetpu/models-intro/#supported-operations (TFLite builtin op names). The
Edge TPU also needs full-integer (int8/uint8) tensors (int32 only for biases) and static shapes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH",
    "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})
COMPILER = "edgetpu_compiler"


@dataclass
class EdgeTpuReport:
    """What the op check found: `ops` (op name -> count) and the `problems` that block the Edge TPU."""

    ops: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"ops": self.ops, "compatible": self.compatible, "problems": self.problems}


def check_model(model_path: str | Path) -> EdgeTpuReport:
    """List the ops and tensor types of a `.tflite` model and check them against the Edge TPU's needs.

    Raises:
        device.classifier.ModelError: the file cannot be loaded by LiteRT.
    """
    from device.classifier import ModelError, make_interpreter

    try:
        interpreter = make_interpreter(model_path, allocate=False)  # before XNNPACK replaces the ops
    except (ValueError, RuntimeError) as err:
        raise ModelError(f"{model_path}: not a usable TFLite model: {err}") from None
    ops: dict[str, int] = {}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - LiteRT's only op listing
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    problems = [f"op {name} is not supported by the Edge TPU" for name in sorted(ops) if name not in EDGETPU_OPS]
    for tensor in interpreter.get_tensor_details():
        dtype = np.dtype(tensor["dtype"])
        if dtype not in (np.int8, np.uint8, np.int32):
            problems.append(f"tensor {tensor['name']!r} is {dtype}, not int8")
    for tensor in interpreter.get_input_details() + interpreter.get_output_details():
        if -1 in tensor["shape_signature"].tolist():
            problems.append(f"tensor {tensor['name']!r} has a dynamic shape {tensor['shape_signature'].tolist()}")
    return EdgeTpuReport(ops=dict(sorted(ops.items())), problems=problems)


def compile_command(model_path: str | Path, out_dir: str | Path) -> list[str]:
    """The `edgetpu_compiler` command that writes `<stem>_edgetpu.tflite` into `out_dir`."""
    return [COMPILER, "--out_dir", str(out_dir), str(model_path)]


def compile_model(model_path: str | Path, out_dir: str | Path) -> Path | None:
    """Run `edgetpu_compiler` where it is on PATH; return the `_edgetpu.tflite` path, or None without it.

    Raises:
        RuntimeError: the compiler ran and failed (its output is in the message).
    """
    if shutil.which(COMPILER) is None:
        return None
    result = subprocess.run(compile_command(model_path, out_dir), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{COMPILER} failed on {model_path}:\n{result.stdout}{result.stderr}")
    return Path(out_dir) / f"{Path(model_path).stem}_edgetpu.tflite"
