"""The optimizer's exponential moving average of the weights (EMA, "Polyak averaging"), validated with
BatchNormalization statistics of its own.

`keras.callbacks.SwapEMAWeights` swaps only the trainable weights: the averaged network is validated with the
moving statistics of the live one, measured on augmented training batches. After a warm start from weights
whose statistics were measured on clean faces (`convert/dequantize.py`), that costs PublicTest accuracy: by
`training/train.py`, epoch 1 of `training/configs/student-warm.toml` scored 66.15%, and of
`training/configs/student-recalibrated.toml`, the same recipe with its EMA recalibrated here, 69.43% (issue 23,
2026-12-05/06; the recovered start scores 69.41%). The remedy is SWA's `bn_update` (Izmailov et al., UAI 2018;
`training/swa.py`) applied to the EMA.
"""

from __future__ import annotations

import keras
import numpy as np

from training.batchnorm import BatchNormProbes, moving_statistics


class RecalibratedEMA(keras.callbacks.Callback):
    """`keras.callbacks.SwapEMAWeights` whose averaged network, while swapped in (`on_test_begin` to
    `on_test_end`), has its BatchNormalization moving statistics measured on `calibration`
    `(N, 48, 48, 1) uint8` clean faces, centre-cropped to `crop` px as deployed.

    Measured once per epoch and reused when swapped in again in that epoch (by
    `training.callbacks.EpochCheckpoint`, which saves the best model as validated). On `on_test_end` the live
    statistics come back with the live weights, so the checkpoint holds the raw training state and `--resume`
    continues exactly.
    """

    def __init__(self, calibration: np.ndarray, crop: int, classifier_name: str = "fer_cnn") -> None:
        super().__init__()
        self.calibration, self.crop, self.classifier_name = calibration, crop, classifier_name
        self.swap = keras.callbacks.SwapEMAWeights()
        self._epoch = 0
        self._measured: tuple[int, list[tuple[np.ndarray, np.ndarray]]] | None = None  # (epoch, statistics)
        self._live: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._probes: BatchNormProbes | None = None  # built once the model is set

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.swap.set_model(model)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def _statistics(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance))
                for layer in self._probes.layers]

    def _assign(self, statistics: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for layer, (mean, var) in zip(self._probes.layers, statistics, strict=True):
            moving_statistics(layer, mean, var)

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._probes is None:
            self._probes = BatchNormProbes(self.model.get_layer(self.classifier_name), self.crop)
        self.swap.on_test_begin(logs)
        self._live = self._statistics()
        if self._measured is not None and self._measured[0] == self._epoch:
            self._assign(self._measured[1])
        else:
            self._probes.recalibrate(self.calibration)
            self._measured = (self._epoch, self._statistics())

    def on_test_end(self, logs: dict | None = None) -> None:
        if self._live is not None:
            self._assign(self._live)
            self._live = None
        self.swap.on_test_end(logs)
