"""Evaluate a `.keras` or `.tflite` FER model on PublicTest, PrivateTest or any labelled folder.

Reports accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix, single crop
and with horizontal-flip test-time augmentation (mean of the probabilities of the face and its
mirror image). A `.tflite` runs through `device.classifier.EmotionClassifier`, the daemon's code.

    python training/evaluate.py --model device/models/fer_int8.tflite --out runs/eval
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/evaluate.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from device.contract import LABELS, normalize  # noqa: E402
from training import data  # noqa: E402
from training.metrics import classification_report  # noqa: E402

log = logging.getLogger("evaluate")

Predictor = Callable[[np.ndarray], np.ndarray]
DEFAULT_SPLITS = ("PublicTest", "PrivateTest")


def load_predictor(model_path: str | Path, num_threads: int | None = None) -> Predictor:
    """A function `(N, 48, 48, 1) uint8 -> (N, 7) float32` probabilities for a `.keras` or `.tflite` file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: neither `.keras` nor `.tflite`, or a `.keras` file Keras cannot load.
        device.classifier.ModelError: a `.tflite` file LiteRT cannot load.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.suffix == ".tflite":
        from device.classifier import EmotionClassifier

        return EmotionClassifier(path, num_threads=num_threads).predict
    if path.suffix == ".keras":
        return keras_predictor(load_keras_model(path))
    raise ValueError(f"{path}: expected a .keras or .tflite model")


def keras_predictor(model) -> Predictor:
    """`(N, 48, 48, 1) uint8 -> (N, 7) float32` for a loaded Keras model, normalised by the contract."""
    return lambda images: np.asarray(model.predict(normalize(images), batch_size=256, verbose=0))


def load_keras_model(path: str | Path):
    """Load a `.keras` file (inference only), with a clear error naming the file when it is unusable."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile errors... for a bad file
        raise ValueError(f"{path}: not a loadable .keras model: {err}") from None


def predict(predictor: Predictor, images: np.ndarray, flip_tta: bool = False, batch: int = 512) -> np.ndarray:
    """Probabilities `(N, 7) float32` for `(N, 48, 48, 1) uint8` images, in batches of `batch`.

    With `flip_tta`, the mean of the probabilities of each image and its horizontal mirror.
    """
    chunks = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        probs = predictor(chunk)
        if flip_tta:
            probs = (probs + predictor(np.ascontiguousarray(chunk[:, :, ::-1]))) / 2.0
        chunks.append(np.asarray(probs, dtype=np.float32))
    return np.concatenate(chunks) if chunks else np.zeros((0, len(LABELS)), np.float32)


def evaluate_split(predictor: Predictor, split: data.Split) -> dict:
    """`{"single": report, "flip_tta": report}` for one split (see `training.metrics`)."""
    return {
        "single": classification_report(split.labels, predict(predictor, split.images)),
        "flip_tta": classification_report(split.labels, predict(predictor, split.images, flip_tta=True)),
    }


def load_folder(folder: str | Path, skip_bad: bool = False) -> data.Split:
    """Any labelled folder in the Kaggle layout: `<folder>/<class>/*.jpg|*.png`, 48x48 grayscale.

    Raises:
        training.data.DatasetError: missing class folders or unreadable images, naming the file.
    """
    folder = Path(folder)
    files = []
    for label, name in enumerate(LABELS):
        class_dir = folder / name
        if not class_dir.is_dir():
            raise data.DatasetError(f"{class_dir}: missing class folder for {name!r}")
        files += [(p, label) for p in sorted(class_dir.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return data.decode_files(files, skip_bad=skip_bad)


def write_report(results: dict, out_dir: str | Path, name: str = "evaluation") -> Path:
    """Write `<name>.json` and one confusion-matrix PNG per split (single crop) into `out_dir`."""
    from training.report import plot_confusion_matrix

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, result in results["splits"].items():
        plot_confusion_matrix(result["single"]["confusion_matrix"], out / f"confusion_matrix_{split}.png",
                              f"{Path(results['model']).name} on {split} (single crop)")
    path = out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def summary_line(split: str, result: dict) -> str:
    single, tta = result["single"], result["flip_tta"]
    return (f"{split:<12} n={single['count']:<5} accuracy {single['accuracy']:.2%}  macro-F1 {single['macro_f1']:.4f}"
            f"  | flip TTA accuracy {tta['accuracy']:.2%}  macro-F1 {tta['macro_f1']:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=".keras or .tflite model")
    parser.add_argument("--data", default=None, help="FER2013 folder or fer2013.csv (default: $FER2013_DIR "
                        "or ../shared/datasets/fer2013)")
    parser.add_argument("--split", nargs="*", default=list(DEFAULT_SPLITS), choices=data.SPLITS,
                        help="FER2013 splits to evaluate (default: PublicTest PrivateTest)")
    parser.add_argument("--folder", nargs="*", default=[], help="extra labelled folders <dir>/<class>/*.jpg")
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of about N images per split")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads for .tflite")
    parser.add_argument("--skip-bad", action="store_true", help="skip (and log) unreadable images")
    parser.add_argument("--out", default=None, help="folder for evaluation.json and PNGs (default: beside the model)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        predictor = load_predictor(args.model, num_threads=args.threads)
        root = Path(args.data) if args.data else data.default_root()
        sets = {s: data.limit(data.load(root, s, skip_bad=args.skip_bad), args.limit) for s in args.split}
        sets.update({str(f): data.limit(load_folder(f, args.skip_bad), args.limit) for f in args.folder})
    except (OSError, ValueError, RuntimeError) as err:
        log.error("%s", err)
        return 2
    results = {"model": str(args.model), "limit": args.limit,
               "splits": {name: evaluate_split(predictor, split) for name, split in sets.items()}}
    for name, result in results["splits"].items():
        print(summary_line(name, result))
    out = write_report(results, args.out or Path(args.model).parent)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
