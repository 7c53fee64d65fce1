"""Recover a float Keras model from a full-integer int8 `.tflite` of this project's CNN.

The TFLite converter folds each BatchNormalization into the convolution before it and quantizes the
weights (int8, per output channel) and biases (int32, scale = input scale x weight scale): TensorFlow Lite,
"Quantization specification", https://ai.google.dev/edge/litert/models/quantization_spec. This tool inverts
what can be inverted: it dequantizes every weight (`scale * (q - zero_point)`) into the architecture of
`training/model.py` and unfolds each bias into a BatchNormalization whose moving statistics are measured on
FER2013 Training (never PublicTest or PrivateTest), so that

- at inference the recovered model computes the folded network exactly (`gamma / sqrt(var + eps) = 1`,
  `beta - mean = bias`), and
- in training mode, where BatchNormalization uses each batch's statistics, it computes nearly the same,
  which is what makes it a usable start for a warm restart (`init_from` in `training/train.py`).

Beside the model (`RUN_DIR/model.keras`) it writes `RUN_DIR/config.json` and `metrics.json` as a training run
does, its `lineage` the stages of the int8 model's card (`training_run.stages`), so a run started from the
recovered model (`init_from`) states in its card the whole chain: the run that trained the weights, this
recovery (0 epochs), and itself (`training/lineage.py`).

What cannot be recovered is lost: the activations' int8 rounding (the recovered float model is slightly
different from the int8 one; both are measured on PublicTest) and the optimizer state.

    python convert/dequantize.py --model device/models/fer_int8.tflite --out docs/default-run/model.keras

Exit codes: 0 written; 2 bad input (model, data, output path), nothing written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python convert/dequantize.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from device.contract import INPUT_SHAPE  # noqa: E402
from device.exit_codes import EXIT_CONFIG, EXIT_OK  # noqa: E402
from training import data  # noqa: E402

log = logging.getLogger("dequantize")
BN_EPSILON = 1e-3  # keras.layers.BatchNormalization's default epsilon
CALIBRATION_PER_CLASS = 400  # Training faces per class for the moving statistics (2,800 in all)


def dequantized(interpreter, detail: dict) -> np.ndarray:
    """The constant tensor of `detail` (an entry of `get_tensor_details()`) as float32: `scale * (q - zero_point)`,
    per channel where the tensor is quantized per channel (its `quantized_dimension`)."""
    values = interpreter.get_tensor(detail["index"]).astype(np.float32)
    quantization = detail["quantization_parameters"]
    scales, zero_points = quantization["scales"], quantization["zero_points"]
    if scales.size == 0:  # a float tensor
        return values
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[quantization["quantized_dimension"]] = scales.size
    return scales.reshape(shape).astype(np.float32) * (values - zero_points.reshape(shape).astype(np.float32))


Folded = tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]


def folded_layers(model_path: Path) -> Folded:
    """The int8 model's weights, dequantized: `[(kernel (3, 3, in, out), bias (out,)) per CONV_2D]` in graph
    order, and the FULLY_CONNECTED `(kernel (in, 7), bias (7,))`, in Keras layouts.

    Raises:
        ValueError: the model is not this project's CNN (no convolutions, or not one fully connected layer).
        device.classifier.ModelError: the file is not a loadable `.tflite` (names it).
    """
    from device.classifier import ModelError, make_interpreter

    try:
        interpreter = make_interpreter(model_path)
    except (ValueError, RuntimeError) as err:  # as convert/edgetpu.py's check_model
        raise ModelError(f"{model_path}: not a usable TFLite model: {err}") from None
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    convs, dense = [], []
    for op in interpreter._get_ops_details():  # noqa: SLF001 - LiteRT's only op listing, in execution order
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        kernel, bias = (dequantized(interpreter, tensors[int(i)]) for i in op["inputs"][1:3])
        if op["op_name"] == "CONV_2D":  # TFLite filter layout (out, h, w, in) -> Keras (h, w, in, out)
            convs.append((kernel.transpose(1, 2, 3, 0), bias))
        else:  # (out, in) -> (in, out)
            dense.append((kernel.T, bias))
    if not convs or len(dense) != 1:
        raise ValueError(f"{model_path}: not this project's CNN ({len(convs)} CONV_2D, {len(dense)} FULLY_CONNECTED)")
    return convs, dense[0]


def recovered_model(folded: Folded, calibration: np.ndarray, crop: int, convs_per_block: int = 2,
                    dropout: float = 0.4):
    """The deployable float model (`training.model.centre_cropped` of `build_model`) recovered from an int8
    model's `folded_layers`, its BatchNormalization statistics measured on `calibration` `(N, 48, 48, 1) uint8`
    faces.

    Raises:
        ValueError: the weights do not fit the architecture.
    """
    import keras

    from training.batchnorm import recalibrate
    from training.model import build_model, centre_cropped

    convs, (dense_kernel, dense_bias) = folded
    widths = tuple(kernel.shape[-1] for kernel, _ in convs[::convs_per_block])
    classifier = build_model(widths, convs_per_block, dropout, input_size=None)
    conv_layers = [layer for layer in classifier.layers if isinstance(layer, keras.layers.Conv2D)]
    bn_layers = [layer for layer in classifier.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if [layer.kernel.shape for layer in conv_layers] != [kernel.shape for kernel, _ in convs]:
        raise ValueError(f"convolutions do not fit widths {widths} x {convs_per_block}")
    for layer, (kernel, _) in zip(conv_layers, convs, strict=True):
        layer.set_weights([kernel])
    classifier.get_layer("logits").set_weights([dense_kernel, dense_bias])
    deployable = centre_cropped(classifier, crop)

    # Each BatchNormalization is set to pass its convolution's output through unchanged (plus the bias),
    # one after the other, so that the next one's statistics are measured on the folded network's values.
    biases = {bn.name: bias for bn, (_, bias) in zip(bn_layers, convs, strict=True)}

    def unfold(bn, mean: np.ndarray, var: np.ndarray) -> None:
        bn.set_weights([np.sqrt(var + BN_EPSILON), mean + biases[bn.name], mean, var])

    recalibrate(classifier, calibration, crop, assign=unfold)
    return deployable


def write_record(out: Path, model_path: Path, command: str) -> None:
    """`out.parent/config.json` and `metrics.json`: the recovery as a stage of 0 epochs, whose `lineage` is the
    int8 model's card's `training_run.stages` (none where the model has no card)."""
    from device.classifier import load_card

    card = load_card(model_path) or {}
    stages = (card.get("training_run") or {}).get("stages") or []
    config = {"command": command, "init_from": None, "recovered_from": str(model_path), "lineage": stages,
              "epochs": 0}
    (out.parent / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out.parent / "metrics.json").write_text(json.dumps({"epochs": 0, "best_epoch": None, "train_seconds": 0.0},
                                                        indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="device/models/fer_int8.tflite", help="the int8 .tflite")
    parser.add_argument("--out", required=True, help="the .keras to write")
    parser.add_argument("--crop", type=int, default=40, help="the training crop in px (the card's training "
                        "run config `crop`; 48: none)")
    parser.add_argument("--data", default=None, help="FER2013 folder or fer2013.csv (default: $FER2013_DIR or "
                        "../shared/datasets/fer2013)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from device.classifier import ModelError, load_card
    from training.evaluate import load_predictor, predict

    out = Path(args.out)
    if out.suffix != ".keras":
        log.error("--out %s: must end in .keras", out)
        return EXIT_CONFIG
    if not 0 < args.crop <= INPUT_SHAPE[0]:
        log.error("--crop %d: must be 1-%d px", args.crop, INPUT_SHAPE[0])
        return EXIT_CONFIG
    try:  # a bad model or card fails before FER2013 is read
        load_card(args.model)
        folded = folded_layers(Path(args.model))
        root = Path(args.data) if args.data else data.default_root()
        train = data.stratified_subset(data.load(root, "Training"), CALIBRATION_PER_CLASS, seed=0)
        public = data.load(root, "PublicTest")
        model = recovered_model(folded, train.images, args.crop)
    except (OSError, ValueError, ModelError) as err:
        log.error("%s", err)
        return EXIT_CONFIG
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    write_record(out, Path(args.model), " ".join(["python", "convert/dequantize.py", *sys.argv[1:]]))
    for path in (Path(args.model), out):
        accuracy = np.mean(predict(load_predictor(path), public.images).argmax(axis=1) == public.labels)
        print(f"{path}: PublicTest {accuracy:.2%} (single crop)")
    print(f"wrote {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
