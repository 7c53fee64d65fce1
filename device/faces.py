"""Face detectors behind one small interface: `detect(frame, gray) -> [(x, y, w, h), ...]`.

- `HaarFaceDetector` (default): OpenCV's frontal-face Haar cascade (Viola and Jones, CVPR 2001), the
  file that ships inside opencv-python 4.x (`cv2.data.haarcascades`), run on a downscaled gray frame.
- `YuNetFaceDetector`: OpenCV's `FaceDetectorYN` (YuNet, Wu et al., 2023) with a user-given `.onnx`.

Boxes are in source-frame pixels, largest first, at most `max_faces`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from device.config import DetectorSettings

Box = tuple[int, int, int, int]


class DetectorError(RuntimeError):
    """The detector model cannot be loaded; the message names the file."""


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Box]:
        """Faces in `frame` `(H, W, 3)` uint8 BGR, whose `(H, W)` uint8 gray version is `gray`."""
        ...


def build_detector(settings: DetectorSettings) -> FaceDetector:
    """The detector chosen by `settings.kind`.

    Raises:
        DetectorError: the cascade or model file is missing or unreadable.
    """
    if settings.kind == "yunet":
        if settings.model is None:
            raise DetectorError("detector.model: YuNet needs the path of its .onnx model")
        return YuNetFaceDetector(settings.model, settings)
    return HaarFaceDetector(settings)


def _largest(boxes: list[Box], max_faces: int) -> list[Box]:
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)[:max_faces]


class HaarFaceDetector:
    """OpenCV's Haar cascade on a gray frame downscaled to `detect_width` px (scale factor 1.1, 5 neighbours)."""

    def __init__(self, settings: DetectorSettings, cascade: str | Path | None = None) -> None:
        path = Path(cascade or Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        self.classifier = cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise DetectorError(f"{path}: Haar cascade missing or unreadable (opencv-python 5 wheels no longer "
                                "ship it; install opencv-python-headless<5)")
        self.settings = settings

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Box]:
        height, width = gray.shape
        scale = min(1.0, self.settings.detect_width / width)
        small = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1.0 else gray
        min_side = max(8, round(self.settings.min_face_px * scale))
        found = self.classifier.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in (found if len(found) else [])]
        return _largest(boxes, self.settings.max_faces)


class YuNetFaceDetector:
    """OpenCV's YuNet face detector (`cv2.FaceDetectorYN`) on a frame downscaled to `detect_width` px."""

    def __init__(self, model: Path, settings: DetectorSettings) -> None:
        if not Path(model).is_file():
            raise DetectorError(f"{model}: YuNet model not found")
        try:
            self.net = cv2.FaceDetectorYN.create(str(model), "", (320, 320), settings.score_threshold)
        except cv2.error as err:
            raise DetectorError(f"{model}: not a YuNet model OpenCV can load: {err}") from None
        self.settings = settings

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Box]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.settings.detect_width / width)
        small = cv2.resize(frame, (round(width * scale), round(height * scale))) if scale < 1.0 else frame
        self.net.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self.net.detect(small)
        boxes = [tuple(int(round(v / scale)) for v in face[:4]) for face in (faces if faces is not None else [])]
        boxes = [b for b in boxes if min(b[2], b[3]) >= self.settings.min_face_px]
        return _largest(boxes, self.settings.max_faces)
