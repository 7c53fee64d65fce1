"""Convert a trained `.keras` model to a full-integer int8 `.tflite` and prove it still works.

Full-integer int8 post-training quantization (TensorFlow Lite, "Post-training integer
quantization", https://ai.google.dev/edge/litert/models/post_training_integer_quant): int8 weights
and activations, int8 input and output tensors, TFLITE_BUILTINS_INT8 only, activation ranges
calibrated on a representative dataset drawn stratified by class from FER2013 Training (never from
PublicTest or PrivateTest).

The int8 model is then run through `device.classifier.EmotionClassifier` on PublicTest and
PrivateTest beside the float model. The command fails (exit 1, nothing written) when int8 loses more
than `--max-drop` points of PublicTest accuracy; PrivateTest is reported, never used to decide.

    python convert/quantize.py --model runs/default/model.keras --data ../shared/datasets/fer2013 \\
        --out device/models/

Exit codes: 0 written; 1 int8 accuracy drop over the threshold, or an op the Edge TPU cannot run;
2 bad input (model, data, output folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python convert/quantize.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from device.config import ClassifierSettings  # noqa: E402
from device.contract import INPUT_SHAPE, LABELS, PREPROCESSING, TTA_MODES, normalize  # noqa: E402
from training import data  # noqa: E402
from training.lineage import read_run, recipe_seconds, run_lineage  # noqa: E402

log = logging.getLogger("quantize")

DEFAULT_NAME = "fer_int8"
DAEMON_TTA = ClassifierSettings.model_fields["tta"].default  # the daemon's default `[classifier] tta`


def representative_dataset(train: data.Split, size: int, seed: int = 0):
    """A generator factory for `TFLiteConverter.representative_dataset`: `size` Training images,
    stratified by class, one `(1, 48, 48, 1) float32` sample at a time."""
    subset = data.stratified_subset(train, max(1, size // len(LABELS)), seed)
    samples = normalize(subset.images)

    def generate():
        for sample in samples:
            yield [sample[np.newaxis]]

    return generate, len(subset)


def convert_int8(model, representative) -> bytes:
    """Full-integer int8 conversion of a Keras model with a static `(1, 48, 48, 1)` input (the Edge TPU
    needs static shapes; `EmotionClassifier` resizes the batch dimension on the CPU)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_model:
        # Keras 3's SavedModel export freezes the variables; a plain tf.function would leave
        # READ_VARIABLE ops that the int8 calibrator cannot run.
        model.export(saved_model, format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec((1, *INPUT_SHAPE), tf.float32, name="face")])
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return converter.convert()


def compare(float_predict, int8_predict, split: data.Split, prior=None) -> dict:
    """Float vs int8 on one split: accuracy and macro-F1 of each, single crop and with each TTA mode
    (`flip_tta_accuracy`, `flip_shift_tta_accuracy`, ...), per-class recall (single crop), and the share of
    images on which their single-crop top-1 predictions agree. With `prior` (`training.evaluate.OutputPrior`),
    the int8 model's figures under each `[classifier] prior` too (`int8.priors`, `prior_figures`)."""
    from training.evaluate import TTA_REPORTS, predict
    from training.metrics import classification_report

    result: dict = {}
    top1 = {}
    for name, predictor in (("float", float_predict), ("int8", int8_predict)):
        result[name] = {}
        for mode, key in TTA_REPORTS.items():
            probabilities = predict(predictor, split.images, tta=mode)
            report = classification_report(split.labels, probabilities)
            prefix = "" if mode == "none" else f"{key}_"
            result[name] |= {f"{prefix}accuracy": report["accuracy"], f"{prefix}macro_f1": report["macro_f1"]}
            if mode == "none":
                top1[name] = probabilities.argmax(axis=1)
                result[name]["per_class_recall"] = {k: v["recall"] for k, v in report["per_class"].items()}
                result[name]["balanced_accuracy"] = report["balanced_accuracy"]
    if prior is not None:
        result["int8"]["priors"] = prior_figures(int8_predict, split, prior)
    result["agreement"] = float(np.mean(top1["float"] == top1["int8"]))
    result["count"] = len(split)
    return result


def prior_figures(int8_predict, split: data.Split, prior) -> dict:
    """`training.balance.prior_figures` of a model on one split, single crop and with the daemon's TTA:
    `{prior: {"single" | "<tta>_tta": {accuracy, balanced_accuracy, macro_f1, per_class_recall,
    per_class_precision}}}`."""
    from training import balance
    from training.evaluate import TTA_REPORTS, predict

    modes = {"none": "single", DAEMON_TTA: TTA_REPORTS[DAEMON_TTA]}
    probabilities = {key: predict(int8_predict, split.images, tta=mode) for mode, key in modes.items()}
    return balance.prior_figures(split.labels, probabilities, prior.frequencies, prior.power)


