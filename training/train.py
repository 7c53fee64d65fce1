"""Train the compact FER2013 CNN (Keras 3, any backend: TensorFlow by default, `KERAS_BACKEND=torch` too).

Protocol (the standard one): train on Training, choose the epoch on PublicTest, evaluate
PrivateTest once at the end. RUN_DIR receives `model.keras` (the best epoch on PublicTest),
`checkpoint.keras` (the last epoch, with optimizer state, for `--resume`), `history.csv`,
`metrics.json`, `training_curves.png`, `confusion_matrix.png` and `config.json`.

    python training/train.py --data ../shared/datasets/fer2013 --epochs 40 --out runs/base
    python training/train.py --out runs/base --resume          # continue an interrupted run
    python training/train.py --config training/configs/default.toml --out runs/base
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/train.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

log = logging.getLogger("train")
SWA_CALIBRATION_FACES = 4096  # Training faces that measure the SWA model's BatchNormalization statistics


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; written to RUN_DIR/config.json. TOML keys use the same names."""

    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adamw"  # "adamw" or "sgd" (Nesterov momentum)
    learning_rate: float = 2e-3  # peak, after warm-up; cosine decay over the whole run
    lr_floor: float = 0.01  # the cosine decays to this fraction of the peak; 1.0: constant after the warm-up
    warmup_epochs: int = 2
    weight_decay: float = 0.01  # decoupled (Loshchilov and Hutter, ICLR 2019), times the learning rate
    momentum: float = 0.9  # SGD only
    ema: float = 0.0  # momentum of an exponential moving average of the weights, validated and kept; 0: none
    ema_calibration_faces: int = 0  # EMA validated with BatchNormalization statistics of N clean Training
    # faces (training/ema.py); 0: with the live network's, as keras.callbacks.SwapEMAWeights does
    label_smoothing: float = 0.1
    class_weight_power: float = 0.5  # weight = (N / (K * n_class)) ** power; 0 disables
    widths: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_block: int = 2
    dropout: float = 0.4
    bn_momentum: float = 0.99
    augment: str = "opencv"  # "opencv" (training/augment.py) or "keras-layers" (the first recipes' layers)
    crop: int = 40  # opencv: random crop side, px
    rotation_deg: float = 10.0
    scale: float = 0.15  # opencv: log-uniform scale range, +-log(1 + scale)
    cutmix: float = 0.0  # opencv: probability that a batch is CutMixed
    shift: float = 0.1  # keras-layers: max translation, fraction of 48 px
    zoom: float = 0.1  # keras-layers: max zoom, fraction
    erasing: float = 0.25
    seed: int = 0
    limit: int | None = None  # stratified subset of about N training images (quick runs)
    limit_val: int | None = None  # and of PublicTest/PrivateTest
    init_from: str | None = None  # a .keras classifier of the same architecture to start from (a warm restart)
    camera: float = 0.0  # opencv: probability of one Pi camera degradation per face (training/camera.py)
    logit_adjust_tau: float = 0.0  # logit adjustment (training/balance.py; Menon et al. 2021); 0: off, 1: uniform
    teacher: str | None = None  # distillation (training/distill.py): teacher .npz; None: off
    distill_alpha: float = 0.5  # weight of the teacher's term (1 - alpha: the labels')
    distill_temperature: float = 4.0  # softening temperature T of teacher and student
    swa_start: int = 0  # stochastic weight averaging (training/swa.py) from this epoch (1-based) on; 0: off

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read a TOML file whose keys are this class's fields, plus an optional `base`.

        `base = "long.toml"` (a path relative to this file) starts from that recipe's values, which this
        file's keys then override; a base may have a base of its own.

        Raises:
            ValueError: naming the file and the unknown key, the missing or unreadable base, or the cycle.
        """
        values = _recipe_values(Path(path), ())
        if "widths" in values:
            values["widths"] = tuple(values["widths"])
        return cls(**values)


def _recipe_values(path: Path, chain: tuple[Path, ...]) -> dict:
    """A recipe's keys over its bases' keys, `chain` being the files that named this one as their base."""
    if path.resolve() in chain:  # chain holds resolved paths, so "../x.toml" and "x.toml" are one file
        raise ValueError(f"{path}: base recipes form a cycle: {' -> '.join(map(str, (*chain, path.resolve())))}")
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:  # its message gives the line and column, not the file
        raise ValueError(f"{path}: {err}") from None
    except OSError as err:
        named_by = f"{chain[-1]}: key 'base': " if chain else ""
        raise ValueError(f"{named_by}cannot read {path}: {err.strerror}") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in values:
        if key not in known and key != "base":
            raise ValueError(f"{path}: unknown key {key!r}; allowed: base, {', '.join(sorted(known))}")
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ValueError(f"{path}: key 'base' must be a file name, got {base!r}")
    return _recipe_values(path.parent / base, (*chain, path.resolve())) | values


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, TrainConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="FER2013 folder or fer2013.csv "
                        "(default: $FER2013_DIR or ../shared/datasets/fer2013)")
    parser.add_argument("--out", required=True, help="RUN_DIR for the model, checkpoints and reports")
    parser.add_argument("--config", default=None, help="TOML file of TrainConfig fields")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.keras")
    parser.add_argument("--session-epochs", type=int, default=None, metavar="N",
                        help="stop after N epochs in this invocation (the schedule still spans --epochs); "
                        "continue later with --resume")
    parser.add_argument("--skip-bad", action="store_true", help="skip (and log) unreadable images")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "widths":
            continue
        kind = {"int": int, "int | None": int, "str": str, "str | None": str}.get(f.type, float)
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None, dest=f.name)
    parser.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")), default=None,
                        help="comma-separated channels per block, e.g. 32,64,128,256")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.from_toml(args.config) if args.config else TrainConfig()
    except ValueError as err:
        parser.error(str(err))  # exit 2 (a configuration error) with the usage line, no traceback
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name, None) is not None}
    return args, dataclasses.replace(config, **overrides)


def class_weights(labels: np.ndarray, power: float) -> dict[int, float] | None:
    """Inverse-frequency class weights softened by `power` (0: none), normalised to mean 1 per sample."""
    if power <= 0:
        return None
    from device.contract import NUM_CLASSES

    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    weights = (len(labels) / (len(counts) * np.maximum(counts, 1))) ** power
    weights /= (weights[labels]).mean()
    return {i: float(w) for i, w in enumerate(weights)}


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    """The run's optimizer: AdamW or SGD with Nesterov momentum, a linear warm-up from a tenth of the peak
    rate, then one cosine decay to `lr_floor` (1%) of it over the whole run (Loshchilov and Hutter, "SGDR",
    ICLR 2017), so an interrupted and resumed run follows the same schedule; `lr_floor = 1` holds the peak
    (the constant rate of SWA). SGD's weight decay spares BatchNormalization
    and biases. With `config.ema`, the optimizer keeps an exponential moving average of the weights."""
    import keras

    warmup = config.warmup_epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10, warmup_target=config.learning_rate,
        warmup_steps=warmup, decay_steps=max(1, config.epochs * steps_per_epoch - warmup),
        alpha=config.lr_floor)
    ema = {"use_ema": True, "ema_momentum": config.ema} if config.ema else {}
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum, nesterov=True,
                                         weight_decay=config.weight_decay, **ema)
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
        return optimizer
    if config.optimizer == "adamw":  # as the first recipes ran it: decay on every weight
        return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, **ema)
    raise ValueError(f"optimizer: unknown {config.optimizer!r}; expected 'adamw' or 'sgd'")


def copy_weights(source: Path, model) -> None:
    """Start `model` from the weights of the classifier saved at `source` (SGDR-style warm restart:
    Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017).

    Raises:
        OSError: `source` is missing or unreadable.
        ValueError: `source` is not a classifier of the same architecture (names the file).
    """
    from training.evaluate import load_keras_model

    if not source.is_file():
        raise OSError(f"{source}: init_from model not found")
    saved = load_keras_model(source)
    theirs, ours = saved.get_weights(), model.get_weights()
    if [w.shape for w in theirs] != [w.shape for w in ours]:
        raise ValueError(f"{source}: init_from model has a different architecture "
                         f"({saved.count_params()} parameters, this run builds {model.count_params()})")
    model.set_weights(theirs)
    log.info("weights initialised from %s", source)


def resolved_config(args: argparse.Namespace, config: TrainConfig, run_dir: Path) -> tuple[TrainConfig, str]:
    """The run's config and command: on `--resume` the saved ones win (the learning-rate schedule inside
    the checkpoint was built from them)."""
    if not args.resume:
        return config, " ".join(sys.argv)
    saved = json.loads((run_dir / "config.json").read_text())
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**{k: v for k, v in saved.items() if k in known}, "widths": tuple(saved["widths"])}), \
        saved["command"]


def build_loss(config: TrainConfig, train_labels: np.ndarray):
    """`(loss, accuracy metric)` of the run: plain label-smoothed cross-entropy; logit-adjusted with
    `logit_adjust_tau` (`training.balance`); or, with a `teacher`, the distillation loss (`training.distill`),
    whose logit adjustment (if any) is on the labels' term only."""
    import keras

    from training import balance, distill

    prior = balance.class_frequencies(train_labels)  # the prior of the faces this run trains on
    if config.teacher:
        return distill.DistillationLoss(config.distill_alpha, config.distill_temperature, config.label_smoothing,
                                        prior=prior, tau=config.logit_adjust_tau), distill.accuracy_metric()
    if config.logit_adjust_tau:
        return balance.LogitAdjustedCrossentropy(prior, config.logit_adjust_tau, config.label_smoothing), "accuracy"
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing), "accuracy"


