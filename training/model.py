"""The compact FER2013 CNN and its training-time augmentation, in backend-agnostic Keras 3.

Only ops that full-integer int8 TFLite and the Edge TPU run: Conv2D (BatchNormalization is folded
into it by the TFLite converter), ReLU, MaxPooling2D, GlobalAveragePooling2D (MEAN), Dense and
Softmax. Dropout and the augmentation layers are identity at inference and vanish on conversion.
"""

from __future__ import annotations

import keras
from keras import layers

from device.contract import INPUT_SHAPE, NUM_CLASSES


def build_model(
    widths: tuple[int, ...] = (32, 64, 128, 256),
    convs_per_block: int = 2,
    dropout: float = 0.4,
    weight_decay: float = 0.0,
    bn_momentum: float = 0.99,
    input_size: int | None = INPUT_SHAPE[0],
) -> keras.Model:
    """VGG-style CNN: blocks of `convs_per_block` 3x3 conv + BN + ReLU, 2x2 max-pool after each.

    Args:
        widths: channels of each block; each block halves the 48x48 resolution.
        convs_per_block: depth of each block.
        dropout: dropout rate before the classifier.
        weight_decay: L2 factor on conv/dense kernels (0 when the optimizer decays weights).
        bn_momentum: BatchNormalization moving-average momentum (lower for runs of few steps).
        input_size: side of the square input in px; None accepts any size (the net is fully
            convolutional up to global average pooling, so it can train on crops and run on 48x48).

    Returns:
        An uncompiled model: `(N, 48, 48, 1) float32` in [0, 1] -> `(N, 7) float32` softmax.
    """
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    inputs = keras.Input(shape=(input_size, input_size, 1), name="face")
    x = inputs
    for block, width in enumerate(widths):
        for conv in range(convs_per_block):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_regularizer=regularizer,
                              name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(NUM_CLASSES, kernel_regularizer=regularizer, name="logits")(x)
    outputs = layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fer_cnn")


def build_augmentation(
    shift: float = 0.1, rotation_deg: float = 10.0, zoom: float = 0.1, erasing: float = 0.0, seed: int = 0
) -> keras.Sequential:
    """Random horizontal flip, shift, rotation and zoom (and optionally random erasing), Keras layers only.

    Args:
        shift: max translation as a fraction of 48 px.
        rotation_deg: max rotation in degrees.
        zoom: max zoom in/out as a fraction.
        erasing: probability of erasing one random rectangle (Zhong et al., "Random Erasing Data
            Augmentation", AAAI 2020); 0 disables it.
        seed: seed of every random layer.
    """
    steps: list[layers.Layer] = [
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed + 1),
        layers.RandomRotation(rotation_deg / 360.0, fill_mode="nearest", seed=seed + 2),
        layers.RandomZoom(zoom, zoom, fill_mode="nearest", seed=seed + 3),
    ]
    if erasing > 0:
        steps.append(layers.RandomErasing(factor=erasing, scale=(0.02, 0.2), value_range=(0.0, 1.0),
                                          seed=seed + 4))
    return keras.Sequential(steps, name="augmentation")


def centre_cropped(classifier: keras.Model, crop: int) -> keras.Model:
    """The deployable model of a classifier trained on `crop` px crops: `(N, 48, 48, 1)` -> the centre
    `crop` x `crop` (a Cropping2D, i.e. a slice, which int8 TFLite and the Edge TPU run) -> the classifier.

    A net trained on random crops scores far lower on the whole 48x48 face than on a centre crop of the
    training size (measured on the long run's early checkpoints: 18% against 40% on PublicTest), because
    'same' padding lets it learn positions relative to the crop's edges. Returns `classifier` when `crop`
    is 48.
    """
    if crop == INPUT_SHAPE[0]:
        return classifier
    margin = (INPUT_SHAPE[0] - crop) // 2
    inputs = keras.Input(shape=INPUT_SHAPE, name="face")
    x = layers.Cropping2D(((margin, INPUT_SHAPE[0] - crop - margin),) * 2, name="centre_crop")(inputs)
    return keras.Model(inputs, classifier(x), name=f"fer_cnn_centre{crop}")


def with_augmentation(model: keras.Model, augmentation: keras.Sequential | None) -> keras.Model:
    """Wrap `model` for training: augmentation layers (active only when training; None when the batches
    come augmented, `training/augment.py`) then the classifier, which keeps its own input size."""
    inputs = keras.Input(shape=model.input_shape[1:], name="face")
    return keras.Model(inputs, model(augmentation(inputs) if augmentation is not None else inputs), name="fer_train")
