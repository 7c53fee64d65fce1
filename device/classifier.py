"""`EmotionClassifier`: runs a (full-integer int8) FER TFLite model on face crops with LiteRT.

This one class is what the daemon, `training/evaluate.py` and `convert/quantize.py` use to run a
`.tflite` model, so every figure we publish for a `.tflite` is measured through the code that runs
on the device. It never imports TensorFlow: the interpreter comes from `ai_edge_litert` (LiteRT,
the maintained successor of tflite-runtime) or else `tflite_runtime`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from device.contract import (
    INPUT_SHAPE,
    LABELS,
    NUM_CLASSES,
    as_model_batch,
    average_views,
    check_tta_mode,
    normalize,
    tta_views,
)
from device.native_log import stderr_to_log
from device.prior import card_frequencies, card_output_power, prior_power

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"  # Coral's runtime (https://coral.ai/docs/edgetpu/tflite-python/)


class ModelError(RuntimeError):
    """The model file, its card or its interpreter/delegate cannot be used; the message names the file."""


def _interpreter_module():
    """The LiteRT interpreter module: `ai_edge_litert.interpreter`, else `tflite_runtime.interpreter`."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter
        except ImportError:
            raise ModelError(
                "no TFLite interpreter: install ai-edge-litert (pip install ai-edge-litert) "
                "or tflite-runtime"
            ) from None
    return interpreter


def load_delegate(library: str):
    """A TFLite delegate from a shared library (e.g. `libedgetpu.so.1`).

    Raises:
        ModelError: no interpreter installed. OSError/ValueError from LiteRT: the library cannot be loaded.
    """
    return _interpreter_module().load_delegate(library)


def make_interpreter(model_path: str | Path, num_threads: int | None = None, delegates: list | None = None,
                     allocate: bool = True):
    """A LiteRT (or tflite-runtime) `Interpreter` for `model_path`, its tensors allocated.

    The one place that creates interpreters: the daemon, `convert/` and `benchmarks/` all come here. The
    TFLite C++ runtime writes lines such as `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` straight
    to file descriptor 2, outside any log format; they are captured here and go through `logging` instead
    (INFO lines at DEBUG, anything else at WARNING).

    Args:
        model_path: the `.tflite` file.
        num_threads: CPU threads (None: the runtime's default).
        delegates: loaded delegates (`load_delegate`), e.g. the Edge TPU's.
        allocate: allocate the tensors, which also applies the default XNNPACK delegate (False keeps the
            model's own ops visible, for the Edge TPU op check).

    Raises:
        ModelError: no interpreter is installed.
        ValueError/RuntimeError (from LiteRT): the file is not a usable TFLite model.
    """
    module = _interpreter_module()
    with stderr_to_log(log, "tflite"):  # the XNNPACK line comes from allocate_tensors, where default delegates apply
        interpreter = module.Interpreter(model_path=str(model_path), num_threads=num_threads,
                                         experimental_delegates=delegates or None)
        if allocate:
            interpreter.allocate_tensors()
    return interpreter


def card_path_for(model_path: str | Path) -> Path:
    """The model card beside a model: `x.tflite` and `x_edgetpu.tflite` both use `x.json`."""
    model_path = Path(model_path)
    stem = model_path.stem.removesuffix("_edgetpu")
    return model_path.with_name(stem + ".json")


def load_card(model_path: str | Path) -> dict | None:
    """Read the JSON model card beside `model_path`, or None where there is none.

    Raises:
        ModelError: if the card exists but is not valid JSON, its labels disagree with the contract, or
            its sha256 is not the model file's.
    """
    path = card_path_for(model_path)
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: unreadable model card: {err}") from None
    labels = card.get("labels")
    if labels is not None and tuple(labels) != LABELS:
        raise ModelError(f"{path}: labels {labels} differ from the model contract's {list(LABELS)}")
    model_path = Path(model_path)
    # The card describes the CPU model; an *_edgetpu.tflite compiled from it has other bytes.
    if "sha256" in card and not model_path.stem.endswith("_edgetpu"):
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
        if digest != card["sha256"]:
            raise ModelError(f"{path}: describes another model (sha256 {card['sha256'][:12]}..., "
                             f"{model_path.name} has {digest[:12]}...); convert again or remove the stale card")
    return card