def build_fit_data(config: TrainConfig, train) -> dict:
    """`model.fit` keyword arguments for the training faces: `AugmentedFaces` batches (with camera
    degradations and teacher rows as configured) or, for the keras-layers recipe, the arrays.

    Raises:
        OSError, ValueError: a teacher file that is missing or lacks some images; teacher or camera asked
            of the keras-layers recipe.
    """
    import keras

    from device.contract import LABELS, normalize
    from training.augment import Augmentation, AugmentedFaces
    from training.distill import teacher_rows

    weights = class_weights(train.labels, config.class_weight_power)
    if config.augment != "opencv":
        if config.teacher or config.camera:
            raise ValueError("teacher and camera need augment = \"opencv\"")
        return {"x": normalize(train.images), "y": keras.utils.to_categorical(train.labels, len(LABELS)),
                "batch_size": config.batch_size, "class_weight": weights}
    teacher = teacher_rows(config.teacher, train.names) if config.teacher else None
    return {"x": AugmentedFaces(train.images, train.labels, config.batch_size, Augmentation(
        crop=config.crop, rotation_deg=config.rotation_deg, scale=config.scale, erasing=config.erasing,
        cutmix=config.cutmix, camera=config.camera), seed=config.seed, class_weight=weights, teacher=teacher)}


