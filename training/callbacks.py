"""Keras callbacks for resumable runs: a full checkpoint every epoch, the best PublicTest epoch kept."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import keras


def best_val_accuracy(history_csv: str | Path) -> float:
    """The best `val_accuracy` in an existing `history.csv` (-inf where there is none), so a resumed
    run only replaces `model.keras` with a better epoch."""
    path = Path(history_csv)
    if not path.is_file():
        return -math.inf
    with path.open(newline="") as handle:
        values = [float(row["val_accuracy"]) for row in csv.DictReader(handle) if row.get("val_accuracy")]
    return max(values, default=-math.inf)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: save the training model with its optimizer state to `checkpoint` and the epoch
    number to `state_file`; save the inner classifier (without augmentation) to `best_model` when
    PublicTest accuracy (`val_accuracy`) improves (as `deployable(classifier)`, e.g. behind a centre
    crop). Files are written to a temporary name and renamed, so an interrupted run never leaves a
    half-written checkpoint.

    With `averaged`, a callback that swaps averaged weights in at `on_test_begin` and out at `on_test_end`
    (`keras.callbacks.SwapEMAWeights` for the optimizer's exponential moving average, or
    `training.swa.WeightAverage`), the checkpoint holds the raw weights, so `--resume` continues exactly, and
    the best model holds the averaged ones, which `val_accuracy` measured.

    The state file also lists each epoch's wall clock in s (`epoch_seconds`: training, validation and
    saving), carried over from `epoch_seconds` of the run so far, so a run's total CPU time survives resumes."""

    def __init__(self, checkpoint: Path, state_file: Path, best_model: Path, best: float = -math.inf,
                 classifier_name: str = "fer_cnn",
                 averaged: keras.callbacks.Callback | None = None,
                 deployable: Callable[[keras.Model], keras.Model] | None = None,
                 epoch_seconds: list[float] | None = None) -> None:
        super().__init__()
        self.epoch_seconds = list(epoch_seconds or [])
        self._epoch_started = time.monotonic()
        self.deployable = deployable or (lambda classifier: classifier)
        self.checkpoint, self.state_file, self.best_model = Path(checkpoint), Path(state_file), Path(best_model)
        self.best = best
        self.classifier_name = classifier_name
        self.averaged = averaged

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        if self.averaged is not None:
            self.averaged.set_model(model)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        accuracy = float(logs.get("val_accuracy", -math.inf))
        _atomic_save(self.model, self.checkpoint)
        if accuracy > self.best:
            self.best = accuracy
            if self.averaged is not None:
                self.averaged.on_test_begin()  # the averaged weights in, as when they were validated
            try:
                _atomic_save(self.deployable(self.model.get_layer(self.classifier_name)), self.best_model)
            finally:
                if self.averaged is not None:
                    self.averaged.on_test_end()
        self.epoch_seconds.append(round(time.monotonic() - self._epoch_started, 1))
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch": epoch + 1, "best_val_accuracy": self.best,
                                   "epoch_seconds": self.epoch_seconds}) + "\n")
        tmp.replace(self.state_file)


def _atomic_save(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    tmp.replace(path)