def restrict_to_labels(probabilities: np.ndarray, labels: tuple[str, ...] | list[str]) -> np.ndarray:
    """The seven probabilities renormalised over a subset of the labels (the others set to 0).

    `p'_k = p_k / sum_{j in labels} p_j` for k in `labels`, else 0: the model's distribution conditioned on
    the face showing one of the chosen emotions. A row whose chosen probabilities are all 0 becomes uniform
    over `labels`.

    Args:
        probabilities: `(N, 7)` float32 in the contract's label order.
        labels: the chosen labels, a subset of `device.contract.LABELS`.

    Returns:
        `(N, 7)` float32, each row summing to 1 over `labels`.

    Raises:
        ValueError: a label that is not one of the seven.
    """
    unknown = set(labels) - set(LABELS)
    if unknown:
        raise ValueError(f"unknown label(s) {sorted(unknown)}; allowed: {', '.join(LABELS)}")
    mask = np.array([label in labels for label in LABELS], dtype=np.float32)
    kept = np.asarray(probabilities, dtype=np.float32) * mask
    total = kept.sum(axis=1, keepdims=True)
    uniform = np.broadcast_to(mask / mask.sum(), kept.shape)
    return np.where(total > 0, kept / np.where(total > 0, total, 1), uniform).astype(np.float32)