def validation_data(config: TrainConfig, public) -> tuple[np.ndarray, np.ndarray]:
    """PublicTest as the deployed model sees it: normalised, centre-cropped to the training crop."""
    import keras

    from device.contract import INPUT_SIZE, LABELS, normalize

    x_val, y_val = normalize(public.images), keras.utils.to_categorical(public.labels, len(LABELS))
    crop = config.crop if config.augment == "opencv" else INPUT_SIZE
    if crop != INPUT_SIZE:  # validate what will be deployed: the centre crop of the training size
        margin = (INPUT_SIZE - crop) // 2
        x_val = x_val[:, margin : margin + crop, margin : margin + crop]
    return x_val, y_val


def new_train_model(config: TrainConfig, steps_per_epoch: int, train_labels: np.ndarray):
    """A compiled training model, fresh or from `init_from`.

    Raises:
        OSError, ValueError: `init_from` is missing or of another architecture.
        ValueError: `swa_start` together with `ema`.
    """
    from device.contract import INPUT_SIZE
    from training.model import build_augmentation, build_model, with_augmentation

    if config.swa_start and config.ema:
        raise ValueError("swa_start and ema both average the weights; set ema = 0 for SWA")
    model = build_model(config.widths, config.convs_per_block, config.dropout, bn_momentum=config.bn_momentum,
                        input_size=None if config.augment == "opencv" else INPUT_SIZE)
    if config.init_from:
        copy_weights(Path(config.init_from), model)
    augmentation = None if config.augment == "opencv" else build_augmentation(
        config.shift, config.rotation_deg, config.zoom, config.erasing, config.seed)
    train_model = with_augmentation(model, augmentation)
    loss, accuracy = build_loss(config, train_labels)
    train_model.compile(optimizer=make_optimizer(config, steps_per_epoch), loss=loss, metrics=[accuracy])
    return train_model


