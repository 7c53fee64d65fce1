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


def recalibrate(classifier: keras.Model, faces: np.ndarray, crop: int,
                assign: Callable[[keras.layers.BatchNormalization, np.ndarray, np.ndarray], None]
                = moving_statistics) -> None:
    """Measure each BatchNormalization's input mean and variance per channel on `faces` `(N, 48, 48, 1) uint8`
    (normalised and centre-cropped to `crop` px, as deployed), one layer after another, so that each layer's
    statistics are those of the network before it as it now is, and hand them to `assign(layer, mean, var)`
    (both `(channels,) float32`). Inference only: dropout is off, as on the device."""
    inputs = normalize(faces)
    for layer in classifier.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            probe = centre_cropped(keras.Model(classifier.input, layer.input), crop)
            values = probe.predict(inputs, batch_size=256, verbose=0)
            assign(layer, values.mean(axis=(0, 1, 2)), values.var(axis=(0, 1, 2)))
