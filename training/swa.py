"""Stochastic weight averaging (SWA: Izmailov, Podoprikhin, Garipov, Vetrov and Wilson, "Averaging Weights
Leads to Wider Optima and Better Generalization", UAI 2018).

After a model has converged, training goes on at a constant, fairly high learning rate, and the weights at the
end of each epoch are averaged with equal weight. The average lies nearer the centre of a wide minimum than any
single iterate. BatchNormalization's moving statistics do not average into those of the averaged network, so
they are measured again on clean Training faces (the paper's `bn_update`).

The config keys: `swa_start` (first averaged epoch, 1-based; 0: off), with `lr_floor = 1.0` for a constant
rate after the warm-up (`training/configs/swa.toml`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from training.batchnorm import BatchNormProbes


class WeightAverage(keras.callbacks.Callback):
    """SWA over the training model's inner classifier: from epoch `start` (1-based) on, its weights at the end of
    each epoch join an equal-weight average. While the model is validated (`on_test_begin` to `on_test_end`), it
    holds the average with its BatchNormalization statistics measured on `calibration` `(N, 48, 48, 1) uint8`
    faces, so `val_accuracy` is the averaged model's, and `training.callbacks.EpochCheckpoint` (given this
    callback as `averaged`) saves that model as the best one. Before `start`, validation sees the raw weights.

    The average, its count and the last epoch it holds are saved to `state_file` (`.npz`) after every epoch,
    and read back from it, so `--resume` continues the same average. The state is written before the epoch's
    checkpoint: should a run stop between the two, the resumed run repeats an epoch the average already holds,
    and that epoch is validated with the saved average rather than counted twice.
    """

    def __init__(self, state_file: Path, start: int, calibration: np.ndarray, crop: int,
                 classifier_name: str = "fer_cnn") -> None:
        super().__init__()
        self.state_file, self.start, self.calibration, self.crop = Path(state_file), start, calibration, crop
        self.classifier_name = classifier_name
        self.average, self.count, self._averaged_epoch = self._load()  # last epoch (0-based) in the average
        self._epoch = 0
        self._swapped: list[np.ndarray] | None = None  # the average, recalibrated for `_swapped_epoch`
        self._swapped_epoch = -1
        self._raw: list[np.ndarray] | None = None
        self._probes: BatchNormProbes | None = None  # built once the model is set

    def _load(self) -> tuple[list[np.ndarray] | None, int, int]:
        """The saved average, its count and its last epoch (-1 where a state file predates the epoch key)."""
        if not self.state_file.is_file():
            return None, 0, -1
        with np.load(self.state_file) as saved:
            weights = sorted((name for name in saved.files if name.startswith("w")), key=lambda name: int(name[1:]))
            last_epoch = int(saved["epoch"]) if "epoch" in saved.files else -1
            return [saved[name] for name in weights], int(saved["count"]), last_epoch

    def _classifier(self) -> keras.Model:
        return self.model.get_layer(self.classifier_name)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._epoch + 1 < self.start:
            return
        classifier = self._classifier()
        self._raw = classifier.get_weights()
        if self._averaged_epoch < self._epoch:  # once per epoch, and never an epoch the saved average holds
            self._add(self._raw)
            self._averaged_epoch = self._epoch
        if self._swapped_epoch != self._epoch:  # recalibrate once per epoch, however often it is swapped in
            classifier.set_weights(self.average)
            if self._probes is None:
                self._probes = BatchNormProbes(classifier, self.crop)
            self._probes.recalibrate(self.calibration)
            self._swapped, self._swapped_epoch = classifier.get_weights(), self._epoch
        else:
            classifier.set_weights(self._swapped)

    def _add(self, weights: list[np.ndarray]) -> None:
        self.count += 1
        if self.average is None:
            self.average = [w.copy() for w in weights]
        else:
            self.average = [a + (w - a) / self.count for a, w in zip(self.average, weights, strict=True)]

    def on_test_end(self, logs: dict | None = None) -> None:
        if self._raw is not None:
            self._classifier().set_weights(self._raw)
            self._raw = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.average is None:
            return
        tmp = self.state_file.with_name(self.state_file.stem + ".tmp.npz")
        np.savez(tmp, count=np.int64(self.count), epoch=np.int64(self._averaged_epoch),
                 **{f"w{i}": w for i, w in enumerate(self.average)})
        tmp.replace(self.state_file)
