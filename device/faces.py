"""Face detectors behind one small interface: `detect(frame, gray) -> [(x, y, w, h), ...]`.

- `HaarFaceDetector` (default): OpenCV's frontal-face Haar cascade (Viola and Jones, CVPR 2001), the
  file that ships inside opencv-python 4.x (`cv2.data.haarcascades`), run on a downscaled gray frame.
- `YuNetFaceDetector`: OpenCV's `FaceDetectorYN` (YuNet, Wu et al., 2023) with a user-given `.onnx`.

Boxes are in source-frame pixels, largest first, at most `max_faces`.

`RoiFaceDetector` wraps either: between full-frame detections (every `full_frame_every` frames, or at
once when a face is lost) it searches only a window around each face found before, rescaled so the
face is about 64 px: a few scales of a small image instead of the whole frame (the "detect, then track
by local re-detection" scheme of many real-time face pipelines).
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
    """The detector chosen by `settings.kind`, inside a `RoiFaceDetector` unless `full_frame_every` is 1.

    Raises:
        DetectorError: the cascade or model file is missing or unreadable.
    """
    if settings.kind == "yunet":
        if settings.model is None:
            raise DetectorError("detector.model: YuNet needs the path of its .onnx model")
        base: FaceDetector = YuNetFaceDetector(settings.model, settings)
    else:
        base = HaarFaceDetector(settings)
    return base if settings.full_frame_every <= 1 else RoiFaceDetector(base, settings.full_frame_every)


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
        boxes = [tuple(int(round(v / scale)) for v in box) for box in self.detect_sized(small, min_side, None)]
        return _largest(boxes, self.settings.max_faces)

    def detect_sized(self, gray: np.ndarray, min_px: int, max_px: int | None) -> list[Box]:
        """Faces between `min_px` and `max_px` (None: any) px in `gray` as it is, unscaled."""
        found = self.classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_px, min_px),
                                                 maxSize=(max_px, max_px) if max_px else None)
        return [tuple(int(v) for v in box) for box in found] if len(found) else []


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


class RoiFaceDetector:
    """Full-frame detection every `full_frame_every` frames; in between, re-detection near known faces.

    A face not found again near its last box triggers a full-frame detection of the same frame, so no
    face is lost to the shortcut; new faces appear within `full_frame_every` frames.
    """

    FACE_PX = 48  # the face's size in the rescaled search window, px
    WINDOW = 1.8  # search window side, in face sizes

    def __init__(self, base: FaceDetector, full_frame_every: int) -> None:
        self.base, self.full_frame_every = base, full_frame_every
        self._boxes: list[Box] = []
        self._since_full = 0

    def detect(self, frame: np.ndarray, gray: np.ndarray) -> list[Box]:
        if not self._boxes or self._since_full >= self.full_frame_every - 1:
            self._boxes, self._since_full = self.base.detect(frame, gray), 0
            return self._boxes
        found = [box for box in (self._search(frame, gray, b) for b in self._boxes) if box is not None]
        if len(found) < len(self._boxes):  # a face moved away or left: look at the whole frame now
            found, self._since_full = self.base.detect(frame, gray), -1
        self._since_full += 1
        self._boxes = found
        return found

    def _search(self, frame: np.ndarray, gray: np.ndarray, box: Box) -> Box | None:
        x, y, w, h = box
        side = max(w, h) * self.WINDOW
        height, width = gray.shape
        x0, y0 = max(0, int(x + w / 2 - side / 2)), max(0, int(y + h / 2 - side / 2))
        x1, y1 = min(width, int(x0 + side)), min(height, int(y0 + side))
        scale = min(1.0, self.FACE_PX / max(w, h))
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        window_gray = cv2.resize(gray[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        if isinstance(self.base, HaarFaceDetector):  # only the sizes a face can grow or shrink to in a frame
            face = max(w, h) * scale
            faces = _largest(self.base.detect_sized(window_gray, round(face * 0.7), round(face * 1.4)), 1)
        else:
            faces = self.base.detect(cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA), window_gray)
        if not faces:
            return None
        fx, fy, fw, fh = faces[0]
        return (round(x0 + fx / scale), round(y0 + fy / scale), round(fw / scale), round(fh / scale))
