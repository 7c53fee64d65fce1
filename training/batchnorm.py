"""BatchNormalization statistics measured on faces: for a network whose moving statistics no longer describe
it (an average of weights, `training/swa.py`; weights recovered from an int8 model, `convert/dequantize.py`)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from device.contract import normalize
from training.model import centre_cropped


def moving_statistics(layer: keras.layers.BatchNormalization, mean: np.ndarray, var: np.ndarray) -> None:
    """Set only a BatchNormalization's moving mean and variance, keeping its learned gamma and beta."""
    layer.moving_mean.assign(mean)
    layer.moving_variance.assign(var)


Assign = Callable[[keras.layers.BatchNormalization, np.ndarray, np.ndarray], None]


class BatchNormProbes:
    """One probe model per BatchNormalization of `classifier`: the face, centre-cropped to `crop` px as deployed,
    to that layer's input. The probes share the classifier's layers, so one set built once measures the
    network as it is at each call, without Keras tracing a new predict function every time."""

    def __init__(self, classifier: keras.Model, crop: int) -> None:
        self.layers = [layer for layer in classifier.layers if isinstance(layer, keras.layers.BatchNormalization)]
        self.probes = [centre_cropped(keras.Model(classifier.input, layer.input), crop) for layer in self.layers]

    def recalibrate(self, faces: np.ndarray, assign: Assign = moving_statistics) -> None:
        """Measure each BatchNormalization's input mean and variance per channel on `faces`
        `(N, 48, 48, 1) uint8` (normalised as deployed), one layer after another, so that each layer's
        statistics are those of the network before it as it now is, and hand them to `assign(layer, mean,
        var)` (both `(channels,) float32`). Inference only: dropout is off, as on the device."""
        inputs = normalize(faces)
        for layer, probe in zip(self.layers, self.probes, strict=True):
            values = probe.predict(inputs, batch_size=256, verbose=0)
            assign(layer, values.mean(axis=(0, 1, 2)), values.var(axis=(0, 1, 2)))


def recalibrate(classifier: keras.Model, faces: np.ndarray, crop: int, assign: Assign = moving_statistics) -> None:
    """`BatchNormProbes(classifier, crop).recalibrate(faces, assign)`, for a single measurement."""
    BatchNormProbes(classifier, crop).recalibrate(faces, assign)
