"""Knowledge distillation: a teacher ensemble's probabilities on Training, and the student's loss.

Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015
(https://arxiv.org/abs/1503.02531): the student is trained on

    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels, student)

where `x_T = softmax(log x / T)` softens a distribution by the temperature `T` (for one network,
`softmax(logits / T)`; for an ensemble, its averaged probabilities are softened the same way), and `T^2`
keeps the soft term's gradients on the scale of the hard one's.

The teacher (`python training/distill.py teacher ...`) is the mean of several models' probabilities, each with
flip TTA (the face and its mirror): `.keras` float models and/or `.tflite` int8 models run through the
daemon's `EmotionClassifier` (the shipped int8 model is a legitimate member). It is saved to an `.npz` with
the Training image names (so a `limit`ed run finds its rows), the models and their PublicTest accuracies,
the ensemble's, and what made each member (sha256 and training stages, for the model card's lineage).
`training/train.py` reads it (config key `teacher`) and carries its rows beside the labels through augmentation
and CutMix (targets `(B, 14)` = `[labels | teacher]`, mixed by area).

    python training/distill.py teacher --model docs/teachers/member-s4/model.keras \\
        --model device/models/fer_int8.tflite --out runs/teacher.npz --private

The members kept so far are `docs/teachers/member-s4` and `member-s5`; the teacher above is the pair chosen on
PublicTest (add `--model docs/teachers/member-s5/model.keras` to measure the three-model ensemble).
`--private` measures the teacher once on PrivateTest, for the card's lineage; nothing is chosen by it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import zipfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/distill.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from device.contract import NUM_CLASSES  # noqa: E402
from device.exit_codes import EXIT_CONFIG, EXIT_OK  # noqa: E402
from training import data  # noqa: E402
from training.balance import EPSILON, adjusted_log_probabilities, soft_crossentropy  # noqa: E402

log = logging.getLogger("distill")
TEACHER_TTA = "flip"
NOT_AN_NPZ = (ValueError, EOFError, zipfile.BadZipFile)  # what numpy.load raises for a file that is not an .npz


def soften(probabilities, temperature: float):
    """`softmax(log p / T)`: `(B, 7)` probabilities softened by temperature `T` (any Keras backend)."""
    return keras.ops.softmax(keras.ops.log(keras.ops.clip(probabilities, EPSILON, 1.0)) / temperature, axis=-1)


@keras.saving.register_keras_serializable(package="fer_edge")
class DistillationLoss(keras.losses.Loss):
    """`alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels, student)` (Hinton et al. 2015).

    Args:
        alpha: weight of the teacher term, 0-1.
        temperature: `T` > 0.
        label_smoothing: of the labels' cross-entropy only.
        prior: `(7,)` training class frequencies, for logit adjustment (`training.balance`); with `tau` > 0 the
            adjustment applies to the cross-entropy on the labels only: the teacher's probabilities are
            matched as they are, and the labels term is what teaches the student a prior-free output.
        tau: logit-adjustment strength (0: none).

    Inputs: `y_true` `(B, 14)` = `[labels (7) | teacher probabilities (7)]` (training batches), or `(B, 7)`
    labels alone (validation data: the labels' cross-entropy only); `y_pred` `(B, 7)` the student's softmax.
    """

    def __init__(self, alpha: float = 0.5, temperature: float = 4.0, label_smoothing: float = 0.0,
                 prior=None, tau: float = 0.0, name: str = "distillation", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        if not 0.0 <= alpha <= 1.0 or temperature <= 0:
            raise ValueError(f"distillation: alpha {alpha} must be in [0, 1] and temperature {temperature} > 0")
        self.alpha, self.temperature, self.label_smoothing = float(alpha), float(temperature), float(label_smoothing)
        self.prior = None if prior is None else [float(p) for p in prior]
        self.tau = float(tau)

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = y_true[:, :NUM_CLASSES]
        if self.tau and self.prior is not None:  # logit adjustment on the labels' term only
            log_student = adjusted_log_probabilities(y_pred, ops.log(ops.convert_to_tensor(self.prior)), self.tau)
        else:
            log_student = ops.log(ops.clip(y_pred, EPSILON, 1.0))
        hard = soft_crossentropy(labels, log_student, self.label_smoothing)
        if y_true.shape[-1] == NUM_CLASSES:  # validation: labels only (static shape, known when traced)
            return hard
        teacher_t = soften(y_true[:, NUM_CLASSES:], self.temperature)
        log_student_t = ops.log_softmax(ops.log(ops.clip(y_pred, EPSILON, 1.0)) / self.temperature, axis=-1)
        kl = ops.sum(teacher_t * (ops.log(ops.clip(teacher_t, EPSILON, 1.0)) - log_student_t), axis=-1)
        return self.alpha * self.temperature**2 * kl + (1.0 - self.alpha) * hard

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "temperature": self.temperature,
                "label_smoothing": self.label_smoothing, "prior": self.prior, "tau": self.tau}


@keras.saving.register_keras_serializable(package="fer_edge")
def label_accuracy(y_true, y_pred):
    """`(B,)` 1.0 where the student's top class is the labels' (the first 7 columns of `y_true`, which may
    carry the teacher's 7 after them), else 0.0."""
    ops = keras.ops
    return ops.cast(ops.equal(ops.argmax(y_true[:, :NUM_CLASSES], axis=-1), ops.argmax(y_pred, axis=-1)), "float32")


def accuracy_metric():
    """Accuracy on the labels, named "accuracy" so history.csv keeps `accuracy` and `val_accuracy`."""
    return keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")


def teacher_rows(path: str | Path, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The teacher's `(N, 7) float32` probabilities for the Training images called `names`, in that order.

    Raises:
        OSError: the file is missing or unreadable.
        ValueError: not a teacher file, or some images have no row (names the count and one of them).
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"{path}: teacher file not found")
    try:
        with np.load(path, allow_pickle=False) as saved:
            probabilities, saved_names = saved["probabilities"], saved["names"]
    except (KeyError, *NOT_AN_NPZ) as err:
        raise ValueError(f"{path}: not a teacher file of training/distill.py: {err}") from None
    row = {str(name): i for i, name in enumerate(saved_names)}
    missing = [name for name in names if name not in row]
    if missing:
        raise ValueError(f"{path}: no teacher probabilities for {len(missing)} of {len(names)} Training images "
                         f"(e.g. {missing[0]}); compute the teacher on the same data")
    return probabilities[[row[name] for name in names]].astype(np.float32)


def teacher_summary(path: str | Path) -> dict | None:
    """What `training/distill.py teacher` recorded in a teacher `.npz`: `{"models", "tta", "accuracy" (per
    member: split accuracies, sha256, training stages), "ensemble_accuracy", "seconds" (s, wall clock of
    making the teacher), "command", ...}`; None where the file is absent or predates the summary.

    Raises:
        ValueError: the file is not a teacher file (names it).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            return json.loads(str(saved["summary"])) if "summary" in saved.files else None
    except NOT_AN_NPZ as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a teacher file of training/distill.py: {err}") from None


def ensemble(models: list[Path], splits: dict[str, data.Split]) -> dict:
    """Each model's and the ensemble's flip-TTA probabilities and accuracies on `splits`.

    Returns:
        `{"probabilities": {split: (N, 7) float32 ensemble mean}, "accuracy": [{"model": path, split:
        fraction, ...} per member, in order], "ensemble_accuracy": {split: fraction}}`.

    Raises:
        FileNotFoundError, ValueError, device.classifier.ModelError: a model cannot be loaded.
    """
    from training.evaluate import load_predictor, predict

    sums = {name: np.zeros((len(split), NUM_CLASSES), np.float64) for name, split in splits.items()}
    accuracy: list[dict] = []
    for model in models:
        predictor = load_predictor(model)
        member = {"model": str(model)}
        accuracy.append(member)
        for name, split in splits.items():
            probabilities = predict(predictor, split.images, tta=TEACHER_TTA)
            # int8 outputs are in steps of 1/256 and sum to 1 only within a few steps: renormalise each member
            probabilities = probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)
            sums[name] += probabilities
            member[name] = float(np.mean(probabilities.argmax(axis=1) == split.labels))
            log.info("%s on %s: %.2f%% (flip TTA)", model, name, 100 * member[name])
    mean = {name: (total / len(models)).astype(np.float32) for name, total in sums.items()}
    return {"probabilities": mean, "accuracy": accuracy, "ensemble_accuracy": {
        name: float(np.mean(mean[name].argmax(axis=1) == split.labels)) for name, split in splits.items()}}


def member_records(accuracy: list[dict]) -> list[dict]:
    """Each member's accuracies with what made it: the file's sha256 (a `.tflite` member, such as the shipped
    model, may be replaced later) and its training stages (`training.lineage.member_lineage`)."""
    from training.lineage import member_lineage

    return [member | {"sha256": hashlib.sha256(Path(member["model"]).read_bytes()).hexdigest(),
                      "stages": member_lineage(member["model"])} for member in accuracy]


def save_teacher(out: Path, train: data.Split, result: dict, summary: dict) -> None:
    """Write the teacher `.npz`: Training probabilities and names, labels, members and the JSON `summary`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, probabilities=result["probabilities"]["Training"], names=np.array(train.names),
                        labels=train.labels, models=np.array(summary["models"]),
                        public_accuracy=np.array([m["PublicTest"] for m in result["accuracy"]]),
                        ensemble_public_accuracy=np.float64(result["ensemble_accuracy"]["PublicTest"]),
                        summary=np.array(json.dumps(summary)))


def teacher_main(args: argparse.Namespace) -> int:
    root = Path(args.data) if args.data else data.default_root()
    started = time.monotonic()
    try:
        split_names = ("Training", "PublicTest", *(("PrivateTest",) if args.private else ()))
        splits = {name: data.limit(data.load(root, name), args.limit) for name in split_names}
        result = ensemble([Path(m) for m in args.model], splits)
        members = member_records(result["accuracy"])
    except (OSError, ValueError, RuntimeError) as err:
        log.error("%s", err)
        return EXIT_CONFIG
    train = splits["Training"]
    summary = {"models": [m["model"] for m in members], "tta": TEACHER_TTA, "data": str(root),
               "limit": args.limit, "accuracy": members, "ensemble_accuracy": result["ensemble_accuracy"],
               "seconds": round(time.monotonic() - started, 1),
               "command": " ".join(["python", "training/distill.py", *sys.argv[1:]])}
    out = Path(args.out)
    save_teacher(out, train, result, summary)
    train_accuracy = result["ensemble_accuracy"]["Training"]
    print(f"teacher of {len(args.model)} model(s), flip TTA: PublicTest "
          f"{result['ensemble_accuracy']['PublicTest']:.2%}, Training {train_accuracy:.2%}"
          + (f", PrivateTest {result['ensemble_accuracy']['PrivateTest']:.2%}" if args.private else ""))
    print(f"wrote {out} ({len(train)} Training images)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    teacher = commands.add_parser("teacher", help="a teacher ensemble's probabilities on Training, to an .npz")
    teacher.add_argument("--model", action="append", required=True, help=".keras or .tflite member (repeat)")
    teacher.add_argument("--out", required=True, help="the .npz to write")
    teacher.add_argument("--data", default=None, help="FER2013 folder or fer2013.csv (default: $FER2013_DIR "
                         "or ../shared/datasets/fer2013)")
    teacher.add_argument("--limit", type=int, default=None, help="stratified subset of about N images per split "
                         "(quick runs; a student run must use the same images)")
    teacher.add_argument("--private", action="store_true", help="also measure the teacher once on PrivateTest "
                         "(for the model card's lineage; never used to choose)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return teacher_main(args)


if __name__ == "__main__":
    sys.exit(main())