class EmotionClassifier:
    """Classify `(N, 48, 48)` uint8 face crops into FER2013's seven emotions with a TFLite model.

    The input is quantised and the output dequantised with the model's own scale and zero point
    (TFLite quantisation spec: real = scale * (q - zero_point)), so int8, uint8 and float models all
    work. Batches run as one invocation after resizing the input tensor (per-face cost against a loop:
    `benchmarks/run.py`, table "per-face latency" in benchmarks/results/report.md), except on the Edge
    TPU, which needs static shapes and runs one face per invocation.

    Args:
        model_path: the `.tflite` file. `*_edgetpu.tflite` loads the Edge TPU delegate.
        num_threads: CPU threads for the interpreter (None: LiteRT's default).
        use_edgetpu: force (True) or forbid (False) the Edge TPU delegate; None decides by file name.
        labels: publish only these labels (`[classifier] labels`): `predict` renormalises the seven
            probabilities over them (`restrict_to_labels`); None or all seven leaves them as they are.
        tta: test-time augmentation, one of `device.contract.TTA_MODES`: "none" (one view), "flip" (the
            face and its mirror, 2x the per-face cost) or "flip-shift" (10 views, 10x); `predict` returns
            the mean of the views' probabilities. Accuracy and per-face cost of each: the model card.
        prior: the class prior of the returned probabilities (`[classifier] prior`, `device.prior`):
            "fer2013" (FER2013 Training's class frequencies, as a plainly trained model learns them) or
            "uniform" (divided by those frequencies and renormalised, Bayes' rule), or None: as the model
            outputs them (the default; the daemon passes `[classifier] prior`). Converted from the prior the
            card says the model's outputs carry (`output_prior`), never twice; applied before the label
            subset. Needs the card's `train_class_frequencies` when the two differ.

    Raises:
        ModelError: missing or corrupt model, unexpected input/output shape, no interpreter
            installed, the Edge TPU delegate (`libedgetpu.so.1`) missing, or a prior change asked of a
            model whose card has no class frequencies.
        ValueError: an unknown `tta` mode or prior.
    """

    def __init__(self, model_path: str | Path, num_threads: int | None = None,
                 use_edgetpu: bool | None = None, labels: tuple[str, ...] | list[str] | None = None,
                 tta: str = "none", prior: str | None = None) -> None:
        self.tta = check_tta_mode(tta)
        self.prior = prior
        target_power = None if prior is None else prior_power(prior)
        self.model_path = Path(model_path)
        self.active_labels: tuple[str, ...] = tuple(label for label in LABELS if labels is None or label in labels)
        if not self.model_path.is_file():
            raise ModelError(f"{self.model_path}: model file not found")
        if use_edgetpu is None:
            use_edgetpu = self.model_path.stem.endswith("_edgetpu")
        self.uses_edgetpu = use_edgetpu
        delegates = []
        if use_edgetpu:
            try:
                delegates.append(load_delegate(EDGETPU_LIBRARY))
            except (OSError, ValueError) as err:
                raise ModelError(
                    f"{self.model_path}: Edge TPU delegate {EDGETPU_LIBRARY} could not be loaded ({err}); "
                    "install libedgetpu1-std from Coral's apt repository or use the CPU model"
                ) from None
        try:
            self._interpreter = make_interpreter(self.model_path, num_threads=num_threads, delegates=delegates)
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"{self.model_path}: not a usable TFLite model: {err}") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        if tuple(self._input["shape"][1:]) != INPUT_SHAPE:
            raise ModelError(f"{self.model_path}: input shape {self._input['shape'].tolist()}, "
                             f"expected (N, {', '.join(map(str, INPUT_SHAPE))})")
        if self._output["shape"][-1] != NUM_CLASSES:
            raise ModelError(f"{self.model_path}: output shape {self._output['shape'].tolist()}, "
                             f"expected (N, {NUM_CLASSES})")
        self.card = load_card(self.model_path)
        self.labels: tuple[str, ...] = tuple(self.card["labels"]) if self.card else LABELS
        self._batch = int(self._input["shape"][0])
        self._prior_factor = self._prior_factor_for(target_power)

    def _prior_factor_for(self, target_power: float | None) -> np.ndarray | None:
        """`(7,) float32` multipliers moving the model's output prior to `target_power`, or None (no change)."""
        try:
            source_power = card_output_power(self.card)
            if target_power is None or source_power == target_power:
                return None
            frequencies = card_frequencies(self.card or {})
        except ValueError as err:
            raise ModelError(f"{card_path_for(self.model_path)}: prior {self.prior!r} asked: {err}") from None
        return (frequencies ** (target_power - source_power)).astype(np.float32)

    @property
    def input_quantization(self) -> tuple[float, int]:
        """`(scale, zero_point)` of the input tensor; `(0.0, 0)` for a float input."""
        scale, zero_point = self._input["quantization"]
        return float(scale), int(zero_point)

    @property
    def output_quantization(self) -> tuple[float, int]:
        """`(scale, zero_point)` of the output tensor; `(0.0, 0)` for a float output."""
        scale, zero_point = self._output["quantization"]
        return float(scale), int(zero_point)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self._output["dtype"])

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of face crops.

        Args:
            faces: `(N, 48, 48)` or `(N, 48, 48, 1)` uint8 crops made by `device.contract.crop_face`.

        Returns:
            `(N, 7)` float32 probabilities in the order of `self.labels` (FER2013's), the mean over the
            `tta` views, under `prior`; with `labels` chosen, renormalised over `self.active_labels` (0 for
            the others).

        Raises:
            ValueError: on a wrong shape or dtype.
        """
        batch = as_model_batch(faces)
        if len(batch) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        tensor = self._quantize(normalize(tta_views(batch, self.tta)))  # all views in one invocation
        if self.uses_edgetpu:
            probabilities = np.concatenate([self._invoke(tensor[i : i + 1]) for i in range(len(tensor))])
        else:
            probabilities = self._invoke(tensor)
        probabilities = average_views(probabilities, len(batch))
        if self._prior_factor is not None:  # Bayes' rule for the changed prior, before the label subset
            moved = probabilities * self._prior_factor
            probabilities = moved / np.maximum(moved.sum(axis=1, keepdims=True), np.float32(1e-12))
        if len(self.active_labels) < NUM_CLASSES:
            return restrict_to_labels(probabilities, self.active_labels)
        return probabilities

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input_dtype
        if dtype == np.float32:
            return x
        scale, zero_point = self.input_quantization
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    def _invoke(self, tensor: np.ndarray) -> np.ndarray:
        if len(tensor) != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [len(tensor), *INPUT_SHAPE])
            self._interpreter.allocate_tensors()
            self._batch = len(tensor)
        self._interpreter.set_tensor(self._input["index"], tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output["index"])
        if self.output_dtype == np.float32:
            return raw.astype(np.float32, copy=True)
        scale, zero_point = self.output_quantization
        return (scale * (raw.astype(np.float32) - zero_point)).astype(np.float32)
