"""Training batches of FER2013 faces, augmented on the CPU with OpenCV and numpy (any Keras backend).

Each face gets one random similarity transform (horizontal flip, rotation, scale) and one random crop of
`crop` x `crop` px taken anywhere inside the 48x48 face, in a single `cv2.warpAffine` (edges replicated, as
`device.contract.align_face` does on the device). The ranges cover the alignment jitter measured on the
device's own path (`device/models/registration.json`, key `jitter`, written by `training/registration.py`).
Before the warp, with probability `camera`, one of the Pi camera's degradations at one of its strengths
(`training/camera.py`: low light, sensor noise, motion blur, JPEG, small faces; what
`benchmarks/robustness.py` measures). Then, per face, random erasing (Zhong et al., "Random Erasing Data
Augmentation", AAAI 2020) and, per batch,
CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features",
ICCV 2019).

Training on random crops and testing on the whole 48x48 face works because the network is fully
convolutional up to its global average pooling (one random 40-44 px crop per step is what the best
published FER2013 recipes train on, e.g. Khaireddin and Chen, "Facial Emotion Recognition: State of the Art
Performance on FER2013", 2021).

Every batch is a pure function of `(seed, epoch, index)`, so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import keras
import numpy as np

from device.contract import INPUT_SIZE, NUM_CLASSES, normalize, view_matrix
from training.camera import degrade_face


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the training augmentation.

    Attributes:
        crop: side of the random crop, px (48: no crop).
        rotation_deg: rotation drawn uniformly from +-this, degrees.
        scale: log-scale drawn uniformly from +-log(1 + scale).
        flip: probability of a horizontal flip.
        erasing: probability of erasing one random rectangle (2-20% of the crop, aspect 0.3-3.3, noise).
        cutmix: probability that a batch is CutMixed (area ratio from Beta(1, 1)).
        camera: probability that a face gets one random camera degradation at a random strength
            (`training.camera.degrade_face`); 0 draws no random numbers for it, so a recipe without it
            sees exactly the batches it saw before the option existed.
    """

    crop: int = 40
    rotation_deg: float = 12.0
    scale: float = 0.15
    flip: float = 0.5
    erasing: float = 0.25
    cutmix: float = 0.5
    camera: float = 0.0