def prior_fields(prior) -> dict:
    """The model card's prior keys: `train_class_frequencies` (`{label: fraction}` of FER2013 Training),
    `output_prior` ("fer2013": a plainly trained model; "uniform": logit-adjusted with tau 1) and
    `output_prior_power` (the power of the frequencies the outputs carry), read by `device.prior`."""
    from training import balance

    return {"train_class_frequencies": balance.frequency_table(prior.frequencies),
            "output_prior": balance.output_prior_name(prior.power), "output_prior_power": prior.power}


def print_comparison(results: dict) -> None:
    print(f"{'split':<12} {'n':>5}  {'float acc':>9} {'int8 acc':>9} {'drop':>7}  {'float F1':>8} {'int8 F1':>8}"
          f"  {'agree':>6}")
    for split, r in results.items():
        drop = 100 * (r["float"]["accuracy"] - r["int8"]["accuracy"])
        print(f"{split:<12} {r['count']:>5}  {r['float']['accuracy']:>9.2%} {r['int8']['accuracy']:>9.2%}"
              f" {drop:>+6.2f}p  {r['float']['macro_f1']:>8.4f} {r['int8']['macro_f1']:>8.4f}  {r['agreement']:>6.1%}")


def build_card(*, classifier, tflite_path: Path, keras_path: Path, results: dict, calibration: dict,
               edgetpu: dict, limit: int | None, latency: dict, prior) -> dict:
    """The model card: every figure in it comes from this conversion's own measurements."""
    import tensorflow as tf

    blob = tflite_path.read_bytes()
    config, metrics = read_run(keras_path.parent)
    stages = run_lineage(keras_path)  # a warm-restarted run names the run it started from
    teacher = distilled_from(config)
    in_scale, in_zero = classifier.input_quantization
    out_scale, out_zero = classifier.output_quantization
    return {
        "name": tflite_path.stem,
        "labels": list(LABELS),
        "input": {"shape": [1, *INPUT_SHAPE], "dtype": str(classifier.input_dtype), "scale": in_scale,
                  "zero_point": in_zero},
        "output": {"shape": [1, len(LABELS)], "dtype": str(classifier.output_dtype), "scale": out_scale,
                   "zero_point": out_zero, "meaning": "softmax probabilities"},
        **prior_fields(prior),
        "preprocessing": PREPROCESSING,
        "quantization": "full-integer int8 post-training quantization (TFLITE_BUILTINS_INT8)",
        "calibration": calibration,
        "evaluation": {"dataset": "FER2013", "protocol": "trained on Training, epoch chosen on PublicTest, "
                       "PrivateTest reported", "limit_per_split": limit, "splits": results},
        "edgetpu": edgetpu,
        "latency_ms_per_face": latency,
        "daemon_tta": DAEMON_TTA,
        "file_size_bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "training_run": {
            "keras_model": str(keras_path),
            "config": config or None,
            # each run's best epoch and wall clock are in `stages`: stated once, summed over resumed sessions
            "hardware": metrics.get("hardware") or config.get("hardware"),
            "stages": stages,
            **({"teacher": teacher} if teacher else {}),
            "recipe_train_seconds": recipe_seconds(stages, teacher),
        },
        "converter": {"tensorflow": tf.__version__, "command": " ".join(["python", *sys.argv])},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def distilled_from(config: dict) -> dict | None:
    """The teacher a distilled run learnt from: `{"file": path, **training.distill.teacher_summary(path)}`, or
    None for a run without one. A teacher file gone or unreadable is logged and the card holds only its path
    (and no recipe wall clock), not a failed conversion."""
    if not config.get("teacher"):
        return None
    from training.distill import teacher_summary

    try:
        summary = teacher_summary(config["teacher"])
    except ValueError as err:
        log.warning("%s", err)
        summary = None
    if summary is None:
        log.warning("%s: the run's teacher file is absent or has no summary; the card names only its path",
                    config["teacher"])
    return {"file": config["teacher"], **(summary or {})}


