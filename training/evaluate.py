"""Evaluate a `.keras` or `.tflite` FER model on PublicTest, PrivateTest or any labelled folder.

Reports accuracy, macro-F1, balanced accuracy, per-class precision/recall/F1 and the confusion matrix, and
the same under each `[classifier] prior` ("fer2013" as trained, "uniform": Bayes' rule with the FER2013
Training class frequencies; `device/prior.py`, `training/balance.py`), single crop and
with each test-time augmentation the daemon offers (`[classifier] tta`: "flip", the mean of the
probabilities of the face and its mirror image; "flip-shift", ten views), built by the same
`device.contract.tta_views`. A `.tflite` runs through `device.classifier.EmotionClassifier`, the daemon's code.

    python training/evaluate.py --model device/models/fer_int8.tflite --out runs/eval
    python training/evaluate.py --model device/models/fer_int8.tflite --split --folder /data/ckplus \
        --label-map anger=angry,sadness=sad,contempt=

A `--folder` holds one sub-folder per class of 48x48 grayscale images; sub-folders named other than the
seven FER2013 labels are mapped with `--label-map` (`folder=label`, `folder=` drops it; or a JSON or TOML
file of the same pairs). Classes without images are left out of macro-F1; the model still chooses among
all seven, so a prediction of an absent class counts as an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/evaluate.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from device.contract import LABELS, average_views, normalize, tta_views  # noqa: E402
from device.exit_codes import EXIT_CONFIG, EXIT_OK  # noqa: E402
from training import data  # noqa: E402
from training.metrics import classification_report  # noqa: E402

log = logging.getLogger("evaluate")

Predictor = Callable[[np.ndarray], np.ndarray]
DEFAULT_SPLITS = ("PublicTest", "PrivateTest")
# The report key of each TTA mode (`device.contract.TTA_MODES`).
TTA_REPORTS = {"none": "single", "flip": "flip_tta", "flip-shift": "flip_shift_tta"}


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


def predict(predictor: Predictor, images: np.ndarray, tta: str = "none", batch: int = 512) -> np.ndarray:
    """Probabilities `(N, 7) float32` for `(N, 48, 48, 1) uint8` images, in batches of `batch` faces.

    With a `tta` mode other than "none", the mean over the views of `device.contract.tta_views`, as the
    daemon's `EmotionClassifier(tta=...)` computes it.
    """
    chunks = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        probs = average_views(np.asarray(predictor(tta_views(chunk, tta)), dtype=np.float32), len(chunk))
        chunks.append(probs)
    return np.concatenate(chunks) if chunks else np.zeros((0, len(LABELS)), np.float32)


def evaluate_split(predictor: Predictor, split: data.Split, prior: OutputPrior | None = None) -> dict:
    """`{"single": report, "flip_tta": report, "flip_shift_tta": report}` for one split, one report per
    TTA mode (`TTA_REPORTS`; see `training.metrics` for a report). With `prior` (the training class
    frequencies and the prior the model's outputs carry), also `"priors"`: accuracy, balanced accuracy,
    macro-F1 and per-class recall under each `[classifier] prior` (`training.balance.prior_figures`), single
    crop and with each TTA mode."""
    probabilities = {key: predict(predictor, split.images, tta=mode) for mode, key in TTA_REPORTS.items()}
    result = {key: classification_report(split.labels, probs) for key, probs in probabilities.items()}
    if prior is not None:
        from training.balance import prior_figures

        result["priors"] = prior_figures(split.labels, probabilities, prior.frequencies, prior.power)
    return result


@dataclass(frozen=True)
class OutputPrior:
    """The class prior a model's outputs carry: `frequencies ** power` (`device.prior`).

    Attributes:
        frequencies: `(7,)` FER2013 Training class frequencies.
        power: 1 for a plainly trained model (FER2013's prior), 0 for a balanced one (uniform).
    """

    frequencies: np.ndarray
    power: float


def output_prior(model_path: str | Path, root: str | Path | None = None,
                 frequencies: np.ndarray | None = None) -> OutputPrior:
    """The output prior of a `.tflite` (from its model card) or a `.keras` model (from its RUN_DIR's
    `config.json`, key `logit_adjust_tau`); frequencies as given, else from the card, else counted on
    `root`'s Training.

    Raises:
        OSError, ValueError: the frequencies are needed from Training and it cannot be read.
    """
    from device.prior import card_output_power
    from training.balance import class_frequencies, output_prior_power

    path = Path(model_path)
    power = 1.0
    if path.suffix == ".tflite":
        from device.classifier import load_card
        from device.prior import card_frequencies

        card = load_card(path) or {}
        power = card_output_power(card)
        if frequencies is None and "train_class_frequencies" in card:
            frequencies = card_frequencies(card)
    else:
        config = path.parent / "config.json"
        tau = json.loads(config.read_text()).get("logit_adjust_tau", 0.0) if config.is_file() else 0.0
        power = output_prior_power(tau)
    if frequencies is None:
        frequencies = class_frequencies(data.load(root or data.default_root(), "Training").labels)
    return OutputPrior(frequencies, power)


def parse_label_map(value: str | None) -> dict[str, str]:
    """`{folder name: FER2013 label or "" (drop)}` from `anger=angry,contempt=` or a `.json`/`.toml` file.

    Raises:
        ValueError: a malformed pair, an unreadable file, or a target that is not one of the seven labels
            (the message names the pair or file).
    """
    if not value:
        return {}
    path = Path(value)
    if path.suffix.lower() in (".json", ".toml"):
        try:
            mapping = json.loads(path.read_text()) if path.suffix.lower() == ".json" else \
                tomllib.loads(path.read_text())
        except (OSError, json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
            raise ValueError(f"--label-map {path}: cannot read: {err}") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError(f"--label-map {path}: expected a table of folder = \"label\" strings")
        origin = str(path)
    else:
        mapping = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            folder, sep, label = pair.partition("=")
            if not sep or not folder.strip():
                raise ValueError(f"--label-map: {pair!r} is not folder=label (or folder= to drop it)")
            mapping[folder.strip()] = label.strip()
        origin = "--label-map"
    for folder, label in mapping.items():
        if label and label not in LABELS:
            raise ValueError(f"{origin}: {folder}={label}: {label!r} is not one of {', '.join(LABELS)} "
                             "(or empty to drop the folder)")
    return mapping


def load_folder(folder: str | Path, skip_bad: bool = False, label_map: dict[str, str] | None = None) -> data.Split:
    """A labelled folder: `<folder>/<class>/*.jpg|*.png`, 48x48 grayscale, with any subset of the classes.

    Args:
        folder: the folder; each sub-folder is a class, named as a FER2013 label or mapped by `label_map`.
        skip_bad: skip (and log) unreadable or wrongly sized images instead of failing.
        label_map: `{sub-folder name: label}`; an empty label drops the sub-folder.

    Raises:
        training.data.DatasetError: a missing folder, a sub-folder that is neither a label nor mapped,
            no images at all, or an unreadable image (naming the file).
    """
    folder = Path(folder)
    label_map = label_map or {}
    if not folder.is_dir():
        raise data.DatasetError(f"{folder}: not a folder")
    files = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = label_map.get(class_dir.name, class_dir.name)
        if name == "":
            log.info("%s: dropped (--label-map %s=)", class_dir, class_dir.name)
            continue
        if name not in LABELS:
            raise data.DatasetError(f"{class_dir}: {class_dir.name!r} is not one of {', '.join(LABELS)}; map it "
                                    f"with --label-map {class_dir.name}=<label> or drop it with {class_dir.name}=")
        label = LABELS.index(name)
        files += [(p, label) for p in sorted(class_dir.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if not files:
        raise data.DatasetError(f"{folder}: no .jpg/.png images in class sub-folders")
    return data.decode_files(files, skip_bad=skip_bad)


def safe_name(name: str) -> str:
    """A file-name-safe form of a split or folder name: `/data/ck+` -> `data_ck`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "folder"


def write_report(results: dict, out_dir: str | Path, name: str = "evaluation") -> Path:
    """Write `<name>.json` and one confusion-matrix PNG per split (single crop) into `out_dir`."""
    from training.report import plot_confusion_matrix

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, result in results["splits"].items():
        plot_confusion_matrix(result["single"]["confusion_matrix"], out / f"confusion_matrix_{safe_name(split)}.png",
                              f"{Path(results['model']).name} on {split} (single crop)")
    path = out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def summary_line(split: str, result: dict) -> str:
    """One line per split (and, with `priors`, one per prior below it)."""
    single, flip, shift = (result[key] for key in TTA_REPORTS.values())
    line = (f"{split:<12} n={single['count']:<5} accuracy {single['accuracy']:.2%}  macro-F1 {single['macro_f1']:.4f}"
            f"  balanced {single['balanced_accuracy']:.2%}"
            f"  | flip TTA {flip['accuracy']:.2%}  F1 {flip['macro_f1']:.4f}"
            f"  | flip-shift TTA {shift['accuracy']:.2%}  F1 {shift['macro_f1']:.4f}")
    if "priors" in result:
        from training.balance import prior_summary

        line += "\n" + prior_summary(result["priors"])
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=".keras or .tflite model")
    parser.add_argument("--data", default=None, help="FER2013 folder or fer2013.csv (default: $FER2013_DIR "
                        "or ../shared/datasets/fer2013)")
    parser.add_argument("--split", nargs="*", default=list(DEFAULT_SPLITS), choices=data.SPLITS,
                        help="FER2013 splits to evaluate (default: PublicTest PrivateTest; `--split` alone: none)")
    parser.add_argument("--folder", nargs="*", default=[], help="extra labelled folders <dir>/<class>/*.jpg, "
                        "any subset of the seven classes")
    parser.add_argument("--label-map", default=None, help="sub-folder names to labels, e.g. "
                        "'anger=angry,sadness=sad,contempt=' (empty: drop), or a .json/.toml file of such pairs")
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of about N images per split")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads for .tflite")
    parser.add_argument("--skip-bad", action="store_true", help="skip (and log) unreadable images")
    parser.add_argument("--out", default="runs/eval", help="folder for evaluation.json and the confusion-matrix "
                        "PNGs (default runs/eval)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        label_map = parse_label_map(args.label_map)
        predictor = load_predictor(args.model, num_threads=args.threads)
        root = Path(args.data) if args.data else data.default_root()
        sets = {s: data.limit(data.load(root, s, skip_bad=args.skip_bad), args.limit) for s in args.split}
        sets.update({str(f): data.limit(load_folder(f, args.skip_bad, label_map), args.limit) for f in args.folder})
    except (OSError, ValueError, RuntimeError) as err:
        log.error("%s", err)
        return EXIT_CONFIG
    if not sets:
        log.error("nothing to evaluate: give --split and/or --folder")
        return EXIT_CONFIG
    try:
        prior = output_prior(args.model, root)
    except (OSError, ValueError) as err:  # e.g. --folder alone, no FER2013 to count the classes of
        log.warning("no figures per [classifier] prior: %s", err)
        prior = None
    results = {"model": str(args.model), "limit": args.limit,
               "output_prior_power": None if prior is None else prior.power,
               "splits": {name: evaluate_split(predictor, split, prior) for name, split in sets.items()}}
    for name, result in results["splits"].items():
        print(summary_line(name, result))
    out = write_report(results, args.out)
    print(f"wrote {out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