class AugmentedFaces(keras.utils.PyDataset):
    """Batches `(x, y)` or `(x, y, sample_weight)`: `x` `(B, crop, crop, 1) float32` in [0, 1] (the
    contract's normalisation), `y` `(B, 7) float32` soft labels (CutMix), or `(B, 14) float32` with a
    teacher (`[labels | teacher probabilities]`, both mixed by area under CutMix; split by
    `training.distill.DistillationLoss`), weights `(B,) float32`.

    Args:
        images: `(N, 48, 48, 1) uint8` faces.
        labels: `(N,) int` labels in `device.contract.LABELS` order.
        batch_size: faces per batch (the last batch may be smaller).
        augmentation: the ranges.
        seed: the run's seed.
        class_weight: optional `{label: weight}`, given to Keras as per-sample weights.
        teacher: optional `(N, 7) float32` teacher probabilities of the same faces (distillation).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, augmentation: Augmentation,
                 seed: int = 0, class_weight: dict[int, float] | None = None,
                 teacher: np.ndarray | None = None) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = images[..., 0], np.asarray(labels)
        if teacher is not None and np.shape(teacher) != (len(self.labels), NUM_CLASSES):
            raise ValueError(f"teacher probabilities {np.shape(teacher)}, expected ({len(self.labels)}, {NUM_CLASSES})")
        self.teacher = None if teacher is None else np.asarray(teacher, dtype=np.float32)
        self.batch_size, self.augmentation, self.seed = batch_size, augmentation, seed
        self.weights = None if class_weight is None else np.array([class_weight[i] for i in range(NUM_CLASSES)],
                                                                  dtype=np.float32)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def order(self) -> np.ndarray:
        """This epoch's permutation of the training faces."""
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.labels))

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index + 1])
        chosen = self.order()[index * self.batch_size : (index + 1) * self.batch_size]
        faces = np.stack([random_view(self.camera_view(self.images[i], rng), self.augmentation, rng)
                          for i in chosen])
        targets = keras.utils.to_categorical(self.labels[chosen], NUM_CLASSES).astype(np.float32)
        if self.teacher is not None:
            targets = np.concatenate([targets, self.teacher[chosen]], axis=1)
        weights = None if self.weights is None else self.weights[self.labels[chosen]]
        for face in faces:
            if rng.random() < self.augmentation.erasing:
                erase(face, rng)
        if rng.random() < self.augmentation.cutmix:
            faces, targets, weights = cutmix(faces, targets, weights, rng)
        x = normalize(faces)[..., np.newaxis]
        return (x, targets) if weights is None else (x, targets, weights)

    def camera_view(self, face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`face` `(48, 48) uint8`, degraded as a Pi camera would with probability `augmentation.camera`."""
        if self.augmentation.camera > 0 and rng.random() < self.augmentation.camera:
            return degrade_face(face, rng)
        return face


class SetEpoch(keras.callbacks.Callback):
    """Tell an `AugmentedFaces` which epoch is starting (Keras counts epochs across `--resume`)."""

    def __init__(self, dataset: AugmentedFaces) -> None:
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.dataset.epoch = epoch


def random_view(face: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """One random view of a `(48, 48) uint8` face: `(crop, crop) uint8`."""
    if rng.random() < augmentation.flip:
        face = face[:, ::-1]
    half = (INPUT_SIZE - augmentation.crop) / 2.0
    centre = (INPUT_SIZE / 2.0 + rng.uniform(-half, half), INPUT_SIZE / 2.0 + rng.uniform(-half, half))
    matrix = view_matrix(rng.uniform(-augmentation.rotation_deg, augmentation.rotation_deg),
                         rng.uniform(-1.0, 1.0) * math.log1p(augmentation.scale), centre, augmentation.crop)
    return cv2.warpAffine(np.ascontiguousarray(face), matrix, (augmentation.crop, augmentation.crop),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def erase(face: np.ndarray, rng: np.random.Generator) -> None:
    """Random erasing, in place: one rectangle of 2-20% of `face` `(S, S) uint8`, aspect 0.3-3.3, filled
    with uniform noise (Zhong et al., AAAI 2020)."""
    side = face.shape[0]
    area = rng.uniform(0.02, 0.2) * side * side
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
    h = min(side, max(1, int(round(math.sqrt(area * aspect)))))
    w = min(side, max(1, int(round(math.sqrt(area / aspect)))))
    y, x = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    face[y : y + h, x : x + w] = rng.integers(0, 256, (h, w), dtype=np.uint8)


def cutmix(faces: np.ndarray, targets: np.ndarray, weights: np.ndarray | None, rng: np.random.Generator):
    """CutMix a batch: paste one box of a shuffled copy into every face, mixing labels (and weights) by area.

    Args:
        faces: `(B, S, S) uint8`; targets: `(B, 7) float32`; weights: `(B,) float32` or None.

    Returns:
        The mixed `(faces, targets, weights)`, new arrays.
    """
    side = faces.shape[1]
    partner = rng.permutation(len(faces))
    ratio = math.sqrt(1.0 - rng.beta(1.0, 1.0))
    h, w = int(side * ratio), int(side * ratio)
    cy, cx = rng.integers(0, side), rng.integers(0, side)
    y0, y1 = max(0, cy - h // 2), min(side, cy + h // 2)
    x0, x1 = max(0, cx - w // 2), min(side, cx + w // 2)
    mixed = faces.copy()
    mixed[:, y0:y1, x0:x1] = faces[partner, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (side * side)
    targets = kept * targets + (1.0 - kept) * targets[partner]
    if weights is not None:
        weights = kept * weights + (1.0 - kept) * weights[partner]
    return mixed, targets.astype(np.float32), weights