def calibration_faces(train_images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A fixed sample of `count` clean Training faces `(count, 48, 48, 1) uint8` (all where fewer), in Training
    order, that measures an averaged network's BatchNormalization statistics."""
    sample = np.random.default_rng(seed).choice(len(train_images), min(len(train_images), count), replace=False)
    return train_images[np.sort(sample)]


def epoch_callbacks(config: TrainConfig, run_dir: Path, fit_data: dict, train_images: np.ndarray,
                    epoch_seconds: list[float]) -> list:
    """The callbacks of `model.fit`: glibc's heap thresholds restored after the first batch (`training.heap`);
    the averaged weights swapped in for validation (the optimizer's EMA or SWA, `training.swa`), so PublicTest
    measures them and they are kept; the augmentation's epoch; the history; the checkpoint and the best model."""
    import keras

    from device.contract import INPUT_SIZE
    from training.augment import SetEpoch
    from training.callbacks import EpochCheckpoint, best_val_accuracy
    from training.ema import RecalibratedEMA
    from training.heap import HeapThresholds
    from training.model import centre_cropped
    from training.swa import WeightAverage

    crop = config.crop if config.augment == "opencv" else INPUT_SIZE
    averaged = None
    if config.swa_start:
        averaged = WeightAverage(run_dir / "swa.npz", config.swa_start,
                                 calibration_faces(train_images, SWA_CALIBRATION_FACES, config.seed), crop)
    elif config.ema and config.ema_calibration_faces:
        averaged = RecalibratedEMA(calibration_faces(train_images, config.ema_calibration_faces, config.seed), crop)
    elif config.ema:
        averaged = keras.callbacks.SwapEMAWeights()
    history_file = run_dir / "history.csv"
    return [
        HeapThresholds(),
        *([averaged] if averaged is not None else []),
        *([SetEpoch(fit_data["x"])] if config.augment == "opencv" else []),
        keras.callbacks.CSVLogger(str(history_file), append=True),
        EpochCheckpoint(run_dir / "checkpoint.keras", run_dir / "checkpoint.json", best_model=run_dir / "model.keras",
                        best=best_val_accuracy(history_file), averaged=averaged,
                        deployable=lambda classifier: centre_cropped(classifier, crop), epoch_seconds=epoch_seconds),
    ]


def write_config(run_dir: Path, config: TrainConfig, root: Path, command: str) -> None:
    import keras

    from device.machine import machine

    (run_dir / "config.json").write_text(json.dumps(
        {**dataclasses.asdict(config), "data": str(root), "backend": keras.backend.backend(),
         "keras": keras.__version__, "command": command,
         # the machine of this session, so a model shipped from a run in progress can name it
         "hardware": {**machine(), "keras_backend": keras.backend.backend()}}, indent=2) + "\n")


def final_report(run_dir: Path, config: TrainConfig, root: Path, public, train_seconds: float,
                 skip_bad: bool) -> None:
    """The chosen model (best PublicTest epoch), evaluated once on PrivateTest at the end: metrics.json
    (with the figures under each `[classifier] prior`), the curves and the confusion matrix."""
    import keras

    from device.machine import machine
    from training import data
    from training.balance import class_frequencies, output_prior_power
    from training.evaluate import OutputPrior, evaluate_split, keras_predictor, load_keras_model, summary_line
    from training.lineage import timed_seconds
    from training.report import best_epoch, plot_confusion_matrix, plot_training_curves, read_history

    best_model = load_keras_model(run_dir / "model.keras")
    predictor = keras_predictor(best_model)
    private = data.limit(data.load(root, "PrivateTest", skip_bad=skip_bad), config.limit_val, config.seed)
    prior = OutputPrior(class_frequencies(data.load(root, "Training", skip_bad=skip_bad).labels),
                        output_prior_power(config.logit_adjust_tau))
    results = {"PublicTest": evaluate_split(predictor, public, prior),
               "PrivateTest": evaluate_split(predictor, private, prior)}
    history = read_history(run_dir / "history.csv")
    best = best_epoch(history)
    metrics = {
        "model": str(run_dir / "model.keras"), "best_epoch": best, "epochs": config.epochs,
        "parameters": int(best_model.count_params()),
        "train_seconds_this_session": round(train_seconds, 1),
        # Summed over every session of a resumed run; unknown for a checkpoint written before epochs were timed.
        "train_seconds": timed_seconds(json.loads((run_dir / "checkpoint.json").read_text())),
        "hardware": {**machine(), "keras_backend": keras.backend.backend()},
        "output_prior_power": prior.power,
        "splits": results,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_training_curves(history, run_dir / "training_curves.png")
    plot_confusion_matrix(results["PrivateTest"]["single"]["confusion_matrix"], run_dir / "confusion_matrix.png",
                          f"best epoch {best} on PrivateTest (single crop)")
    for split, result in results.items():
        log.info("%s", summary_line(split, result))


def load_or_build_model(args: argparse.Namespace, config: TrainConfig, run_dir: Path, train):
    """`(train_model, initial_epoch, epoch_seconds)`: the checkpoint's model and state with `--resume`, else a
    new model (the previous run's history, best model and SWA average removed so none is mixed in).

    Raises:
        ValueError: an unreadable checkpoint state (naming the file) or a bad `init_from` model.
        OSError: a checkpoint or `init_from` file that cannot be read.
    """
    import keras

    if args.resume:
        import training.distill  # noqa: F401 - registers the custom loss and metric the checkpoint names

        state_file = run_dir / "checkpoint.json"
        try:
            state = json.loads(state_file.read_text())
            initial_epoch, epoch_seconds = int(state["epoch"]), state.get("epoch_seconds", [])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{state_file}: not a checkpoint state ({type(err).__name__}: {err})") from None
        train_model = keras.models.load_model(run_dir / "checkpoint.keras")
        log.info("resuming %s after epoch %d of %d", run_dir, initial_epoch, config.epochs)
        return train_model, initial_epoch, epoch_seconds
    steps_per_epoch = int(np.ceil(len(train) / config.batch_size))
    train_model = new_train_model(config, steps_per_epoch, train.labels)
    for stale in ("history.csv", "model.keras", "swa.npz"):
        (run_dir / stale).unlink(missing_ok=True)
    return train_model, 0, []


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)

    import keras

    from training import data

    if args.resume and not (run_dir / "checkpoint.keras").is_file():
        log.error("%s: no checkpoint to resume from", run_dir / "checkpoint.keras")
        return 2
    config, command = resolved_config(args, config, run_dir)
    root = Path(args.data) if args.data else data.default_root()
    try:
        train = data.limit(data.load(root, "Training", skip_bad=args.skip_bad), config.limit, config.seed)
        public = data.limit(data.load(root, "PublicTest", skip_bad=args.skip_bad), config.limit_val, config.seed)
        fit_data = build_fit_data(config, train)
        log.info("Training %d images, PublicTest %d images, backend %s", len(train), len(public),
                 keras.backend.backend())
        write_config(run_dir, config, root, command)
        keras.utils.set_random_seed(config.seed)
        train_model, initial_epoch, epoch_seconds = load_or_build_model(args, config, run_dir, train)
    except (OSError, ValueError) as err:
        log.error("%s", err)
        return 2
    log.info("model: %d parameters", train_model.count_params())

    callbacks = epoch_callbacks(config, run_dir, fit_data, train.images, epoch_seconds)
    started = time.monotonic()
    last_epoch = config.epochs if args.session_epochs is None else min(config.epochs,
                                                                        initial_epoch + args.session_epochs)
    if initial_epoch < last_epoch:
        train_model.fit(**fit_data, epochs=last_epoch, initial_epoch=initial_epoch,
                        validation_data=validation_data(config, public), callbacks=callbacks,
                        verbose=1 if sys.stdout.isatty() else 2)
    train_seconds = time.monotonic() - started
    if last_epoch < config.epochs:
        log.info("stopped after epoch %d of %d (%.0f s); continue with: python training/train.py --out %s --resume",
                 last_epoch, config.epochs, train_seconds, run_dir)
        return 0
    final_report(run_dir, config, root, public, train_seconds, args.skip_bad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
