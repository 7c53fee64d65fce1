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
    """The network cut at each BatchNormalization of `classifier`, for measuring their statistics in one
    forward pass: segment 0 runs the face, centre-cropped to `crop` px as deployed, to the first layer's input;
    segment k runs layer k-1's input through layer k-1 (with the statistics just measured for it) and on to
    layer k's input. The segments share the classifier's layers, so one set built once measures the network
    as it is at each call, without Keras tracing a new predict function every time."""

    def __init__(self, classifier: keras.Model, crop: int) -> None:
        self.layers = [layer for layer in classifier.layers if isinstance(layer, keras.layers.BatchNormalization)]
        starts = [classifier.input, *(layer.input for layer in self.layers[:-1])]
        self.segments = [keras.Model(start, layer.input) for start, layer in zip(starts, self.layers, strict=True)]
        self.segments[0] = centre_cropped(self.segments[0], crop)

    def recalibrate(self, faces: np.ndarray, assign: Assign = moving_statistics) -> None:
        """Measure each BatchNormalization's input mean and variance per channel on `faces`
        `(N, 48, 48, 1) uint8` (normalised as deployed), one layer after another, so that each layer's
        statistics are those of the network before it as it now is, and hand them to `assign(layer, mean,
        var)` (both `(channels,) float32`). Inference only: dropout is off, as on the device.

        Each layer's input is computed once, from the one before: a whole-network pass per layer cost about
        4 forward passes in all (measured on 4,096 faces and 2 idle cores, 2026-12-07: ~29 s a call, against ~10 s)."""
        values = normalize(faces)
        for layer, segment in zip(self.layers, self.segments, strict=True):
            values = segment.predict(values, batch_size=256, verbose=0)
            assign(layer, *channel_statistics(values))


def channel_statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) variance of `(N, H, W, C) float32` values, both `(C,) float32`,
    accumulated in float64: numpy's float32 `var` over the 6.5 million values of a first-block channel (4,096
    faces of 40 x 40 px) was 1.4% off the float64 figure."""
    flat = values.reshape(-1, values.shape[-1])
    mean = flat.mean(axis=0, dtype=np.float64)
    mean_square = np.einsum("ij,ij->j", flat, flat, dtype=np.float64) / len(flat)
    variance = np.maximum(mean_square - mean**2, 0.0)  # rounding can leave a constant channel just below 0
    return mean.astype(np.float32), variance.astype(np.float32)


def recalibrate(classifier: keras.Model, faces: np.ndarray, crop: int, assign: Assign = moving_statistics) -> None:
    """`BatchNormProbes(classifier, crop).recalibrate(faces, assign)`, for a single measurement."""
    BatchNormProbes(classifier, crop).recalibrate(faces, assign)