def _check_writable(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_dir):
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained .keras model (RUN_DIR/model.keras)")
    parser.add_argument("--data", default=None, help="FER2013 folder or fer2013.csv (default: $FER2013_DIR "
                        "or ../shared/datasets/fer2013)")
    parser.add_argument("--out", default="device/models", help="output folder (default: device/models)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="file stem: NAME.tflite and NAME.json")
    parser.add_argument("--calibration-size", type=int, default=700,
                        help="representative dataset size, stratified by class from Training (default 700)")
    parser.add_argument("--max-drop", type=float, default=1.0,
                        help="largest allowed PublicTest accuracy loss of int8 vs float, in points (default 1.0)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on a stratified subset of about N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-bad", action="store_true", help="skip (and log) unreadable images")
    return parser.parse_args(argv)


def load_inputs(args: argparse.Namespace):
    """The float model, the FER2013 root, Training and the evaluation splits (limited by `--limit`).

    Raises:
        OSError, ValueError: a missing model, unreadable data or an output folder that cannot be written.
    """
    from training.evaluate import load_keras_model

    keras_path = Path(args.model)
    if not keras_path.is_file():
        raise FileNotFoundError(f"{keras_path}: model file not found")
    model = load_keras_model(keras_path)
    root = Path(args.data) if args.data else data.default_root()
    train = data.load(root, "Training", skip_bad=args.skip_bad)
    splits = {s: data.limit(data.load(root, s, skip_bad=args.skip_bad), args.limit, args.seed)
              for s in ("PublicTest", "PrivateTest")}
    _check_writable(Path(args.out))
    return model, root, train, splits


def measure_latency(tflite_path: Path, face: np.ndarray) -> dict:
    """Per-face latency of one view and of each TTA mode, ms (`device.machine.classifier_latency`), with the
    machine it was measured on; `face` is `(1, 48, 48, 1) uint8`."""
    from device.machine import classifier_latency, machine

    return {**classifier_latency(tflite_path, face), "machine": machine(),
            "measured_by": "device.machine.classifier_latency (convert/quantize.py)",
            "with_tta": {mode: classifier_latency(tflite_path, face, tta=mode) for mode in TTA_MODES if mode != "none"}}


def int8_drop_points(results: dict) -> float:
    """PublicTest accuracy float minus int8, in points."""
    return 100 * (results["PublicTest"]["float"]["accuracy"] - results["PublicTest"]["int8"]["accuracy"])


def write_card(card: dict, card_path: Path) -> None:
    """Write the model card JSON atomically (beside it, then renamed): a crash never leaves half a card."""
    tmp_card = card_path.with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(card, indent=2) + "\n")
    tmp_card.replace(card_path)


def compile_for_edgetpu(final: Path, out_dir: Path) -> int:
    """Run edgetpu_compiler where it is installed, else print the command; exit code 0, or 1 if it failed."""
    from convert import edgetpu

    try:
        compiled = edgetpu.compile_model(final, out_dir)
    except RuntimeError as err:
        log.error("%s", err)
        return 1
    if compiled:
        print(f"wrote {compiled}")
    else:
        print("edgetpu_compiler is not on PATH; on a machine with it (x86-64 Debian/Ubuntu, Coral's apt "
              f"repository), run:\n  {' '.join(edgetpu.compile_command(final, out_dir))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from convert import edgetpu
    from device.classifier import EmotionClassifier, ModelError
    from training.evaluate import keras_predictor, output_prior

    keras_path, out_dir = Path(args.model), Path(args.out)
    try:
        model, root, train, splits = load_inputs(args)
    except (OSError, ValueError) as err:
        log.error("%s", err)
        return 2

    representative, calibration_count = representative_dataset(train, args.calibration_size, args.seed)
    log.info("converting %s to full-integer int8, calibrating on %d Training images", keras_path, calibration_count)
    blob = convert_int8(model, representative)
    final = out_dir / f"{args.name}.tflite"
    tmp = out_dir / f".{args.name}.{os.getpid()}.tflite.tmp"
    try:
        tmp.write_bytes(blob)
        classifier = EmotionClassifier(tmp, num_threads=os.cpu_count())
        prior = output_prior(keras_path, root)  # the run's logit adjustment, frequencies counted on Training
        results = {name: compare(keras_predictor(model), classifier.predict, split, prior)
                   for name, split in splits.items()}
        print_comparison(results)
        report = edgetpu.check_model(tmp)
        print(f"ops: {', '.join(f'{k} x{v}' for k, v in report.ops.items())}")
        print("Edge TPU op check: " + ("passed" if report.compatible else "FAILED: " + "; ".join(report.problems)))
        if (drop := int8_drop_points(results)) > args.max_drop:
            log.error("int8 loses %.2f points of PublicTest accuracy (allowed %.2f); nothing written", drop,
                      args.max_drop)
            return 1
        if not report.compatible:
            log.error("the model has ops or tensors the Edge TPU cannot run; nothing written")
            return 1
        # Measured on the new file before it replaces the old one (whose card would not match it).
        latency = measure_latency(tmp, splits["PublicTest"].images[:1])
        tmp.replace(final)
    except (OSError, ModelError) as err:
        log.error("%s", err)
        return 2
    finally:
        tmp.unlink(missing_ok=True)

    calibration = {"source": "FER2013 Training, stratified by class", "size": calibration_count, "seed": args.seed}
    card = build_card(classifier=classifier, tflite_path=final, keras_path=keras_path, results=results,
                      calibration=calibration, edgetpu=report.as_dict(), limit=args.limit, latency=latency,
                      prior=prior)
    card_path = out_dir / f"{args.name}.json"
    write_card(card, card_path)
    print(f"wrote {final} ({card['file_size_bytes']} bytes, {latency['median_ms']:.3f} ms per face, 1 thread, "
          f"{latency['with_tta'][DAEMON_TTA]['median_ms']:.3f} ms with the daemon's {DAEMON_TTA} TTA) "
          f"and {card_path}")
    return compile_for_edgetpu(final, out_dir)


if __name__ == "__main__":
    sys.exit(main())
